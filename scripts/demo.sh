#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the GridPatrol demo on http://127.0.0.1:8000 (extra arguments go to
# `gridpatrol demo`: --port, --host, --accept-within, --resolve-within; GRIDPATROL_GATEWAY_PORT moves the RTSP
# gateway that serves the demo cameras, 8554). README: "The demo, step by step".
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# the demo signs logins with a key published in the source: only ever in this environment (the command sets it too)
export GRIDPATROL_ENVIRONMENT=demo
exec .venv/bin/gridpatrol demo "$@"
