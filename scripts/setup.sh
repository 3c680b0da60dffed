#!/usr/bin/env bash
# Create .venv and install CountyDataSync with its development tools. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
# constraints.txt: the versions the tests passed with (see its header)
.venv/bin/python -m pip install --quiet -c constraints.txt -e ".[dev]"
