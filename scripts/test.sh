#!/usr/bin/env bash
# One command from a fresh machine to a test run: bash scripts/test.sh [pytest args]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
exec python -m pytest -q "$@"
