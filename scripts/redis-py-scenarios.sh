#!/usr/bin/env bash
# Runs redis-py's own Redis Enterprise scenario suite (tests/test_scenario, the
# standalone maintenance-notification tests) against `maint-e2e emulator`,
# unchanged. Needs python3 with venv and access to PyPI; takes about 25 minutes
# (the suite waits out real 15-second MOVING grace periods and runs 60-second
# traffic phases).
#
#   scripts/redis-py-scenarios.sh [pytest arguments...]
#
# Defaults to `-k Standalone`. REDIS_PY_VERSION picks the redis-py release
# (default 8.1.0); MAINT_E2E_EMULATOR_ARGS adds options to `maint-e2e emulator`
# (say `--settle-s 0`). Work files go to target/redis-py/.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/redis-py-env.sh
. scripts/redis-py-env.sh
# The defaults the suite expects: a 15-second MOVING grace.
start_emulator

if [ "$#" -eq 0 ]; then
  set -- -k Standalone
fi
cd "$work/redis-$version"
../venv/bin/python -m pytest tests/test_scenario/test_maint_notifications.py \
  -p no:cacheprovider -rA --junitxml="../junit.xml" "$@"
