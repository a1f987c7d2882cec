#!/usr/bin/env bash
# Builds the two images a real node runs, as OCI archives that `ctr images import` loads with no
# registry: the pod sandbox's pause image (pause/main.go) and the render worker (Debian with the
# packages of images/render-worker.packages, and the workspace's pictor-render-worker).
#
#   build-images.sh WORKER_BINARY PAUSE_IMAGE WORKER_IMAGE
#
# The image names are what the nodes' containerd will call them (e2e/src/real_node names them).
# Prints two lines, `pause=ARCHIVE` and `render-worker=ARCHIVE`. Everything is cached under
# $PICTOR_CACHE/images: the Debian root filesystem by its package list (building it takes a few
# minutes and about 1 GB), each archive by what went into it, so a second run takes seconds.
set -euo pipefail

worker_binary=$1
PAUSE_IMAGE=$2
WORKER_IMAGE=$3
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
CACHE=${PICTOR_CACHE:-$HOME/.cache/pictor}/images
SUITE=${PICTOR_IMAGE_SUITE:-bookworm}
MIRROR=${PICTOR_IMAGE_MIRROR:-http://deb.debian.org/debian}
WORKER_UID=65532
mkdir -p "$CACHE"
export GOWORK=off CGO_ENABLED=0 GOFLAGS=-buildvcs=false

log() { printf '[images] %s\n' "$*" >&2; }
sha() { sha256sum "$1" | cut -d' ' -f1; }
json_sha() { printf '%s' "$1" | sha256sum | cut -d' ' -f1; }

# oci_archive OUT NAME CONFIG_JSON LAYER...: an OCI image layout holding uncompressed layers,
# tarred, with the name containerd gives the image on import.
oci_archive() {
  local out=$1 name=$2 config=$3
  shift 3
  local dir
  dir=$(mktemp -d "$CACHE/.oci.XXXXXX")
  mkdir -p "$dir/blobs/sha256"
  local layers="" diff_ids="" layer digest size
  for layer in "$@"; do
    digest=$(cat "$layer.sha256")
    size=$(stat -c %s "$layer")
    ln "$layer" "$dir/blobs/sha256/$digest" 2>/dev/null || cp "$layer" "$dir/blobs/sha256/$digest"
    layers+="${layers:+,}{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\",\"digest\":\"sha256:$digest\",\"size\":$size}"
    diff_ids+="${diff_ids:+,}\"sha256:$digest\""
  done
  config=${config/@DIFF_IDS@/$diff_ids}
  local config_digest manifest manifest_digest
  config_digest=$(json_sha "$config")
  printf '%s' "$config" >"$dir/blobs/sha256/$config_digest"
  manifest="{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"sha256:$config_digest\",\"size\":${#config}},\"layers\":[$layers]}"
  manifest_digest=$(json_sha "$manifest")
  printf '%s' "$manifest" >"$dir/blobs/sha256/$manifest_digest"
  printf '{"imageLayoutVersion":"1.0.0"}' >"$dir/oci-layout"
  printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"platform":{"architecture":"amd64","os":"linux"},"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"}}]}' \
    "$manifest_digest" "${#manifest}" "$name" "${name##*:}" >"$dir/index.json"
  tar -C "$dir" -cf "$out.partial" oci-layout index.json blobs
  mv "$out.partial" "$out"
  rm -rf "$dir"
}

# layer_from DIR OUT: DIR tarred as one layer (numeric owners kept), with its digest beside it.
layer_from() {
  tar -C "$1" --numeric-owner --sort=name --mtime=@0 -cf "$2" .
  sha "$2" >"$2.sha256"
}

started=$(date +%s)

# The pause image: one static Go binary.
pause_key=$({ cat "$here/pause/main.go" "$here/pause/go.mod"; echo "$PAUSE_IMAGE"; } | sha256sum | cut -c1-16)
pause_archive=$CACHE/pause-$pause_key.oci.tar
if [ ! -f "$pause_archive" ]; then
  log "building the pause image"
  work=$(mktemp -d "$CACHE/.pause.XXXXXX")
  mkdir -p "$work/rootfs"
  (cd "$here/pause" && go build -trimpath -ldflags "-s -w" -o "$work/rootfs/pause" .)
  layer_from "$work/rootfs" "$work/layer.tar"
  oci_archive "$pause_archive" "$PAUSE_IMAGE" \
    '{"architecture":"amd64","os":"linux","config":{"Entrypoint":["/pause"],"User":"65535:65535"},"rootfs":{"type":"layers","diff_ids":[@DIFF_IDS@]}}' \
    "$work/layer.tar"
  rm -rf "$work"
fi

# The render worker's Debian layer, from the one package list the Dockerfile also installs.
packages=$(grep -v '^\s*#' "$repo/images/render-worker.packages" | xargs | tr ' ' ',')
base_key=$(printf '%s %s %s' "$SUITE" "$MIRROR" "$packages" | sha256sum | cut -c1-16)
base=$CACHE/render-worker-base-$base_key.tar
if [ ! -f "$base.sha256" ]; then
  log "building the Debian $SUITE root filesystem with $packages (a few minutes, about 1 GB)"
  command -v mmdebstrap >/dev/null || { log "mmdebstrap is missing: run scripts/install-deps.sh"; exit 1; }
  mmdebstrap --quiet --variant=essential --format=tar --include="$packages" \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    "$SUITE" "$base.partial" "$MIRROR" >&2
  mv "$base.partial" "$base"
  sha "$base" >"$base.sha256"
fi

# The workspace's worker, on top: a layer of its own, so a new build re-tars only that.
worker_key=$({ sha "$worker_binary"; echo "$WORKER_IMAGE"; } | sha256sum | cut -c1-16)
worker_archive=$CACHE/render-worker-$base_key-$worker_key.oci.tar
if [ ! -f "$worker_archive" ]; then
  log "building the render-worker image around $worker_binary"
  work=$(mktemp -d "$CACHE/.worker.XXXXXX")
  mkdir -p "$work/rootfs/usr/local/bin" "$work/rootfs/home/pictor"
  install -m 0755 "$worker_binary" "$work/rootfs/usr/local/bin/pictor-render-worker"
  chown "$WORKER_UID:$WORKER_UID" "$work/rootfs/home/pictor"
  layer_from "$work/rootfs" "$work/layer.tar"
  oci_archive "$worker_archive" "$WORKER_IMAGE" \
    "{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{\"Entrypoint\":[\"/usr/local/bin/pictor-render-worker\"],\"Env\":[\"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\",\"HOME=/home/pictor\",\"PICTOR_BLENDER=/usr/bin/blender\"],\"User\":\"$WORKER_UID:$WORKER_UID\",\"WorkingDir\":\"/home/pictor\"},\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[@DIFF_IDS@]}}" \
    "$base" "$work/layer.tar"
  rm -rf "$work"
  # Older builds of the worker are of no further use.
  find "$CACHE" -maxdepth 1 -name "render-worker-$base_key-*.oci.tar" ! -name "$(basename "$worker_archive")" -delete
fi

log "ready in $(($(date +%s) - started))s"
echo "pause=$pause_archive"
echo "render-worker=$worker_archive"
