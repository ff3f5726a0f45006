#!/usr/bin/env bash
# Build the local cluster's binaries from the Go module proxy, once per version.
#
# Output: $NEMOTRON_CACHE/bin/<component>-<version>/<binary> (default cache ~/.cache/nemotron-operator).
# A component directory appears only after its build succeeded (built in a temporary directory,
# then renamed), so an interrupted build is never taken for a finished one.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"
cache=${NEMOTRON_CACHE:-$HOME/.cache/nemotron-operator}
bindir=$cache/bin
mkdir -p "$bindir" "$cache/tmp"
export GOFLAGS=-buildvcs=false GOTOOLCHAIN=local CGO_ENABLED=0

log() { printf '[build %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# install_component NAME VERSION BUILD_FUNCTION: run BUILD_FUNCTION with $out set to a fresh
# temporary directory and publish it atomically as $bindir/NAME-VERSION.
install_component() {
  local name=$1 version=$2 fn=$3 final=$bindir/$1-$2
  if [ -d "$final" ]; then return 0; fi
  local out
  out=$(mktemp -d "$cache/tmp/$name-$version.XXXXXX")
  log "building $name $version"
  local start=$SECONDS
  "$fn" "$out" "$version"
  mv -T "$out" "$final"
  log "built $name $version in $((SECONDS - start))s"
}

build_kubernetes() {
  local out=$1 version=$2 minor staging
  local mod
  mod=$(mktemp -d "$cache/tmp/kube-mod.XXXXXX")
  minor=${version#v1.}; minor=${minor%%.*}
  # The staging modules and godebug line come from kubernetes' own go.mod (never hard-coded).
  local gomod
  gomod=$(cd "$mod" && go mod download -json "k8s.io/kubernetes@$version" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
  staging=$(sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "$gomod")
  {
    echo "module local/kubebuild"
    echo
    sed -n 's/^go \([0-9.]*\)$/go \1/p' "$gomod"
    grep '^godebug' "$gomod" || true
    echo
    echo "require k8s.io/kubernetes $version"
    for m in $staging; do echo "replace $m => $m v0.${version#v1.}"; done
  } >"$mod/go.mod"
  cat >"$mod/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
  (cd "$mod" && go mod tidy -e >/dev/null 2>&1 || true; cd "$mod" && go get "k8s.io/kubernetes@$version" >&2)
  local ldflags="" pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  (cd "$mod" && go build -tags selinux,notest -trimpath -ldflags "-s -w $ldflags" -o "$out/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl)
  rm -rf "$mod"
}

build_etcd() {
  local out=$1 version=$2 mod
  mod=$(mktemp -d "$cache/tmp/etcd-mod.XXXXXX")
  (cd "$mod" && go mod init local/etcdbuild >/dev/null 2>&1 && go get "go.etcd.io/etcd/server/v3@$version" >&2 \
    && go build -trimpath -ldflags "-s -w" -o "$out/etcd" go.etcd.io/etcd/server/v3)
  rm -rf "$mod"
}

build_kwok() {
  local out=$1 version=$2 src
  GOBIN=$out go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$version"
  # kwok runs only the Stages it is given: keep its own (node, pod, volume) beside the binary.
  src=$(go env GOMODCACHE)/sigs.k8s.io/kwok@$version/kustomize/stage
  cp -r "$src" "$out/stages"
  chmod -R u+w "$out/stages"
}

# kwok's CRDs of the debugging resources the cluster turns on (`Logs`: a pod's log served from a
# file a test writes), from the same module as the binary.
build_kwok_crds() {
  local out=$1 version=$2 src
  src=$(cd "$cache/tmp" && go mod download -json "sigs.k8s.io/kwok@$version" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  cp "$src/kustomize/crd/bases/kwok.x-k8s.io_logs.yaml" "$out/"
}

build_helm() {
  local out=$1 version=$2 minor=${KUBE_VERSION#v1.}
  minor=${minor%%.*}
  GOBIN=$out go install -trimpath -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$version \
    -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$minor" \
    "helm.sh/helm/v3/cmd/helm@$version"
}

# Sourced (as hack/kstatus/build.sh does, for install_component): define, build nothing.
if [ "${BASH_SOURCE[0]}" != "$0" ]; then return 0; fi

install_component etcd "$ETCD_VERSION" build_etcd
install_component kwok "$KWOK_VERSION" build_kwok
install_component kwok-crds "$KWOK_VERSION" build_kwok_crds
install_component helm "$HELM_VERSION" build_helm
install_component kubernetes "$KUBE_VERSION" build_kubernetes
rm -rf "$cache/tmp"
log "all components ready in $bindir"
