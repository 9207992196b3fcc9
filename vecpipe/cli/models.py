"""`vecpipe models`: list, inspect, locate and convert models."""
from __future__ import annotations

from typing import Optional

import typer

from vecpipe.cli.common import handles_errors, say, stdout_is_terminal

models_app = typer.Typer(
    help="Manage embedding models: list the cache, show a manifest, print a path, convert a checkpoint.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")


def _print_json(value) -> None:
    import orjson

    print(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())


@models_app.command("list")
@handles_errors
def list_models(as_json: bool = typer.Option(False, "--json", help="JSONL even on a terminal.")) -> None:
    """List converted models in the cache ($VECPIPE_HOME/models) and the built-in names."""
    from vecpipe.core.registry import BUILTINS, list_cached

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


@models_app.command("info")
@handles_errors
def info(name: Optional[str] = typer.Argument(None, help="Model name or directory (default all-MiniLM-L6-v2).")) -> None:
    """Print a model's manifest (vecpipe.json) as JSON, converting it first if needed."""
    from vecpipe.core.registry import read_manifest, resolve

    path = resolve(name, notify=say)
    _print_json({"path": str(path), **read_manifest(path)})


@models_app.command("path")
@handles_errors
def path(name: Optional[str] = typer.Argument(None, help="Model name or directory (default all-MiniLM-L6-v2).")) -> None:
    """Print the model's directory, converting it first if needed."""
    from vecpipe.core.registry import resolve

    print(resolve(name, notify=say))


@models_app.command("convert")
@handles_errors
def convert(
    source: str = typer.Argument(..., help="A sentence-transformers checkpoint directory (safetensors + tokenizer.json + json configs)."),
    output: str = typer.Option(..., "-o", "--output", help="Directory to create."),
    layers: Optional[int] = typer.Option(None, "--layers", help="Keep only the first N transformer layers."),
    name: Optional[str] = typer.Option(None, "--name", help="Model name recorded in the manifest (default: the directory name)."),
) -> None:
    """Convert a BERT-family sentence-transformers checkpoint to an ONNX model directory, without torch."""
    import os
    import shutil
    from pathlib import Path

    from vecpipe.core.atomic import make_temp_dir_beside
    from vecpipe.core.convert import convert as convert_checkpoint
    from vecpipe.core.errors import UsageError

    src, target = Path(source), Path(output)
    if target.exists():
        raise UsageError(f"{output} already exists; choose a new directory")
    tmp = make_temp_dir_beside(target)
    try:
        manifest = convert_checkpoint(src, tmp, name or src.resolve().name, layers=layers)
        os.rename(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    say(f"wrote {target} ({manifest['layers']} layers, dim {manifest['dim']}, {manifest['pooling']} pooling)")
