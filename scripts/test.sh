#!/usr/bin/env bash
# Set up (once, with the test, training and Hugging Face datasets extras) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh dev,train,hf
exec .venv/bin/python -m pytest "$@"
