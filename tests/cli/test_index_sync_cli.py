"""`vecpipe index sync`: incremental re-embedding. Records whose text, model and prompt hash to what
the index recorded for their id are not embedded again; new and changed ones are, into the index."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from vecpipe.cli import app

runner = CliRunner()


def corpus(changed: dict | None = None, extra: int = 0) -> str:
    texts = {f"d{i}": f"sentence {i} about the weather and other things" for i in range(100)}
    texts.update(changed or {})
    texts.update({f"new{i}": f"an added sentence number {i}" for i in range(extra)})
    return "".join(json.dumps({"id": key, "text": text}) + "\n" for key, text in texts.items())


def sync(index, model, text, *args):
    result = runner.invoke(app, ["index", "sync", str(index), "-m", str(model), *args], text)
    assert result.exit_code == 0, result.output
    return result.stderr


@pytest.fixture
def index(tmp_path, tiny_model_dir):
    path = tmp_path / "docs.idx"
    assert "100 embedded (100 not synced before, 0 changed), 0 unchanged; 100 records" in sync(path, tiny_model_dir, corpus())
    return path


def test_a_second_sync_of_the_same_corpus_embeds_nothing(index, tiny_model_dir):
    assert "0 embedded (0 not synced before, 0 changed), 100 unchanged" in sync(index, tiny_model_dir, corpus())


def test_one_changed_and_one_new_record_are_all_that_is_embedded(index, tiny_model_dir):
    out = sync(index, tiny_model_dir, corpus({"d7": "sentence seven, rewritten"}, extra=1))
    assert "2 embedded (1 not synced before, 1 changed), 99 unchanged; 101 records" in out
    info = json.loads(runner.invoke(app, ["index", "info", str(index)]).stdout)
    assert info["count"] == 101


def test_synced_vectors_equal_what_embed_and_index_build_make(index, tiny_model_dir, tmp_path):
    vectors = runner.invoke(app, ["embed", "-q", "-m", str(tiny_model_dir)], corpus()).stdout
    built = tmp_path / "built.idx"
    assert runner.invoke(app, ["index", "build", "-q", "-o", str(built)], vectors).exit_code == 0
    query = vectors.splitlines()[42]
    for path in (index, built):
        hits = [json.loads(line) for line in runner.invoke(app, ["search", str(path), "-k", "3", "--exact"], query).stdout.splitlines()]
        assert hits[0]["id"] == "d42" and hits[0]["score"] > 0.9999


def test_a_record_replaced_by_index_add_is_embedded_again_by_the_next_sync(index, tiny_model_dir):
    other = runner.invoke(app, ["embed", "-q", "-m", str(tiny_model_dir)], json.dumps({"id": "d3", "text": "something else"}) + "\n").stdout
    assert runner.invoke(app, ["index", "add", "-q", str(index)], other).exit_code == 0
    # index add dropped d3's recorded hash (its vector is no longer its synced text's)
    assert "1 embedded (1 not synced before, 0 changed), 99 unchanged" in sync(index, tiny_model_dir, corpus())


def test_a_prompt_change_is_a_change_and_another_model_is_refused(tmp_path, index, tiny_model_dir, tiny_checkpoint):
    prompted = tmp_path / "prompted.idx"
    assert "100 embedded" in sync(prompted, tiny_model_dir, corpus(), "--prompt", "document")
    assert "0 embedded" in sync(prompted, tiny_model_dir, corpus())  # later syncs keep the index's prompt
    refused = runner.invoke(app, ["index", "sync", str(index), "-m", "all-MiniLM-L6-v2"], corpus())
    assert refused.exit_code == 3 and "differs from the index's" in refused.stderr


def test_a_sharded_index_syncs_each_record_in_its_own_shard(tmp_path, tiny_model_dir):
    from vecpipe.core.index.meta import id_key
    from vecpipe.core.index.shards import shard_of, shard_of_key, sharded_text_hashes
    from vecpipe.core.index.vector_index import stored_text_hashes

    vectors = runner.invoke(app, ["embed", "-q", "-m", str(tiny_model_dir)], corpus()).stdout
    path = tmp_path / "sharded.idx"
    assert runner.invoke(app, ["index", "build", "-q", "--shards", "3", "-o", str(path)], vectors).exit_code == 0
    assert "100 embedded (100 not synced before, 0 changed), 0 unchanged; 100 records" in sync(path, tiny_model_dir, corpus())
    assert "0 embedded (0 not synced before, 0 changed), 100 unchanged" in sync(path, tiny_model_dir, corpus())
    generations = {shard.name: (shard / "CURRENT").read_text() for shard in sorted(path.glob("s0*"))}
    out = sync(path, tiny_model_dir, corpus({"d7": "sentence seven, rewritten"}))
    assert "1 embedded (0 not synced before, 1 changed), 99 unchanged; 100 records" in out
    changed = {shard.name for shard in sorted(path.glob("s0*")) if (shard / "CURRENT").read_text() != generations[shard.name]}
    assert changed == {f"s{shard_of('d7', 3):03d}"}  # only d7's shard got a new generation
    keys = [id_key(f"d{i}") for i in range(100)]
    assert len(sharded_text_hashes(path, keys)) == 100
    for n, shard in enumerate(sorted(path.glob("s0*"))):  # each shard holds the hashes of its own records only
        assert set(stored_text_hashes(shard, keys)) == {key for key in keys if shard_of_key(key, 3) == n}
