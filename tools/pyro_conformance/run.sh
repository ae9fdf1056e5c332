#!/bin/bash
# Run Pyro's own test files against causalppl, transliterated mechanically.
# usage: tools/pyro_conformance/run.sh PYRO_SRC RUN_DIR FILE...
#   PYRO_SRC: a folder holding Pyro's test files as laid out in its repository (tests/...)
#   RUN_DIR:  where the transliterated tree is written and run (created)
#   FILE:     paths under PYRO_SRC, e.g. tests/poutine/test_poutines.py
# Prints one pytest summary line per file (also written to RUN_DIR/result.txt).
set -u
HERE=$(cd "$(dirname "$0")" && pwd); ROOT=$(cd "$HERE/../.." && pwd)
SRC=$1; RUN=$2; shift 2
mkdir -p "$RUN" && cp -r "$HERE/base/." "$RUN/"
python "$HERE/translit.py" "$SRC" "$RUN" > /dev/null
cp "$HERE/base/tests/common.py" "$HERE/base/tests/conftest.py" "$RUN/tests/"  # ours, over any transliterated copy
(cd "$RUN" && find tests -type d -exec touch {}/__init__.py \;)
: > "$RUN/result.txt"
for f in "$@"; do
  res=$(cd "$RUN" && OMP_NUM_THREADS=1 PYTHONPATH="$ROOT:$RUN" timeout "${CONFORM_TIMEOUT:-1800}" \
        python -m pytest -q -rN "$f" 2>&1 | tail -1)
  echo "$f :: $res" | tee -a "$RUN/result.txt"
done
