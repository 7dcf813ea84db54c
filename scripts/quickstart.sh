#!/usr/bin/env bash
# Set up (once) and run the main job on the embedded model: CodecLM generation from the
# example seeds, SmolLM2-135M as both strong and target, tiny sizes (a few minutes on 2 cores).
# The judge answers in JSON (a llama.cpp grammar), so every judgement yields two scores.
# Extra arguments go to `synthcodec generate`, e.g. scripts/quickstart.sh --overwrite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh local
exec .venv/bin/synthcodec generate examples/seeds.jsonl --strong local --target local \
  -n 4 --size 4 --per-metadata 1 --max-iterations 2 --max-tokens 160 \
  --judge-max-tokens 32 --judge-reasks 1 -o runs/quickstart "$@"
