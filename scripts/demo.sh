#!/usr/bin/env bash
# The demo: semantic search over this machine's own man-page descriptions.
#   apropos . | vecpipe embed | vecpipe index build -o demo-out/man.idx
#   vecpipe search demo-out/man.idx "compress a directory"
# Without man pages it falls back to the Python standard library's docstrings.
set -euo pipefail
cd "$(dirname "$0")/.."
out=demo-out
mkdir -p "$out"
start=$(date +%s)

if apropos . >"$out/corpus.txt" 2>/dev/null && [ -s "$out/corpus.txt" ]; then
  echo "demo: $(wc -l <"$out/corpus.txt") man-page descriptions from \`apropos .\`" >&2
else
  python3 scripts/stdlib_docs.py >"$out/corpus.txt"
  echo "demo: no man pages here; using $(wc -l <"$out/corpus.txt") Python standard library docstrings" >&2
fi

vecpipe embed "$out/corpus.txt" | vecpipe index build --overwrite -o "$out/man.idx"  # a second make demo rebuilds it
vecpipe index info "$out/man.idx" --json >&2

for query in "compress a directory" "show network connections" "find files by name" \
             "change file permissions" "edit text in the terminal"; do
  echo
  echo "## $query"
  vecpipe search "$out/man.idx" "$query" -k 5 --json | python3 -c '
import json, sys
for line in sys.stdin:
    hit = json.loads(line)
    print("%d. %.3f  %s" % (hit["rank"], hit["score"], hit.get("text", hit["id"])))
'
done
echo
echo "demo: embed, index and 5 searches took $(( $(date +%s) - start )) s" >&2
