#!/usr/bin/env bash
# The whole check a change must pass: lint, strict types, then unit and namespace tests.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
echo "== ruff"; $PY -m ruff check src tests bench
echo "== mypy --strict"; $PY -m mypy
# One retry for a failed test: some namespace tests with real daemons (Heartbeat interop, the
# demo's Ctrl-C cleanup, the MTA hand-off) failed once in several runs on this shared 2-core
# machine and passed on every re-run; a retry shows in the summary as "rerun", it is not hidden.
echo "== pytest"; $PY -m pytest -q -p no:cacheprovider --reruns 1 --reruns-delay 2 --durations=15 "$@"
