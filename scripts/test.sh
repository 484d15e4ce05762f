#!/usr/bin/env bash
# The whole check a change must pass: lint, strict types, then unit and namespace tests.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
echo "== ruff"; $PY -m ruff check src tests bench
echo "== mypy --strict"; $PY -m mypy
echo "== pytest"; $PY -m pytest -q -p no:cacheprovider "$@"
