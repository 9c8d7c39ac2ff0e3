#!/usr/bin/env bash
# The test suite (README, second command).
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 -m pytest -q "$@"
