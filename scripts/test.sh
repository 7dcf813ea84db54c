#!/usr/bin/env bash
# Set up (once, with the test and training extras) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh dev,train
exec .venv/bin/python -m pytest "$@"
