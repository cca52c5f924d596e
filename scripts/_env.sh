# Shared by scripts/demo and scripts/test: make .venv and install the project into it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "== [1/2] creating .venv with $("$PY" --version 2>&1)" >&2
  "$PY" -m venv .venv
fi
stamp=.venv/.installed-$(cat pyproject.toml | sha256sum | cut -c1-16)-$1
if [ ! -f "$stamp" ]; then
  echo "== [2/2] installing cloudisense[$1] into .venv (about 2 minutes the first time)" >&2
  .venv/bin/python -m pip install -q --upgrade pip "setuptools>=77" wheel >&2
  .venv/bin/python -m pip install -q -e ".[$1]" >&2
  rm -f .venv/.installed-*-"$1"
  touch "$stamp"
  echo "== installed" >&2
fi
