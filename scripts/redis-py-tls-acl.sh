#!/usr/bin/env bash
# redis-py against `maint-e2e emulator`'s mutual-TLS and ACL databases, with only
# what the endpoints file and certificatesLocation give it: it connects,
# authenticates as the endpoints file's user, and follows a MOVING under traffic
# with the server's certificate and name verified (scripts/redis-py-tls-acl.py).
# Needs python3 with venv and access to PyPI; takes under a minute once the
# venv exists.
#
#   scripts/redis-py-tls-acl.sh [database names...]
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/redis-py-env.sh
. scripts/redis-py-env.sh
start_emulator --grace-s 5
"$work/venv/bin/python" scripts/redis-py-tls-acl.py "$@"
