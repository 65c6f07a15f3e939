#!/usr/bin/env bash
# Run the test suite (what the README's second command runs). Slow chaos runs are marked
# `slow` and excluded here; `bench/` runs the long versions.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e '.[test]'
fi
exec .venv/bin/python -m pytest -n 2 -q "$@"
