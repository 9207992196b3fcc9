"""`vecpipe quantize`: float vector records in, float16, int8, uint8 or bit-packed records out."""
from __future__ import annotations

from typing import List, Optional

import typer

from vecpipe.cli.common import VectorOutput, handles_errors, say

HELP = """Quantize float vectors to float16, int8, uint8, binary or ubinary.

The results are exactly those of sentence-transformers' quantize_embeddings. int8 and uint8
cut each dimension's [min, max] into 255 steps. The ranges are learned from the input (read
twice, so stdin is buffered in a temp file) or taken from --calibration FILE. binary and
ubinary keep the sign bit of each dimension, 8 per byte.

Quantize queries with the ranges learned from the documents: save them with
--save-calibration, pass them back with --calibration. Provenance records the ranges' sha256
(calibration_sha256), so an index can refuse queries quantized differently.

Examples:

  vecpipe embed docs.jsonl | vecpipe quantize --to binary | vecpipe index build -o docs.idx

  vecpipe quantize docs.vec.jsonl --to int8 --save-calibration docs.cal.npz > docs.int8.jsonl

  vecpipe embed --prompt query < q.txt | vecpipe quantize --to int8 --calibration docs.cal.npz

  vecpipe quantize docs.npy --to ubinary --format npy -o docs.bits.npy
"""

def register(app: typer.Typer) -> None:
    app.command("quantize", help=HELP)(quantize)


@handles_errors
def quantize(
    inputs: List[str] = typer.Argument(None, help="Vector files (JSONL or .npy); `-` or none reads stdin."),
    to: str = typer.Option(..., "--to", help="float16, int8, uint8, binary or ubinary."),
    calibration: Optional[str] = typer.Option(None, "--calibration", help="int8/uint8: use the ranges in this .npz instead of learning them from the input."),
    save_calibration: Optional[str] = typer.Option(None, "--save-calibration", help="int8/uint8: save the ranges learned from the input to this .npz."),
    out_format: str = typer.Option("jsonl", "--format", help="jsonl (stdout) or npy (needs -o)."),
    output: Optional[str] = typer.Option(None, "-o", "--output", help="Output file; default stdout. --format npy: X.npy gets its sidecar X.meta.jsonl, any other name is a directory of .npy parts plus manifest.json."),
) -> None:
    from vecpipe.core.vectors.quantize import SCALAR_PRECISIONS, Calibration, learn_calibration, quantize_batch
    from vecpipe.formats.vectors import StdinSource, VectorInputs

    _check_options(to, calibration, save_calibration)
    learn = to in SCALAR_PRECISIONS and calibration is None
    stdin = StdinSource(rereadable=learn)
    stream = VectorInputs(inputs, stdin, note=say)
    try:
        ranges = Calibration.load(calibration) if calibration else None
        if learn:
            ranges = learn_calibration(stream)
            _report_learned(ranges, save_calibration)
        with VectorOutput(out_format, output).open() as writer:
            for batch in stream:
                writer.write(quantize_batch(batch, to, ranges))
    finally:
        stream.close()
        stdin.close()


def _check_options(to: str, calibration: Optional[str], save_calibration: Optional[str]) -> None:
    from vecpipe.core.errors import UsageError
    from vecpipe.core.vectors.quantize import PRECISIONS, SCALAR_PRECISIONS

    if to not in PRECISIONS:
        raise UsageError(f"--to must be one of {', '.join(PRECISIONS)}, not {to!r}")
    if to not in SCALAR_PRECISIONS and (calibration or save_calibration):
        raise UsageError(f"--calibration and --save-calibration apply to int8 and uint8, not {to}")
    if calibration and save_calibration:
        raise UsageError("--save-calibration saves ranges learned from the input; with --calibration nothing is learned")


def _report_learned(ranges, save_path: Optional[str]) -> None:
    from vecpipe.core.vectors.quantize import FEW_CALIBRATION_VECTORS

    if save_path:
        ranges.save(save_path)
    else:
        say(f"ranges learned from {ranges.count} vectors were not saved; to quantize queries the same way, use --save-calibration FILE")
    if ranges.count < FEW_CALIBRATION_VECTORS:
        say(f"ranges learned from only {ranges.count} vectors; a larger sample (--calibration) gives steadier buckets")
