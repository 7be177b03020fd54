#!/usr/bin/env bash
# The main job, from nothing: set up, then run `python -m experiments main` (extra arguments pass through).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m experiments main "$@"
