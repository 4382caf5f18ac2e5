#!/usr/bin/env bash
# The conformance matrix: the acceptance suite once per client under test
# (this crate's own handoff client, then each shipped driver's client), then
# `maint-e2e matrix`, which writes target/conformance/index.html, checks it
# in headless Chromium and passes its own options on: for example
#   scripts/conformance.sh --expect conformance/passing.tsv
#   scripts/conformance.sh --screenshot docs/conformance-matrix.png
# A client failing a scenario is a cell of the matrix, not a stop: every
# pass runs to its end. A driver that cannot start (no Python with venv, no
# Node.js 20) leaves its client out of the matrix, and says why.
set -uo pipefail
cd "$(dirname "$0")/.."
cargo build --bin maint-e2e || exit 1
runs=()
for client in own redis-py node-redis; do
  if [ "$client" = own ]; then dir=target/living-doc; else dir=target/living-doc-$client; fi
  # A run that ends before its report must not leave an older one in its place.
  rm -rf "$dir"
  if [ "$client" = own ]; then
    cargo test --test acceptance
  else
    MAINT_E2E_CLIENT=$client cargo test --test acceptance
  fi
  if [ -f "$dir/report.json" ]; then
    runs+=(--run "$dir")
  else
    echo "no report from the $client pass (see above): it is left out of the matrix" >&2
  fi
done
exec target/debug/maint-e2e matrix "${runs[@]}" "$@"
