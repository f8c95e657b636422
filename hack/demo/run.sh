#!/usr/bin/env bash
# The demo behind `make demo`: two local control planes and dr-syncer
# between them. It grows with each stage of the pipeline as it lands.
set -euo pipefail
cd "$(dirname "$0")/../.."

kubectl=$PWD/.cache/kube-bin/kubectl
drs=$PWD/bin/dr-syncer
demo=$PWD/.cache/demo
repo=$demo/repo
export DR_SYNCER_SOURCE_KUBECONFIG=$PWD/.cache/clusters/source.kubeconfig
export DR_SYNCER_TARGET_KUBECONFIG=$PWD/.cache/clusters/target.kubeconfig
# The age identity that init generates goes to ~/.config/dr-syncer/keys by
# default; the demo keeps its own under .cache/demo instead.
export XDG_CONFIG_HOME=$demo/config

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
show() { printf '\033[2m$ %s\033[0m\n' "$*"; "$@"; }
src() { "$kubectl" --kubeconfig "$DR_SYNCER_SOURCE_KUBECONFIG" "$@"; }

# A free TCP port on loopback for the agent.
free_port() {
  local p
  for p in $(shuf -i 20000-40000 -n 50); do
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
  done
  echo "no free port" >&2; return 1
}
# git commits by the demo's "person" need an identity on a fresh machine.
pgit() { git -C "$repo" -c user.name="Demo Person" -c user.email=person@example.invalid "$@"; }

rm -rf "$demo"
agent_pid=
cleanup() {
  [ -n "$agent_pid" ] && kill "$agent_pid" 2>/dev/null || true
  step "Stopping the clusters"
  make --no-print-directory clusters-down
}
step "Starting a source and a target control plane"
make --no-print-directory clusters-up
trap cleanup EXIT

step "A sample application in the source cluster"
src apply --server-side -f hack/demo/crd.yaml
src wait --for condition=Established crd/storefronts.shop.example.com >/dev/null
src apply --server-side -f hack/demo/app.yaml
src get all,configmaps,secrets,pvc,storefronts -n shop

step "What a kubelet would have done: node-1 runs a pod of web that mounts PVC uploads"
# These control planes run no scheduler, kubelet or volume binder: the demo
# plays them, with the statuses they would set and the volume's directory
# where the kubelet would mount it.
src apply --server-side -f hack/demo/node.yaml >/dev/null
src patch node node-1 --subresource=status --type merge -p '{"status":{"addresses":[{"type":"InternalIP","address":"127.0.0.1"}]}}' >/dev/null
src patch pvc uploads -n shop --subresource=status --type merge -p '{"status":{"phase":"Bound"}}' >/dev/null
src patch pod web-5d8f7c9b4-x2x7q -n shop --subresource=status --type merge -p '{"status":{"phase":"Running"}}' >/dev/null
uid=$(src get pod web-5d8f7c9b4-x2x7q -n shop -o jsonpath='{.metadata.uid}')
kubelet=$demo/node-1/kubelet
vol=$kubelet/pods/$uid/volumes/kubernetes.io~local-volume/uploads-pv
mkdir -p "$vol/photos"
head -c 20000000 /dev/urandom >"$vol/photos/catalog.bin"
for i in $(seq 1 200); do echo "order $i: 2 x espresso" >"$vol/order-$i.txt"; done
ln -s photos/catalog.bin "$vol/latest"
src get node,pv -o wide
src get pvc,pods -n shop
echo "the volume's data on node-1: $vol ($(du -sh "$vol" | cut -f1))"

step "The agent on node-1: SSH, rsync's sender only, read-only, volume directories only"
show "$drs" agent keygen --dir "$demo/agent-keys"
port=$(free_port)
"$drs" agent --listen "127.0.0.1:$port" --host-key "$demo/agent-keys/ssh_host_ed25519_key" \
  --user-ca "$demo/agent-keys/user_ca_ed25519_key.pub" --kubelet-dir "$kubelet" 2>"$demo/agent.log" &
agent_pid=$!
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
echo "agent listening on 127.0.0.1:$port (its log: $demo/agent.log)"
# The PVC stage pulls into local directories that stand for the target's
# claims (--volumes-local-dir): the same rsync and ssh commands as the pull
# Jobs that run in a real target cluster.
vflags=(--volumes-local-dir "$demo/target-volumes" --agent-keys "$demo/agent-keys" --kubelet-dir "$kubelet")

step "dr-syncer init: a DR repository for prod -> dr, namespace shop -> shop-dr"
show "$drs" init --repo "$repo" --source prod --target dr --namespace-map shop=shop-dr --storage-class-map fast=standard
sed -n '/^spec:/,/^  resources:/p' "$repo/dr-syncer.yaml" | head -30
# The storage class the mapping maps "fast" to must exist in the target:
# apply refuses a claim of a mapped class that the target lacks.
printf 'apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: standard}\nprovisioner: example.com/dr\n' |
  "$kubectl" --kubeconfig "$DR_SYNCER_TARGET_KUBECONFIG" apply -f - >/dev/null
# The agent's port, committed to the mapping as a person would.
printf '  volumes:\n    agent: {port: %s}\n' "$port" >>"$repo/dr-syncer.yaml"
pgit commit -qam "volumes: the demo agent's port"

step "dr-syncer snapshot: the source, recorded as one commit"
show "$drs" snapshot --repo "$repo"
show git -C "$repo" log --format='%h %s' 
show git -C "$repo" show --stat --format='%B' HEAD

step "What a reviewer reads: one cleaned object per file"
show cat "$repo/snapshots/prod/shop/apps.Deployment/web.yaml"
step "Secrets are sealed with age before anything is written"
show cat "$repo/snapshots/prod/shop/Secret/db.yaml"
if git -C "$repo" cat-file --batch-all-objects --batch | grep -q demo-password-do-not-leak; then
  echo "LEAK: the Secret's plaintext is in the repository" >&2; exit 1
fi
echo "(no git object of the repository holds the Secret's plaintext)"

step "Nothing changed: no commit"
show "$drs" snapshot --repo "$repo"

step "A change in the source: one commit, one file"
src patch configmap settings -n shop --type merge -p '{"data":{"greeting":"Welcome back"}}' >/dev/null
show "$drs" snapshot --repo "$repo"
show git -C "$repo" show --format='%s' HEAD

tgt() { "$kubectl" --kubeconfig "$DR_SYNCER_TARGET_KUBECONFIG" "$@"; }

step "dr-syncer sync: snapshot + apply to the target (shop -> shop-dr, standby) + PVC data"
show "$drs" sync --repo "$repo" "${vflags[@]}"
show ls -l "$demo/target-volumes/shop-dr/uploads" | head -5
diff -r --no-dereference "$vol" "$demo/target-volumes/shop-dr/uploads" && echo "(the target's copy of uploads is identical to the source volume)"
show "$drs" render --repo "$repo" | grep -E '^(kind|  name|  namespace|  replicas):|original-replicas' | head -30
tgt get all,configmaps,secrets,pvc,storefronts -n shop-dr
printf 'Secret db in the target: password=%s\n' "$(tgt get secret db -n shop-dr -o jsonpath='{.data.password}' | base64 -d)"
show "$drs" status --repo "$repo"

step "1% of the volume's data changes in the source: only the change moves"
dd if=/dev/urandom of="$vol/photos/catalog.bin" bs=200000 count=1 seek=10 conv=notrunc status=none
show "$drs" sync --repo "$repo" "${vflags[@]}"
cmp "$vol/photos/catalog.bin" "$demo/target-volumes/shop-dr/uploads/photos/catalog.bin" && echo "(catalog.bin identical again)"

step "Drift in the target: diff shows it (exit 1), apply repairs it"
tgt patch configmap settings -n shop-dr --type merge -p '{"data":{"greeting":"edited by hand"}}' >/dev/null
"$drs" diff --repo "$repo" || echo "(diff exit code $?)"
show "$drs" apply --repo "$repo"

step "A bad change replicated: roll it back"
src delete configmap settings -n shop >/dev/null
show "$drs" sync --repo "$repo" "${vflags[@]}"
bad=$(git -C "$repo" rev-parse HEAD)
show "$drs" rollback --repo "$repo" "$bad"
tgt get configmap settings -n shop-dr -o jsonpath='{.data.greeting}{"\n"}'
show git -C "$repo" log --format='%h %s' -5

step "Failover: the DR copy takes over"
show "$drs" failover --repo "$repo"
tgt get deployment web -n shop-dr -o jsonpath='replicas: {.spec.replicas}{"\n"}'
show "$drs" status --repo "$repo"

step "What the agent refused or served (its log)"
grep -c '"msg":"' "$demo/agent.log" | xargs echo "log lines:"
tail -n 3 "$demo/agent.log"
