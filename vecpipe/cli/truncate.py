"""`vecpipe truncate`: float vector records in, fewer dimensions out (prefix, or PCA then prefix)."""
from __future__ import annotations

from typing import List, Optional

import typer

from vecpipe.cli.common import STDIN, VectorOutput, handles_errors, say

HELP = """Shorten float vectors: keep the first N dimensions, or rotate with a PCA first.

--dim N keeps a prefix, as Matryoshka-trained models allow, and re-normalizes (unless
--no-renormalize). For models not trained that way, --pca N rotates first, so that the
kept dimensions are those of most variance: --fit SAMPLE learns the rotation from sample
vectors (--save FILE keeps it), --pca-file FILE applies a saved one. Provenance records
truncate_dim and the rotation's sha256 (pca_sha256), so an index refuses queries that
were not shortened the same way.

Examples:

  vecpipe embed docs.jsonl | vecpipe truncate --dim 256 | vecpipe index build -o docs.idx

  vecpipe truncate docs.vec.jsonl --pca 128 --fit sample.vec.jsonl --save docs.pca.npz > docs.128.jsonl

  vecpipe embed --prompt query < q.txt | vecpipe truncate --pca-file docs.pca.npz

  vecpipe embed docs.jsonl | vecpipe truncate --dim 256 | vecpipe quantize --to binary
"""


def register(app: typer.Typer) -> None:
    app.command("truncate", help=HELP)(truncate)


@handles_errors
def truncate(
    inputs: List[str] = typer.Argument(None, help="Vector files (JSONL or .npy); `-` or none reads stdin."),
    dim: Optional[int] = typer.Option(None, "--dim", max=10**6, help="Keep the first N dimensions."),
    renormalize: bool = typer.Option(True, "--renormalize/--no-renormalize", help="L2-normalize the shortened vectors (default yes)."),
    pca: Optional[int] = typer.Option(None, "--pca", max=10**6, help="Rotate with a PCA, then keep its first N components."),
    fit: Optional[str] = typer.Option(None, "--fit", help="Learn the PCA from these sample vectors (`-` = stdin)."),
    save: Optional[str] = typer.Option(None, "--save", help="With --fit: save the PCA to this .npz, to rotate queries the same way."),
    pca_file: Optional[str] = typer.Option(None, "--pca-file", help="Apply the PCA saved in this .npz (with --pca N: only its first N components)."),
    out_format: str = typer.Option("jsonl", "--format", help="jsonl (stdout) or npy (needs -o)."),
    output: Optional[str] = typer.Option(None, "-o", "--output", help="Output file; default stdout. --format npy: X.npy gets its sidecar X.meta.jsonl, any other name is a directory of .npy parts plus manifest.json."),
) -> None:
    from vecpipe.core.vectors.truncate import truncate_batch
    from vecpipe.formats.vectors import StdinSource, VectorInputs

    _check_options(dim, pca, fit, save, pca_file)
    inputs = inputs or [STDIN]
    stdin = StdinSource(rereadable=fit == STDIN and STDIN in inputs)
    try:
        rotation = _rotation(pca, fit, save, pca_file, stdin)
        target = dim if dim is not None else pca if pca is not None else rotation.n_components
        with VectorOutput(out_format, output).open() as writer:
            for number, batch in enumerate(VectorInputs(inputs, stdin, note=say)):
                if number == 0 and rotation is None:
                    _warn_if_not_matryoshka(batch.provenance, target)
                writer.write(truncate_batch(batch, target, renormalize, rotation))
    finally:
        stdin.close()


def _check_options(dim, pca, fit, save, pca_file) -> None:
    from vecpipe.core.errors import UsageError

    if dim is not None and (pca is not None or fit or pca_file):
        raise UsageError("--dim keeps a prefix; --pca, --fit and --pca-file rotate first: use one or the other")
    if fit and pca_file:
        raise UsageError("--fit learns a PCA and --pca-file loads one: use one or the other")
    if fit and pca is None:
        raise UsageError("--fit needs --pca N: how many components to keep")
    if dim is None and pca is None and not pca_file:
        raise UsageError("say how to shorten: --dim N, or --pca N with --fit SAMPLE, or --pca-file FILE")
    if pca is not None and not (fit or pca_file):
        raise UsageError("--pca N needs --fit SAMPLE (to learn the rotation) or --pca-file FILE (to load one)")
    if save and not fit:
        raise UsageError("--save keeps a PCA learned with --fit")


def _rotation(pca, fit, save, pca_file, stdin):
    """The PCA to apply (loaded, or fitted from the sample and saved), or None for a plain prefix."""
    from vecpipe.core.vectors.truncate import PCA, fit_pca
    from vecpipe.formats.vectors import VectorInputs

    if pca_file:
        return PCA.load(pca_file)
    if not fit:
        return None
    rotation = fit_pca(VectorInputs([fit], stdin, note=say), pca)
    if save:
        rotation.save(save)
    else:
        say("the PCA was not saved; to rotate queries the same way, add --save FILE")
    return rotation


def _warn_if_not_matryoshka(provenance: dict, dim: int) -> None:
    """One warning when the model that made these vectors lists Matryoshka dims without `dim`."""
    from vecpipe.core.models.kinds import find_manifest
    from vecpipe.core.vectors.truncate import matryoshka_warning

    if "pca_sha256" in provenance or not provenance.get("model"):
        return  # a PCA's components are ordered by variance: any prefix of them is fine
    warning = matryoshka_warning(find_manifest(provenance["model"]), dim)
    if warning:
        say(warning)
