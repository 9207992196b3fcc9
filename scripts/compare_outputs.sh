#!/usr/bin/env bash
# Byte-for-byte comparison of the fixture pipelines' outputs between an earlier commit and this
# tree, for refactors that must not change behaviour:
#
#   scripts/compare_outputs.sh BASE_REV [WORK_DIR]
#
# Each tree's `vecpipe/` (BASE_REV's extracted with git archive) runs the same pipelines on a
# SciFact slice (1,500 documents, 60 queries) and 300 SICK-R pairs with the default model: embed
# (JSONL and .npy), index build (graph, lexical, 3 shards, binary with floats kept, int8), search
# (approximate, exact, text, hybrid, lexical, sharded, rescored, filtered), index info, truncate |
# quantize, eval retrieval (embedded and --index), eval sts, index sync and delete. Outputs must be
# identical, except the timing and date fields of eval's JSON and index info, which are dropped.
# Text queries searched in hybrid mode are compared by ids and ranks with a tolerance: their
# dense list can differ in the last float bits from run to run of the same code.
set -euo pipefail
base=${1:?usage: scripts/compare_outputs.sh BASE_REV [WORK_DIR]}
repo=$(cd "$(dirname "$0")/.." && pwd)
work=${2:-$(mktemp -d)}
python=${PYTHON:-$repo/.venv/bin/python}
data=$repo/../shared/data
mkdir -p "$work/base"
git -C "$repo" archive "$base" vecpipe | tar -x -C "$work/base"

run_pipelines() {  # TREE OUT
  local tree=$1 out=$2
  rm -rf "$out" && mkdir -p "$out" && cd "$out"
  vp() { PYTHONPATH=$tree "$python" -m vecpipe "$@"; }
  head -1500 "$data/scifact/corpus.jsonl" > corpus.jsonl
  head -60 "$data/scifact/queries.jsonl" > queries.jsonl
  head -300 "$data/sickr/test.jsonl" > sick.jsonl
  vp embed -q corpus.jsonl > docs.jsonl
  vp embed -q --format npy -o docs.npy corpus.jsonl
  vp embed -q queries.jsonl > q.jsonl
  vp index build -q -o idx docs.jsonl
  vp index build -q -o lex.idx --lexical docs.jsonl
  vp index build -q -o sh.idx --shards 3 --lexical docs.jsonl
  vp index build -q -o bin.idx --quantize binary --keep-float docs.jsonl
  vp index build -q -o i8.idx --quantize int8 docs.jsonl
  vp search idx -i q.jsonl -k 10 > s.idx.jsonl
  vp search idx -i q.jsonl -k 10 --exact > s.idx.exact.jsonl
  vp search idx "cancer cells" -k 7 > s.text.jsonl
  vp search lex.idx -i queries.jsonl -k 10 --mode hybrid > hybrid.jsonl
  vp search lex.idx "vitamin D" --mode lexical -k 10 > s.lexical.jsonl
  vp search sh.idx -i q.jsonl -k 10 --exact --mode dense > s.sh.jsonl
  vp search sh.idx "vitamin D" --mode hybrid -k 10 > s.sh.hybrid.jsonl
  vp search bin.idx -i q.jsonl -k 10 --rescore 4 > s.bin.jsonl
  vp search i8.idx -i q.jsonl -k 10 > s.i8.jsonl
  vp search idx -i q.jsonl -k 10 --where 'title>=M' > s.where.jsonl 2>&1 || echo "exit $?" >> s.where.jsonl  # a refusal is an output too
  vp index info idx --json > info.idx.json
  vp index info sh.idx --json > info.sh.json
  vp truncate --dim 128 docs.jsonl | vp quantize --to binary > tq.jsonl
  vp quantize --to int8 docs.npy > qi8.jsonl 2> qi8.err
  vp eval retrieval --corpus corpus.jsonl --queries queries.jsonl --qrels "$data/scifact/qrels/test.tsv" --json > eval.json 2> eval.err
  vp eval retrieval --index idx --queries q.jsonl --qrels "$data/scifact/qrels/test.tsv" --json > eval.idx.json 2> eval.idx.err
  vp eval sts --pairs sick.jsonl --json > sts.json 2> sts.err
  printf '{"id":"n1","text":"new doc on vitamin D"}\n{"id":"n2","text":"unrelated"}\n' | vp index sync -q idx
  vp search idx "vitamin D" -k 3 > s.sync.jsonl
  vp index delete -q idx --id n1
  vp search idx "vitamin D" -k 3 > s.del.jsonl
  rm -rf idx lex.idx sh.idx bin.idx i8.idx docs.npy
  sed -i 's/[0-9]* texts embedded, [0-9]* read from the embedding cache/N texts embedded/' eval.err sts.err  # the cache is shared
}

(run_pipelines "$work/base" "$work/out-base")
(run_pipelines "$repo" "$work/out-head")
"$python" - "$work/out-base" "$work/out-head" <<'EOF'
import json, sys
from pathlib import Path

TIMING = {"evaluation_time", "seconds", "qps", "created", "updated", "date", "path", "bytes_on_disk"}
base, head = map(Path, sys.argv[1:])

def strip(value):
    if isinstance(value, dict):
        return {k: strip(v) for k, v in value.items() if k not in TIMING}
    if isinstance(value, list):
        return [strip(v) for v in value]
    return value

def hits(path):
    return [(h["query_id"], h["id"], h["rank"]) for h in map(json.loads, path.read_text().splitlines())]

differ = []
for a in sorted(base.iterdir()):
    b = head / a.name
    if a.name.endswith(".json"):
        same = strip(json.loads(a.read_text())) == strip(json.loads(b.read_text()))
    elif a.name == "hybrid.jsonl":
        ha, hb = hits(a), hits(b)
        same = len(ha) == len(hb) and sum(x != y for x, y in zip(ha, hb)) <= len(ha) // 50
    else:
        same = a.read_bytes() == b.read_bytes()
    print(f"{'same' if same else 'DIFFERENT'}  {a.name} ({a.stat().st_size} bytes)")
    differ += [] if same else [a.name]
sys.exit(f"{len(differ)} outputs differ: {', '.join(differ)}" if differ else 0)
EOF
