#!/usr/bin/env bash
# Mutation check of the client's maintenance code against the acceptance
# scenarios that exercise it: relaxation and handoff (connection/, relax.rs;
# timeouts TO*, connection handoff CH*), and the OSS Cluster client's
# SMIGRATING/SMIGRATED handling and sharded pub/sub (cluster.rs, pubsub.rs;
# cluster CL*, pub/sub PS*). Each mutant is built and the scenarios run until
# the first failure; a mutant the scenarios do not fail is "missed". Not part
# of CI: the whole takes about two hours on a 2-core machine; pass
# `--re <functions>` (or set MUTANTS_SCOPE=cluster|connection) for a part.
# Needs cargo-mutants (cargo install cargo-mutants --locked). Results go to
# mutants.out/ (outcomes.json, caught.txt, missed.txt, timeout.txt).
#
#   scripts/mutants.sh [extra cargo-mutants arguments...]
set -euo pipefail
cd "$(dirname "$0")/.."
connection_files=(--file src/client/connection/mod.rs --file src/client/connection/push.rs
  --file src/client/connection/handoff.rs --file src/client/relax.rs)
connection_re='Relax::active|act_on|matching_window|open_window|close_window|reevaluate|handoff'
cluster_files=(--file src/client/cluster.rs --file src/client/pubsub.rs)
cluster_re='on_smigrating|on_smigrated|reconcile|subscribe_again|on_unsubscribed|Subscriptions::'
case "${MUTANTS_SCOPE:-all}" in
  connection) files=("${connection_files[@]}"); re="$connection_re"; scenarios='^(TO|CH)' ;;
  cluster) files=("${cluster_files[@]}"); re="$cluster_re"; scenarios='^(CL|PS)' ;;
  all) files=("${connection_files[@]}" "${cluster_files[@]}"); re="$connection_re|$cluster_re"
    scenarios='^(TO|CH|CL|PS)' ;;
  *) echo "MUTANTS_SCOPE is connection, cluster or all, not ${MUTANTS_SCOPE}" >&2; exit 2 ;;
esac
exec cargo mutants \
  "${files[@]}" \
  --re "$re" \
  --baseline skip --timeout 300 --jobs 1 \
  "$@" \
  -- --test acceptance -- --name "$scenarios" --fail-fast
