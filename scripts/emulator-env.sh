# Sourced by the scripts that run other clients' suites: `start_emulator`
# builds `maint-e2e`, starts `maint-e2e emulator` with the options it is given
# and MAINT_E2E_EMULATOR_ARGS (its files in $work), and exports
# FAULT_INJECTION_API_URL and REDIS_ENDPOINTS_CONFIG_PATH. The emulator is
# stopped (by its PID) on exit.
start_emulator() {
  # The suites' FQDN tests need the cluster's names to resolve to loopback
  # (the emulator falls back to `localhost` and says so only in its log).
  if ! getent hosts redis-0.maint-e2e.localhost >/dev/null 2>&1; then
    echo "warning: host names under .localhost do not resolve here; the FQDN tests will fail." >&2
    echo "         On Debian or Ubuntu: apt-get install libnss-myhostname (and 'myhostname' on the hosts line of /etc/nsswitch.conf)." >&2
  fi
  cargo build --release --bin maint-e2e
  local out="$work/emulator.json"
  rm -f "$out"
  # shellcheck disable=SC2086
  target/release/maint-e2e emulator --endpoints-out "$work/endpoints.json" "$@" \
    ${MAINT_E2E_EMULATOR_ARGS:-} >"$out" 2>"$work/emulator.log" &
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
}
