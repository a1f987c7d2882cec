#!/usr/bin/env bash
# Builds the local control plane the e2e tests and the demo run: etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kubectl, the kubelet (for real nodes), kwok, helm and
# kubo's ipfs (the IPFS nodes of the local network), from their Go modules at the
# versions pinned below, into a cache outside the repository. A binary whose version already
# matches is kept, so a second run takes seconds.
#
# Why wrapper modules: k8s.io/kubernetes requires its staging modules at v0.0.0 with
# `replace => ./staging/...`, which `go install pkg@version` refuses. A small module of ours
# requires k8s.io/kubernetes and replaces every staging module with its published v0.N.P. The
# staging list is read from the go.mod the proxy serves for the release, not hard-coded.
set -euo pipefail

KUBE_VERSION=${KUBE_VERSION:-v1.37.2}
ETCD_VERSION=${ETCD_VERSION:-v3.7.3}
KWOK_VERSION=${KWOK_VERSION:-v0.8.0}
HELM_VERSION=${HELM_VERSION:-v3.22.0}
KUBO_VERSION=${KUBO_VERSION:-v0.42.0}

CACHE=${PICTOR_CACHE:-$HOME/.cache/pictor}
BIN=${PICTOR_CONTROL_PLANE_BIN:-$CACHE/control-plane/$KUBE_VERSION/bin}
WORK=$CACHE/control-plane/$KUBE_VERSION/modules
mkdir -p "$BIN" "$WORK"

export GOWORK=off CGO_ENABLED=0 GOFLAGS=-buildvcs=false
GOPROXY_URL=${GOPROXY:-https://proxy.golang.org}
GOPROXY_URL=${GOPROXY_URL%%,*}

log() { printf '[control-plane] %s\n' "$*" >&2; }
started=$(date +%s)
built_any=0

# has_version BINARY ARGS... PATTERN: true when BINARY exists and its version output matches.
has_version() {
  local bin=$1 pattern=$2
  shift 2
  [ -x "$BIN/$bin" ] && "$BIN/$bin" "$@" 2>/dev/null | grep -q -- "$pattern"
}

build_kubernetes() {
  local minor=${KUBE_VERSION#v1.}
  minor=${minor%%.*}
  local staging_version=v0.${KUBE_VERSION#v1.}
  local dir=$WORK/kubernetes
  mkdir -p "$dir"
  log "deriving the staging modules of k8s.io/kubernetes $KUBE_VERSION"
  local upstream_mod
  upstream_mod=$(curl -fsSL "$GOPROXY_URL/k8s.io/kubernetes/@v/$KUBE_VERSION.mod")
  local staging
  staging=$(printf '%s\n' "$upstream_mod" | awk '/=> \.\/staging/ {print $1}' | sort -u)
  [ -n "$staging" ] || { log "no staging replaces found in k8s.io/kubernetes $KUBE_VERSION go.mod"; exit 1; }
  local go_line godebug_line
  go_line=$(printf '%s\n' "$upstream_mod" | grep -m1 '^go ')
  godebug_line=$(printf '%s\n' "$upstream_mod" | grep -m1 '^godebug ' || true)
  {
    echo "module pictor.network/control-plane/kubernetes"
    echo
    echo "$go_line"
    echo
    [ -n "$godebug_line" ] && echo "$godebug_line" && echo
    echo "require k8s.io/kubernetes $KUBE_VERSION"
    echo
    echo "replace ("
    for m in $staging; do echo "	$m => $m $staging_version"; done
    echo ")"
  } >"$dir/go.mod"
  cat >"$dir/tools.go" <<'GO'
//go:build tools

package tools
GO
  (
    cd "$dir"
    log "resolving modules (first run downloads about 1 GB)"
    go get k8s.io/kubernetes@"$KUBE_VERSION" >/dev/null
    for cmd in kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet; do
      go get -tool k8s.io/kubernetes/cmd/$cmd >/dev/null
    done
    local ldflags="-s -w"
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      ldflags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
    done
    log "building kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kubelet $KUBE_VERSION"
    go build -trimpath -tags selinux,notest,grpcnotrace -ldflags "$ldflags" -o "$BIN/" \
      k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
      k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl k8s.io/kubernetes/cmd/kubelet
  )
}

# build_tool NAME MODULE VERSION PACKAGE LDFLAGS: builds one command of a module that needs no
# replaces of ours, in a wrapper module of its own so its versions stay its own.
build_tool() {
  local name=$1 module=$2 version=$3 package=$4 ldflags=$5
  local dir=$WORK/$name
  mkdir -p "$dir"
  (
    cd "$dir"
    [ -f go.mod ] || go mod init "pictor.network/control-plane/$name" >/dev/null 2>&1
    go get -tool "$package@$version" >/dev/null
    log "building $name $version ($module)"
    go build -trimpath -ldflags "-s -w $ldflags" -o "$BIN/$name" "$package"
  )
}

build_etcd() {
  # etcd's server module has a main package, but relative replaces: hence the wrapper.
  build_tool etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION" go.etcd.io/etcd/server/v3 ""
}

build_kwok() {
  build_tool kwok sigs.k8s.io/kwok "$KWOK_VERSION" sigs.k8s.io/kwok/cmd/kwok \
    "-X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION"
}

build_helm() {
  build_tool helm helm.sh/helm/v3 "$HELM_VERSION" helm.sh/helm/v3/cmd/helm \
    "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
}

build_kubo() {
  # kubo's go.mod excludes versions of its dependencies, which only a main module may do, so it
  # is built as the main module from a writable copy of its source. (v0.43 replaces go-libp2p
  # with a fork the module proxy does not serve.)
  local dir=$WORK/kubo-$KUBO_VERSION src
  src=$(go mod download -json "github.com/ipfs/kubo@$KUBO_VERSION" | grep '"Dir"' | cut -d'"' -f4)
  [ -d "$src" ] || { log "github.com/ipfs/kubo@$KUBO_VERSION could not be downloaded"; exit 1; }
  rm -rf "$dir"
  cp -r "$src" "$dir"
  chmod -R u+w "$dir"
  log "building ipfs (kubo) $KUBO_VERSION"
  (cd "$dir" && go build -trimpath -ldflags "-s -w" -o "$BIN/ipfs" ./cmd/ipfs)
  rm -rf "$dir"
}

if has_version kube-apiserver "$KUBE_VERSION" --version &&
  has_version kube-controller-manager "$KUBE_VERSION" --version &&
  has_version kube-scheduler "$KUBE_VERSION" --version &&
  has_version kubectl "$KUBE_VERSION" version --client &&
  has_version kubelet "$KUBE_VERSION" --version; then
  log "kubernetes $KUBE_VERSION: cached"
else
  build_kubernetes
  built_any=1
fi
if has_version etcd "${ETCD_VERSION#v}" --version; then log "etcd $ETCD_VERSION: cached"; else build_etcd; built_any=1; fi
if [ -x "$BIN/kwok" ] && [ -f "$BIN/.kwok-$KWOK_VERSION" ]; then log "kwok $KWOK_VERSION: cached"; else build_kwok && touch "$BIN/.kwok-$KWOK_VERSION"; built_any=1; fi
if has_version helm "$HELM_VERSION" version --short; then log "helm $HELM_VERSION: cached"; else build_helm; built_any=1; fi
if has_version ipfs "ipfs version ${KUBO_VERSION#v}" version; then log "kubo $KUBO_VERSION: cached"; else build_kubo; built_any=1; fi

elapsed=$(($(date +%s) - started))
if [ "$built_any" = 1 ]; then
  log "built in ${elapsed}s into $BIN"
else
  log "all binaries cached in $BIN (${elapsed}s)"
fi
echo "$BIN"
