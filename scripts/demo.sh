#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the GridPatrol demo on http://127.0.0.1:8000 (extra arguments go to `gridpatrol demo`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/gridpatrol demo "$@"
