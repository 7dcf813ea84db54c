#!/usr/bin/env bash
# Set up (once) and run the main job on the embedded model.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/synthcodec complete examples/questions.jsonl --field prompt=question -o runs/quickstart "$@"
