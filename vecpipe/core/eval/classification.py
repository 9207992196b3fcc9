"""Classification as MTEB evaluates it: few-shot logistic regression on embeddings, over several draws.

MTEB's AbsTaskClassification, followed step by step:
- Each of `n_experiments` draws shuffles the row indices of the train set in place with numpy's
  legacy global generator freshly seeded with 42 (MTEB's evaluator re-seeds it before every
  draw), the same index array draw after draw, then keeps the first `samples_per_label` rows of
  each label in that shuffled order (8 per label: 616 texts for Banking77's 77 labels).
- scikit-learn's LogisticRegression(random_state=42, max_iter=100), otherwise at its defaults,
  is fitted on those rows' embeddings and predicts the whole test set.
- Scores per draw: accuracy, macro F1 and weighted F1; the result is their mean over draws
  (main score: accuracy), with each draw's scores kept.
Only the training texts some draw uses are embedded (through the embedding cache, like the
test set, so a second run embeds nothing).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from vecpipe.core.errors import DataError, UsageError

MTEB_SEED = 42
METRICS = ("accuracy", "f1", "f1_weighted")


@dataclass
class LabelledTexts:
    texts: list[str]
    labels: list
    inputs: dict  # file record: path and sha256


def read_labelled(path: str, text_field: str = "text", label_field: str = "label") -> LabelledTexts:
    """JSONL rows with a text and a label (a string or a number) each."""
    from vecpipe.core.eval.evaluation import file_record, open_lines
    from vecpipe.formats.text import parse_record
    from vecpipe.formats.trec import numbered_lines

    texts, labels = [], []
    with open_lines(path) as stream:
        for line, raw in numbered_lines(stream, path):
            record = parse_record(raw, path, line)
            text, label = record.get(text_field), record.get(label_field)
            if not isinstance(text, str):
                raise DataError(f"missing text field {text_field!r}", path, line)
            if isinstance(label, bool) or not isinstance(label, (str, int, float)):
                raise DataError(f"missing label field {label_field!r} (a string or a number)", path, line)
            texts.append(text)
            labels.append(label)
    if not texts:
        raise DataError("no labelled texts", path)
    return LabelledTexts(texts, labels, file_record(path))


def mteb_draws(labels: Sequence, samples_per_label: int, n_experiments: int, seed: int = MTEB_SEED) -> list[list[int]]:
    """The train rows of each draw, in the order MTEB feeds them to the classifier."""
    order = np.arange(len(labels))
    draws = []
    for _ in range(n_experiments):
        np.random.RandomState(seed).shuffle(order)  # = np.random.seed(seed); np.random.shuffle(order)
        taken: dict = defaultdict(int)
        rows = []
        for i in order.tolist():
            if taken[labels[i]] < samples_per_label:
                taken[labels[i]] += 1
                rows.append(i)
        draws.append(rows)
    return draws


@dataclass
class ClassificationResult:
    scores: dict  # metric -> mean over draws, plus scores_per_experiment
    draws: int
    train_texts_used: int
    labels: int

    @property
    def main_score(self) -> float:
        return self.scores["accuracy"]

    def spread(self, metric: str) -> float:
        """The standard deviation of `metric` over the draws."""
        return float(np.std([draw[metric] for draw in self.scores["scores_per_experiment"]]))


def evaluate_classification(
    embedder,
    train: LabelledTexts,
    test: LabelledTexts,
    *,
    n_experiments: int = 10,
    samples_per_label: int = 8,
    seed: int = MTEB_SEED,
    max_iter: int = 100,
    prompt: str | None = None,
) -> ClassificationResult:
    """MTEB's logistic-regression classification scores of `embedder`'s vectors."""
    fit_and_score = _classifier(seed, max_iter)
    if n_experiments < 1 or samples_per_label < 1:
        raise UsageError("--n-experiments and --samples-per-label must be at least 1")
    if len(set(train.labels)) < 2:
        raise DataError("classification needs at least 2 labels in the train set", train.inputs["path"])
    draws = mteb_draws(train.labels, samples_per_label, n_experiments, seed)
    used = sorted({i for rows in draws for i in rows})
    train_vectors = embedder.vectors([str(i) for i in used], [train.texts[i] for i in used], prompt, train.inputs["path"]).matrix
    row_of = {i: n for n, i in enumerate(used)}
    test_vectors = embedder.vectors([str(i) for i in range(len(test.texts))], test.texts, prompt, test.inputs["path"]).matrix
    per_draw = [fit_and_score(train_vectors[[row_of[i] for i in rows]], [train.labels[i] for i in rows], test_vectors, test.labels)
                for rows in draws]
    scores = {metric: float(np.mean([s[metric] for s in per_draw])) for metric in METRICS}
    scores["scores_per_experiment"] = per_draw
    return ClassificationResult(scores, len(draws), len(used), len(set(train.labels)))


def _classifier(seed: int, max_iter: int):
    try:
        from sklearn.linear_model import LogisticRegression
        from sklearn.metrics import accuracy_score, f1_score
    except ImportError:
        raise UsageError("eval classification needs scikit-learn: pip install 'vecpipe[eval]'") from None

    def fit_and_score(x_train: np.ndarray, y_train: list, x_test: np.ndarray, y_test: list) -> dict[str, float]:
        import warnings

        from sklearn.exceptions import ConvergenceWarning

        clf = LogisticRegression(random_state=seed, max_iter=max_iter)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # MTEB stops at max_iter too; the scores are its
            clf.fit(x_train, y_train)
        predicted = clf.predict(x_test)
        return {
            "accuracy": float(accuracy_score(y_test, predicted)),
            "f1": float(f1_score(y_test, predicted, average="macro")),
            "f1_weighted": float(f1_score(y_test, predicted, average="weighted")),
        }

    return fit_and_score
