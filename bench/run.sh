#!/usr/bin/env bash
# `make bench`: run every benchmark script in bench/ (each one with a __main__ block), each
# replacing its own section of bench/RESULTS.md. Helpers such as sections.py have no __main__
# and are skipped. The scripts wait for (or demand) a quiet machine themselves.
set -euo pipefail
cd "$(dirname "$0")/.."
# make bench puts the venv first on PATH; run directly, the repo venv is used when present.
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python; fi
fi
status=0
for script in bench/*.py; do
    grep -q '^if __name__ == "__main__":' "$script" || continue
    echo "== $script" >&2
    "$PYTHON" "$script" --write bench/RESULTS.md || { echo "bench/run.sh: $script failed" >&2; status=1; }
done
exit $status
