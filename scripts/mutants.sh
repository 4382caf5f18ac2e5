#!/usr/bin/env bash
# Mutation check of the client's relaxation and handoff code against the
# acceptance scenarios that exercise it (timeouts TO*, connection handoff CH*).
# Each mutant is built and the scenarios run until the first failure; a
# mutant the scenarios do not fail is "missed". Takes about 40 minutes on a
# 2-core machine; not part of CI. Needs cargo-mutants (cargo install
# cargo-mutants --locked). Results go to mutants.out/ (outcomes.json,
# caught.txt, missed.txt, timeout.txt).
#
#   scripts/mutants.sh [extra cargo-mutants arguments...]
set -euo pipefail
cd "$(dirname "$0")/.."
functions='Relax::active|act_on|matching_window|open_window|close_window|reevaluate|handoff'
exec cargo mutants \
  --file src/client/connection.rs \
  --re "$functions" \
  --baseline skip --timeout 240 --jobs 1 \
  "$@" \
  -- --test acceptance -- --name '^(TO|CH)' --fail-fast
