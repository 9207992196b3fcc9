"""MTEB's classification protocol: the draws, the classifier, and bad input."""
from __future__ import annotations

import json
from collections import defaultdict

import numpy as np
import pytest

from vecpipe.core.errors import DataError
from vecpipe.core.eval import evaluation as ev
from vecpipe.core.eval.classification import evaluate_classification, mteb_draws, read_labelled


def _mteb_loop(labels, samples_per_label, n_experiments):
    """MTEB's AbsTaskClassification loop as it runs there: the global generator, re-seeded by each evaluator."""
    idxs, draws = None, []
    for _ in range(n_experiments):
        np.random.seed(42)  # the evaluator of the previous draw (and the task, before the first) seeds it
        if idxs is None:
            idxs = np.arange(len(labels))
        np.random.shuffle(idxs)
        counter, rows = defaultdict(int), []
        for i in idxs:
            if counter[labels[i]] < samples_per_label:
                rows.append(int(i))
                counter[labels[i]] += 1
        draws.append(rows)
    return draws


def test_draws_are_mtebs_draws():
    rng = np.random.default_rng(3)
    labels = [f"l{int(x)}" for x in rng.integers(0, 7, size=500)]
    assert mteb_draws(labels, 8, 10) == _mteb_loop(labels, 8, 10)
    draws = mteb_draws(labels, 3, 4)
    assert len({tuple(d) for d in draws}) == 4  # every draw differs
    for rows in draws:
        counts = defaultdict(int)
        for i in rows:
            counts[labels[i]] += 1
        assert set(counts.values()) == {3}


class FakeEmbedder:
    """Vectors that carry their label in one coordinate, so a classifier can be checked exactly."""

    def __init__(self, signal: float):
        self.signal = signal
        self.calls = []

    def vectors(self, ids, texts, prompt, source):
        self.calls.append((len(texts), prompt))
        rng = np.random.default_rng(len(texts))
        matrix = rng.normal(size=(len(texts), 4)).astype(np.float32)
        for row, text in enumerate(texts):
            matrix[row, int(text[-1]) % 4] += self.signal
        return ev.Vectors(ids, matrix, {}, source)


def _labelled(tmp_path, name, n):
    path = tmp_path / f"{name}.jsonl"
    path.write_text("".join(json.dumps({"text": f"text {i} of class {i % 3}", "label": f"c{i % 3}"}) + "\n" for i in range(n)))
    return read_labelled(str(path))


def test_separable_labels_are_classified_perfectly_and_noise_is_not(tmp_path):
    train, test = _labelled(tmp_path, "train", 60), _labelled(tmp_path, "test", 30)
    clear = evaluate_classification(FakeEmbedder(50.0), train, test, n_experiments=3, samples_per_label=4)
    assert clear.scores["accuracy"] == 1.0 and clear.scores["f1"] == 1.0 and clear.draws == 3
    assert [set(s) for s in clear.scores["scores_per_experiment"]] == [{"accuracy", "f1", "f1_weighted"}] * 3
    noise = evaluate_classification(FakeEmbedder(0.0), train, test, n_experiments=3, samples_per_label=4)
    assert noise.scores["accuracy"] < 0.8


def test_only_the_drawn_training_texts_are_embedded(tmp_path):
    train, test = _labelled(tmp_path, "train", 300), _labelled(tmp_path, "test", 30)
    embedder = FakeEmbedder(50.0)
    result = evaluate_classification(embedder, train, test, n_experiments=2, samples_per_label=5)
    assert embedder.calls[0][0] == result.train_texts_used <= 2 * 5 * 3
    assert embedder.calls[1][0] == 30


def test_bad_rows_name_their_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "a", "label": "x"}\n{"text": "b"}\n')
    with pytest.raises(DataError, match=rf"^{path}:2: missing label field 'label'"):
        read_labelled(str(path))
    path.write_text('{"text": "a", "label": "x"}\n{"label": "y"}\n')
    with pytest.raises(DataError, match=rf"^{path}:2: missing text field 'text'"):
        read_labelled(str(path))


def test_a_single_label_is_refused(tmp_path):
    path = tmp_path / "one.jsonl"
    path.write_text('{"text": "a", "label": 1}\n{"text": "b", "label": 1}\n')
    one = read_labelled(str(path))
    with pytest.raises(DataError, match="at least 2 labels"):
        evaluate_classification(FakeEmbedder(1.0), one, one)
