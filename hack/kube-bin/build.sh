#!/usr/bin/env bash
# Builds the control-plane binaries that tests, the demo and benchmarks run:
# kube-apiserver and kubectl from k8s.io/kubernetes, etcd from
# go.etcd.io/etcd/server/v3, each from its own nested module in this folder.
#
#   hack/kube-bin/build.sh OUT_DIR
#
# A binary is rebuilt only when its stamp (the nested go.mod/go.sum, the
# version and this script) changed, so a second run is a no-op.
set -euo pipefail

out=${1:?usage: build.sh OUT_DIR}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
out=$(cd "$out" && pwd)

KUBE_VERSION=v1.37.2
ETCD_VERSION=v3.7.3

stamp_of() { # module-dir version
  cat "$here/$1/go.mod" "$here/$1/go.sum" "$here/build.sh" | sha256sum | cut -c1-16 | sed "s/^/$2-/"
}

build() { # module-dir package binary version ldflags
  local dir=$1 pkg=$2 bin=$3 version=$4 ldflags=$5
  local want; want=$(stamp_of "$dir" "$version")
  if [[ -x "$out/$bin" && -f "$out/.$bin.stamp" && "$(cat "$out/.$bin.stamp")" == "$want" ]]; then
    echo "kube-bin: $bin $version is up to date"
    return
  fi
  echo "kube-bin: building $bin $version (cold: several minutes)"
  # Build to a temporary name and rename, so an interrupted build never
  # leaves a truncated binary that a later run would take as current.
  (cd "$here/$dir" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "$ldflags" -o "$out/.$bin.tmp" "$pkg")
  mv -f "$out/.$bin.tmp" "$out/$bin"
  echo "$want" > "$out/.$bin.stamp"
}

kube_ldflags() {
  local v=${KUBE_VERSION#v} major minor
  major=${v%%.*}; minor=${v#*.}; minor=${minor%%.*}
  local flags="-s -w"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $p.gitVersion=$KUBE_VERSION -X $p.gitMajor=$major -X $p.gitMinor=$minor"
    flags+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  echo "$flags"
}

build etcd go.etcd.io/etcd/server/v3 etcd "$ETCD_VERSION" "-s -w"
build kubernetes k8s.io/kubernetes/cmd/kube-apiserver kube-apiserver "$KUBE_VERSION" "$(kube_ldflags)"
build kubernetes k8s.io/kubernetes/cmd/kubectl kubectl "$KUBE_VERSION" "$(kube_ldflags)"
