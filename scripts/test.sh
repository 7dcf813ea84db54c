#!/usr/bin/env bash
# Set up (once, with the test, embedded-model, training, Hugging Face datasets, benchmark, viewer and Ray extras) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh dev,local,train,hf,eval,view,ray
exec .venv/bin/python -m pytest "$@"
