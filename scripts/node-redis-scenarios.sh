#!/usr/bin/env bash
# Runs node-redis's own Redis Enterprise scenario specs
# (packages/client/lib/tests/test-scenario) against `maint-e2e emulator`,
# unchanged.
#
#   scripts/node-redis-scenarios.sh [spec files or mocha arguments...]
#
# Defaults to every spec of the folder (standalone and OSS Cluster).
# NODE_REDIS_SRC names a node-redis checkout (or a bare clone) to use;
# without it, github.com/redis/node-redis is cloned into target/node-redis.
# Its npm dependencies come from the npm registry. On a Node runtime older
# than 22, `Promise.withResolvers` (which the specs use) is added by a
# one-line preload: the specs themselves are not touched. MAINT_E2E_EMULATOR_ARGS
# adds options to `maint-e2e emulator`. Work files go to target/node-redis/;
# mocha's report to target/node-redis/report.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
work=target/node-redis
mkdir -p "$work"

src=${NODE_REDIS_SRC:-}
if [ -z "$src" ]; then
  [ -d "$work/node-redis" ] || git clone --quiet --depth 1 https://github.com/redis/node-redis "$work/node-redis"
  src=$work/node-redis
fi
tree=$work/tree
commit=$(git -C "$src" rev-parse HEAD)
if [ "$(cat "$tree/.commit" 2>/dev/null)" != "$commit" ]; then
  rm -rf "$tree"
  mkdir -p "$tree"
  git -C "$src" archive HEAD | tar -x -C "$tree"
  # The packages build (tsc) as node-redis's own CI does: the OSS Cluster
  # specs load @redis/test-utils from its dist/.
  (cd "$tree" && npm install --no-audit --no-fund --loglevel=error && npx tsc --build)
  echo "$commit" >"$tree/.commit"
fi
echo "node-redis $(git -C "$src" log -1 --format='%h %s')"

preload=$PWD/$work/with-resolvers.cjs
cat >"$preload" <<'EOF'
// Promise.withResolvers (Node 22+), for older runtimes.
if (!Promise.withResolvers) {
  Promise.withResolvers = function () {
    let resolve, reject;
    const promise = new this((a, b) => { resolve = a; reject = b; });
    return { promise, resolve, reject };
  };
}
EOF

work_abs=$PWD/$work
# shellcheck source=scripts/emulator-env.sh
. scripts/emulator-env.sh
# The suite's defaults: a 15-second MOVING grace.
start_emulator
export RE_FAULT_INJECTOR_URL=$FAULT_INJECTION_API_URL
export REDIS_ENDPOINTS_CONFIG_PATH
# As the specs' own header says to run them: the client publishes each
# maintenance event on its diagnostics channel, which the specs count.
export REDIS_EMIT_DIAGNOSTICS=true

cd "$tree/packages/client"
export NODE_OPTIONS="--require $preload ${NODE_OPTIONS:-}"
mocha() {
  npx mocha --require tsx --timeout 600000 --exit "$@" 2>&1 | tee -a "$work_abs/report.txt"
}
: >"$work_abs/report.txt"
if [ "$#" -gt 0 ]; then
  mocha "$@"
else
  # The standalone specs, then the OSS Cluster ones (the handoff spec builds
  # its tests from the trigger catalogue first: mocha's --delay).
  mocha $(ls lib/tests/test-scenario/*.e2e.ts | grep -v smart-client-handoffs-oss) || true
  mocha lib/tests/test-scenario/sharded-pubsub/spubsub.e2e.ts || true
  mocha --delay lib/tests/test-scenario/smart-client-handoffs-oss.e2e.ts || true
fi
