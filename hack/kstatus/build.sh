#!/usr/bin/env bash
# Build this Go module (the kstatus library's verdict on objects) once, with hack/cluster's
# install_component, and print the binary's path.
#
# Cached as $NEMOTRON_CACHE/bin/kstatus-<cli-utils version>-<digest of this module's sources>: a
# new cli-utils version in go.mod, or an edit of main.go, builds anew.
set -euo pipefail

module=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../cluster/build.sh
source "$module/../cluster/build.sh"

build_kstatus() {
  local out=$1
  (cd "$module" && go build -trimpath -ldflags "-s -w" -o "$out/kstatus" .)
}

version=$(sed -n 's#^[[:space:]]*sigs.k8s.io/cli-utils \(v[^[:space:]]*\).*#\1#p' "$module/go.mod")
digest=$(cat "$module/main.go" "$module/go.mod" "$module/go.sum" | sha256sum | cut -c1-12)
install_component kstatus "$version-$digest" build_kstatus
echo "$bindir/kstatus-$version-$digest/kstatus"
