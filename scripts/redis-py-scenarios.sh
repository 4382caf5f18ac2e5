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
version=${REDIS_PY_VERSION:-8.1.0}
work=target/redis-py
mkdir -p "$work"

if [ ! -d "$work/redis-$version" ]; then
  python3 -m pip download --quiet --no-deps --no-binary :all: "redis==$version" -d "$work"
  tar -xzf "$work/redis-$version.tar.gz" -C "$work"
fi
if [ ! -x "$work/venv/bin/python" ]; then
  python3 -m venv "$work/venv"
  "$work/venv/bin/pip" install --quiet "$work/redis-$version" pytest pytest-asyncio \
    pytest-timeout packaging ujson numpy pybreaker aiohttp xxhash \
    opentelemetry-api opentelemetry-sdk redis-entraid
fi

cargo build --release --bin maint-e2e
out="$work/emulator.json"
rm -f "$out"
# The defaults the suite expects: a 15-second MOVING grace.
# shellcheck disable=SC2086
target/release/maint-e2e emulator --endpoints-out "$work/endpoints.json" ${MAINT_E2E_EMULATOR_ARGS:-} >"$out" 2>"$work/emulator.log" &
emu=$!
trap 'kill -TERM "$emu" 2>/dev/null || true; wait "$emu" 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do
  [ -s "$out" ] && break
  kill -0 "$emu" 2>/dev/null || { cat "$work/emulator.log"; exit 1; }
  sleep 0.1
done
FAULT_INJECTION_API_URL=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["fault_injector_url"])' "$out")
export FAULT_INJECTION_API_URL
export REDIS_ENDPOINTS_CONFIG_PATH="$PWD/$work/endpoints.json"
echo "emulator: $FAULT_INJECTION_API_URL, endpoints $REDIS_ENDPOINTS_CONFIG_PATH"

if [ "$#" -eq 0 ]; then
  set -- -k Standalone
fi
cd "$work/redis-$version"
../venv/bin/python -m pytest tests/test_scenario/test_maint_notifications.py \
  -p no:cacheprovider -rA --junitxml="../junit.xml" "$@"
