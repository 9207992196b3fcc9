"""`vecpipe eval`: retrieval, STS, index and storage quality, with MTEB's and trec_eval's definitions.

One module per subcommand:
- `eval retrieval` (retrieval.py) scores a run against qrels, or embeds, searches and scores a BEIR set;
- `eval fuse` (fuse.py) fuses any retrievers' runs with RRF or convex weights;
- `eval sts` (sts.py) correlates cosine similarity with gold scores;
- `eval classification` (classification.py) fits MTEB's few-shot logistic regression on embeddings;
- `eval ann` (ann.py) measures an index's recall and speed against exact search;
- `eval sweep` (sweep.py) runs retrieval over dims x dtypes x rescoring;
- `eval compare` (compare.py) reads many result files back into one table.

Results are MTEB-shaped JSON (vecpipe.core.eval.results), printed when stdout is piped (or
with --json), as a table on a terminal, and written to `--output DIR/<task_name>.json`.
"""
from __future__ import annotations

import typer

from vecpipe.cli.eval import ann, classification, compare, fuse, retrieval, sts, sweep
from vecpipe.cli.eval.common import eval_app

for _module in (retrieval, fuse, sts, classification, ann, sweep, compare):
    _module.register(eval_app)


def register(app: typer.Typer) -> None:
    app.add_typer(eval_app, name="eval")
