#!/usr/bin/env bash
# The demo behind `make demo`: two local control planes and dr-syncer
# between them. It grows with each stage of the pipeline as it lands; for
# now it starts the clusters, shows them and the CLI, and stops them.
set -euo pipefail
cd "$(dirname "$0")/.."

kubectl=.cache/kube-bin/kubectl
drs=bin/dr-syncer
export DR_SYNCER_SOURCE_KUBECONFIG=$PWD/.cache/clusters/source.kubeconfig
export DR_SYNCER_TARGET_KUBECONFIG=$PWD/.cache/clusters/target.kubeconfig

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

step "Starting a source and a target control plane"
make --no-print-directory clusters-up
trap 'step "Stopping the clusters"; make --no-print-directory clusters-down' EXIT

for side in source target; do
  step "The $side cluster"
  kc=.cache/clusters/$side.kubeconfig
  $kubectl --kubeconfig "$kc" version
  $kubectl --kubeconfig "$kc" get namespaces
done

step "dr-syncer"
$drs version
$drs --help
