#!/usr/bin/env bash
# Set up (once, with the test, training, Hugging Face datasets, benchmark, viewer and Ray extras) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh dev,train,hf,eval,view,ray
exec .venv/bin/python -m pytest "$@"
