#!/usr/bin/env bash
# Set up Lockstep in .venv and run the main job on its default settings.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/lockstep ]; then
  python3 -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e '.[test]'
fi
exec .venv/bin/lockstep testnet up "$@"
