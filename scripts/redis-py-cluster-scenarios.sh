#!/usr/bin/env bash
# Runs redis-py's own OSS Cluster API scenario tests (tests/test_scenario,
# the cluster-client tests that post slot_migrate to the fault injector and
# read its slot migration catalogue) against `maint-e2e emulator`, unchanged:
# scripts/redis-py-scenarios.sh with `-k Cluster` unless other pytest
# arguments are given (about 8 minutes).
set -euo pipefail
if [ "$#" -eq 0 ]; then
  set -- -k Cluster
fi
exec "$(dirname "$0")/redis-py-scenarios.sh" "$@"
