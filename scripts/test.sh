#!/usr/bin/env bash
# The whole test suite, from nothing: set up with the dev extra, then pytest (arguments pass through).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh dev
exec .venv/bin/python -m pytest "$@"
