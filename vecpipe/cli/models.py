"""`vecpipe models`: list, inspect, locate and convert models."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from vecpipe.cli.common import handles_errors, say, stdout_is_terminal

models_app = typer.Typer(
    help="Manage embedding models: list the cache, show a manifest, print a path, convert a checkpoint, make an int8 variant.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")


def _print_json(value) -> None:
    import orjson

    print(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())


@models_app.command("list")
@handles_errors
def list_models(
    as_json: bool = typer.Option(False, "--json", help="JSONL even on a terminal."),
    known: bool = typer.Option(False, "--known", help="The catalogue of models vecpipe knows by name instead: family, dimension, max tokens, prompts, Matryoshka dims, licence, and whether each is here."),
) -> None:
    """List converted models in the cache ($VECPIPE_HOME/models) and the built-in names."""
    from vecpipe.core.models.registry import BUILTINS, list_cached

    if known:
        _list_known(as_json)
        return
    cached = list_cached()
    rows = [{"name": m["name"], "dim": m["dim"], "layers": m.get("layers"), "variant": m.get("variant", "fp32"), "path": m["path"]} for m in cached]
    known = {r["name"] for r in rows}
    rows += [{"name": name, "dim": None, "layers": None, "variant": "not converted yet", "path": None} for name in BUILTINS if name not in known]
    if as_json or not stdout_is_terminal():
        import orjson

        for row in rows:
            print(orjson.dumps(row).decode())
        return
    from vecpipe.cli.common import print_table

    print_table("models", ["name", "dim", "layers", "variant", "path"], [list(r.values()) for r in rows])


def _list_known(as_json: bool) -> None:
    from vecpipe.core.models.catalogue import KNOWN
    from vecpipe.core.models.registry import cache_path

    rows = []
    for model in KNOWN:
        here = any((cache_path(n) / "vecpipe.json").exists() for n in (model.name, model.hub_id.replace("/", "--")))
        rows.append({**model.describe(), "local": here})
    if as_json or not stdout_is_terminal():
        import orjson

        for row in rows:
            print(orjson.dumps(row).decode())
        return
    from vecpipe.cli.common import print_table

    columns = ["name", "family", "dim", "max_tokens", "prompts", "matryoshka_dims", "licence", "local"]
    print_table("known models (-m NAME; one not here is pulled from hf:ORG/NAME when online)", columns,
                [[r["name"], r["family"], r["dim"], r["max_tokens"], ", ".join(r["prompts"]) or "", ", ".join(map(str, r["matryoshka_dims"])),
                  r["licence"], "yes" if r["local"] else "no"] for r in rows])


@models_app.command("info")
@handles_errors
def info(
    name: Optional[str] = typer.Argument(None, help="Model name or directory (default all-MiniLM-L6-v2)."),
    verify: bool = typer.Option(False, "--verify", help="Re-hash every file in full (loads trust a file whose size, times and inode are unchanged since its last full hash)."),
) -> None:
    """Print a model's manifest (vecpipe.json) as JSON, converting it first if needed."""
    from vecpipe.core.models.registry import read_manifest, resolve, verify_model_dir

    path = resolve(name, notify=say)
    if verify:
        verify_model_dir(path, full=True)
        say(f"every file of {path} matches its sha256")
    _print_json({"path": str(path), **read_manifest(path)})


@models_app.command("path")
@handles_errors
def path(name: Optional[str] = typer.Argument(None, help="Model name or directory (default all-MiniLM-L6-v2).")) -> None:
    """Print the model's directory, converting it first if needed."""
    from vecpipe.core.models.registry import resolve

    print(resolve(name, notify=say))


@models_app.command("convert")
@handles_errors
def convert(
    source: str = typer.Argument(..., help="A sentence-transformers checkpoint directory (safetensors + tokenizer.json + json configs)."),
    output: str = typer.Option(..., "-o", "--output", help="Directory to create."),
    layers: Optional[int] = typer.Option(None, "--layers", help="Keep only the first N transformer layers."),
    name: Optional[str] = typer.Option(None, "--name", help="Model name recorded in the manifest (default: the directory name)."),
    graph: str = typer.Option("plain", "--graph", help="plain (standard ONNX ops, which onnxruntime fuses itself at load: measured faster here) or fused (onnxruntime's contrib transformer ops written directly)."),
) -> None:
    """Convert a sentence-transformers checkpoint (BERT, RoBERTa, XLM-RoBERTa, MPNet) to an ONNX model directory, without torch."""
    from vecpipe.core.models.convert import GRAPH_FORMS
    from vecpipe.core.models.convert import convert as convert_checkpoint
    from vecpipe.core.errors import UsageError

    if graph not in GRAPH_FORMS:
        raise UsageError(f"--graph must be one of {', '.join(GRAPH_FORMS)}")
    src, target = Path(source), Path(output)
    _refuse_existing(target)
    manifest = _new_model_dir(target, lambda tmp: convert_checkpoint(src, tmp, name or src.resolve().name, layers=layers, graph_form=graph))
    shape = "a static table" if manifest["architecture"] == "static" else f"{manifest['layers']} layers, {manifest['pooling']} pooling, {graph} graph"
    say(f"wrote {target} ({shape}, dim {manifest['dim']})")


@models_app.command("import")
@handles_errors
def import_export(
    source: str = typer.Argument(..., help="A ready ONNX export: model.onnx or onnx/model.onnx, tokenizer.json and sentence-transformers' configs."),
    output: str = typer.Option(..., "-o", "--output", help="Directory to create."),
    name: Optional[str] = typer.Option(None, "--name", help="Model name recorded in the manifest (default: the directory name)."),
) -> None:
    """Import a ready ONNX export (inputs input_ids, attention_mask, optionally token_type_ids) as a model directory; `-m DIR` does it on first use."""
    from vecpipe.core.models.onnx_import import import_export as import_onnx_export

    src, target = Path(source), Path(output)
    _refuse_existing(target)
    manifest = _new_model_dir(target, lambda tmp: import_onnx_export(src, tmp, name or src.resolve().name))
    say(f"wrote {target} (dim {manifest['dim']}, {manifest['pooling']} pooling, imported graph)")


def _refuse_existing(target: Path) -> None:
    from vecpipe.core.errors import UsageError

    if target.exists():
        raise UsageError(f"{target} already exists; choose a new directory")


def _new_model_dir(target: Path, build):
    """Build into a temp dir beside `target`, then rename it into place: no half-written model is ever seen."""
    import os
    import shutil

    from vecpipe.core.atomic import make_temp_dir_beside

    tmp = make_temp_dir_beside(target)
    try:
        built = build(tmp)
        os.rename(tmp, target)
        return built
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


OPTIMIZE_HELP = """Make an optimized variant of a model: `--int8` quantizes it to int8.

Without -o the variant goes into the cache beside its model and is used as
`-m NAME:int8` (which also makes it on first use, with the built-in calibration texts).
With -o DIR it becomes a model directory of its own, used as `-m DIR`.

Examples:

  vecpipe models optimize all-MiniLM-L6-v2 --int8

  vecpipe embed -m all-MiniLM-L6-v2:int8 docs.jsonl > docs.vec.jsonl

  vecpipe models optimize ./my-model --int8 --calibration my-texts.txt -o ./my-model-int8
"""


@models_app.command("optimize", help=OPTIMIZE_HELP)
@handles_errors
def optimize(
    name: Optional[str] = typer.Argument(None, help="Model name or directory (default all-MiniLM-L6-v2)."),
    int8: bool = typer.Option(False, "--int8", help="Quantize weights and activations to int8 (about 0.997 mean cosine to fp32)."),
    output: Optional[str] = typer.Option(None, "-o", "--output", help="Directory to create, instead of the cache."),
    calibration: Optional[str] = typer.Option(None, "--calibration", help="Texts (lines or JSONL, field `text`) to calibrate on instead of the built-in ones."),
) -> None:
    from vecpipe.core.errors import UsageError
    from vecpipe.core.models.optimize import make_variant
    from vecpipe.core.models.registry import make_cached_variant, read_manifest, resolve

    if not int8:
        raise UsageError("say which optimization: --int8")
    if output:
        _refuse_existing(Path(output))
    texts = _calibration_texts(calibration) if calibration else None
    base_dir = resolve(name, notify=say)
    if output:
        target = Path(output)
        _new_model_dir(target, lambda tmp: make_variant(base_dir, tmp, "int8", texts))
    else:
        target = make_cached_variant(base_dir, "int8", say, texts)
    use = str(target) if output else read_manifest(target)["name"]
    say(f"wrote {target}; use it with -m {use}")


def _calibration_texts(path: str) -> list:
    from vecpipe.cli.common import input_name, open_input
    from vecpipe.formats.text import read_texts

    with open_input(path) as stream:
        return [record.text for record in read_texts(stream, input_name(path))]
