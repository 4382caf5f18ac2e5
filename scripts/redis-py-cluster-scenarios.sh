#!/usr/bin/env bash
# Runs redis-py's own OSS Cluster API scenario tests (tests/test_scenario,
# the cluster-client tests that post slot_migrate to the fault injector and
# read its slot migration catalogue) against `maint-e2e emulator`, unchanged.
# Needs python3 with venv and access to PyPI.
#
#   scripts/redis-py-cluster-scenarios.sh [pytest arguments...]
#
# Defaults to `-k Cluster`. REDIS_PY_VERSION and MAINT_E2E_EMULATOR_ARGS as
# for scripts/redis-py-scenarios.sh. Work files go to target/redis-py/.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/redis-py-env.sh
. scripts/redis-py-env.sh
start_emulator

if [ "$#" -eq 0 ]; then
  set -- -k Cluster
fi
cd "$work/redis-$version"
../venv/bin/python -m pytest tests/test_scenario/test_maint_notifications.py \
  -p no:cacheprovider -rA --junitxml="../junit-cluster.xml" "$@"
