#!/usr/bin/env bash
# Set up, then sync the sample county (made on first use in ./data) into ./staging.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/countydatasync demo "$@"
