# Sourced by the redis-py scripts: downloads redis-py (REDIS_PY_VERSION,
# default 8.1.0) into target/redis-py with a venv; `start_emulator` (from
# emulator-env.sh) starts the emulator.
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

# shellcheck source=scripts/emulator-env.sh
. scripts/emulator-env.sh
