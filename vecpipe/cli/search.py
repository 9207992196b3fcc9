"""`vecpipe search`: query an index with a one-off text, text lines, JSONL queries or vector records."""
from __future__ import annotations

import re
from pathlib import Path
from typing import List, Optional

import typer

from vecpipe.cli.common import STDIN, binary_stdout, handles_errors, nothing_left_to_finish, say, stdout_is_terminal
from vecpipe.cli.completion import index_dirs, model_names

HELP = """Search an index built by `vecpipe index build`.

`vecpipe search DIR "free text"` runs one query. Without a query, queries are read from stdin
(or -i FILE): plain text lines, JSONL records (`--field`, default text; `id` or `_id` is the
query id), or vector records, which are used as they are. Text is embedded with the index's
own model and its `query` prompt; a query from another model, dimension or quantization is
refused.

A one-off query on a float (HNSW) index is answered exactly, by one scan of the vectors where
they lie on disk: that costs less than loading the graph, and exact hits are never worse than
the graph's. `--ef` makes it walk the graph instead; queries from stdin always do.

Hits are JSONL `{"query_id", "rank", "id", "score", ...stored fields}` when piped, a table on a
terminal, or a TREC run with --format trec. Scores are higher-is-better: cosine similarity,
inner product, the negative Euclidean distance for l2, 1 - 2*hamming/bits for binary indexes;
for int8 ones, the dot product of the (unit) query with each document's dequantized codes, or the
integer dot product when the queries are int8 records themselves.

Examples:

  vecpipe search man.idx "copy files between machines"

  vecpipe search docs.idx -k 5 --where lang=en --where 'year>2019' < questions.txt

  jq -c '{_id, text}' queries.jsonl | vecpipe search docs.idx -k 100 --format trec > run.txt

  vecpipe search docs.idx --rescore 4 < questions.txt      # binary index built with --keep-float
"""

SNIPPET_CHARS = 80


def register(app: typer.Typer) -> None:
    app.command("search", help=HELP)(search)


@handles_errors
def search(
    directory: Path = typer.Argument(..., autocompletion=index_dirs, help="The index directory."),
    query: Optional[str] = typer.Argument(None, help="A one-off text query; without it queries are read from stdin or -i."),
    k: int = typer.Option(10, "-k", max=10**7, help="Hits per query (fewer when the index or a filter has fewer rows)."),
    ef: Optional[int] = typer.Option(None, "--ef", max=10**6, help="hnswlib search width (default 100; raised to k when below it)."),
    min_score: Optional[float] = typer.Option(None, "--min-score", help="Drop hits scoring below this."),
    where: List[str] = typer.Option([], "--where", help="Filter on a stored field: FIELD=VALUE, FIELD!=VALUE, FIELD<N, FIELD>N (repeatable; all must hold)."),
    exact: bool = typer.Option(False, "--exact", help="Brute force: the exact top k (the ground truth for ANN recall)."),
    rescore: Optional[int] = typer.Option(None, "--rescore", max=10**4, help="Quantized indexes: fetch k*R candidates, re-rank them with float vectors (needs --keep-float)."),
    out_format: str = typer.Option("jsonl", "--format", help="jsonl or trec."),
    as_json: bool = typer.Option(False, "--json", help="JSONL even on a terminal."),
    input_path: str = typer.Option(STDIN, "-i", "--input", help="Query file (text lines, JSONL, or vector records: JSONL, .npy, or a directory of .npy parts); `-` is stdin."),
    field: str = typer.Option("text", "--field", help="JSONL field holding the query text."),
    model: Optional[str] = typer.Option(None, "-m", "--model", autocompletion=model_names, help="Where to find the index's model (a directory or name); it must be the model the index was built with."),
    run_name: str = typer.Option("vecpipe", "--run-name", help="The tag column of --format trec."),
    batch_size: int = typer.Option(256, "--batch-size", min=1, max=10**6, help="Queries embedded and searched together."),
    mode: Optional[str] = typer.Option(None, "--mode", metavar="dense|lexical|hybrid", help="dense (vectors), lexical (BM25 of the text) or hybrid (both, fused). Default: hybrid when the index has a lexical part (index build --lexical), else dense."),
    fusion: str = typer.Option("rrf", "--fusion", metavar="rrf|convex", help="Hybrid: reciprocal-rank fusion, or a convex mix of min-max normalized scores."),
    rrf_k: float = typer.Option(60, "--rrf-k", help="Hybrid RRF: the k in 1 / (k + rank)."),
    alpha: float = typer.Option(0.5, "--alpha", help="Hybrid convex: the dense list's weight, between 0 and 1 (the lexical list gets 1 - alpha)."),
) -> None:
    from vecpipe.core.errors import UsageError
    from vecpipe.core.index.api import open_index
    from vecpipe.core.pipeline.queries import QueryEncoder, query_batches
    from vecpipe.core.retrieval.modes import Fusion, ModeRequest, default_mode, needs_graph
    from vecpipe.core.retrieval.modes import search as search_mode

    if out_format not in ("jsonl", "trec"):
        raise UsageError("--format must be jsonl or trec")
    if rescore is not None and rescore < 1:
        raise UsageError("--rescore must be at least 1")
    with open_index(directory, needs_graph(mode, exact, one_query=query is not None, ef=ef)) as index:
        request = ModeRequest(mode or default_mode(index), k, where, min_score, ef, exact, rescore, Fusion(fusion, rrf_k, alpha))
        request.check(index, has_text=True)
        if request.mode != "dense":
            index.start_loading_lexical()
        encoder = QueryEncoder(index.provenance, model, one_off=query is not None, notify=say)
        sink = _sink(out_format, as_json, run_name)
        shown: set[str] = set()
        for batch in query_batches(query, input_path, field, batch_size, encoder, request.mode != "lexical", note=say):
            result = search_mode(index, request, batch.texts, batch.matrix, batch.provenance)
            for notice in result.notices:
                if notice not in shown:  # once per run, not once per batch
                    shown.add(notice)
                    say(notice)
            sink.write(batch.ids, result.hits)
        sink.close()
    nothing_left_to_finish()  # read-only: the index is closed and every hit flushed


# --- output --------------------------------------------------------------------------------


def _sink(out_format: str, as_json: bool, run_name: str):
    if out_format == "trec":
        return _TrecSink(run_name)
    if as_json or not stdout_is_terminal():
        return _JsonlSink()
    return _TableSink()


HIT_KEYS = ("query_id", "rank", "id", "score", "ranks")
_MAY_HOLD_HIT_KEY = re.compile(b'"(?:' + b"|".join(key.encode() for key in HIT_KEYS) + b')"').search  # one scan, 8x a loop of `in`


def hit_line(query_id, hit, dumps) -> bytes:
    """A JSONL hit: the hit's keys, then the stored fields spliced in as stored (no parsing).

    Stored fields named like the hit's own keys are left out rather than clobber them; only
    fields that might hold such a key take the slower parse-and-merge path."""
    record = {"query_id": query_id, "rank": hit.rank, "id": hit.id, "score": hit.score}
    if hit.ranks is not None:
        record["ranks"] = hit.ranks
    stored = hit.fields_json
    if stored == b"{}":
        return dumps(record) + b"\n"
    if not _MAY_HOLD_HIT_KEY(stored):
        return dumps(record)[:-1] + b"," + stored[1:] + b"\n"
    for key, value in hit.fields.items():
        record.setdefault(key, value)
    return dumps(record) + b"\n"


class _JsonlSink:
    def __init__(self):
        import orjson

        self._dumps = orjson.dumps
        self._out = binary_stdout()

    def write(self, ids: list, hits: list) -> None:
        lines = [hit_line(qid, hit, self._dumps) for qid, row in zip(ids, hits) for hit in row]
        self._out.write(b"".join(lines))
        self._out.flush()

    def close(self) -> None:
        self._out.flush()


class _TrecSink:
    def __init__(self, run_name: str):
        from vecpipe.formats.trec import format_run_line

        self._line = format_run_line
        self._run_name = run_name
        self._out = binary_stdout()

    def write(self, ids: list, hits: list) -> None:
        text = "".join(
            self._line(str(qid), str(hit.id), hit.rank, hit.score, self._run_name) for qid, row in zip(ids, hits) for hit in row
        )
        self._out.write(text.encode())
        self._out.flush()

    def close(self) -> None:
        self._out.flush()


class _TableSink:
    """Rows for a rich table, printed at the end (a terminal reader wants one table)."""

    def __init__(self):
        self._rows: list[list] = []
        self._queries = 0

    def write(self, ids: list, hits: list) -> None:
        self._queries += len(ids)
        for qid, row in zip(ids, hits):
            self._rows.extend([qid, hit.rank, f"{hit.score:.4f}", hit.id, _snippet(hit.fields)] for hit in row)

    def close(self) -> None:
        from vecpipe.cli.common import print_table

        if self._queries == 1:
            print_table(None, ["rank", "score", "id", "text"], [row[1:] for row in self._rows])
        else:
            print_table(None, ["query", "rank", "score", "id", "text"], self._rows)


def _snippet(fields: dict) -> str:
    text = next((fields[key] for key in ("text", "title") if isinstance(fields.get(key), str)), None)
    if text is None:
        text = next((value for value in fields.values() if isinstance(value, str)), "")
    text = " ".join(text.split())
    return text if len(text) <= SNIPPET_CHARS else text[: SNIPPET_CHARS - 1] + "…"
