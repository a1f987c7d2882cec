#!/usr/bin/env bash
# Installs what building and testing Pictor needs on a fresh Debian machine, skipping what is
# already there: Debian packages for the gRPC code generator, the GPU libraries and Blender (the
# render worker's tests render with it), containerd, runc, the CNI plugins and mmdebstrap (real
# nodes: e2e/src/real_node), the S3-compatible test server moto, then the local control plane
# and the kubelet (built from Go modules into a cache outside the repository).
set -euo pipefail

packages=(protobuf-compiler libclang-dev librocm-smi-dev openssl curl ca-certificates blender python3-pip
  containerd runc containernetworking-plugins mmdebstrap iptables util-linux iproute2)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "[deps] installing Debian packages: ${missing[*]}" >&2
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# moto in server mode: the real S3-compatible server the render worker's storage tests talk to.
# Debian's own Python refuses pip installs outside a venv (PEP 668); this is a test tool, so allow it.
if ! python3 -c 'import moto.server' 2>/dev/null; then
  echo "[deps] installing moto[server] (S3-compatible test server)" >&2
  PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install --quiet 'moto[server]==5.2.5'
fi

command -v go >/dev/null || { echo "[deps] Go is required to build the control plane (go 1.26 or newer)" >&2; exit 1; }
command -v cargo >/dev/null || { echo "[deps] Rust is required (rustup, Rust 1.95 or newer)" >&2; exit 1; }

"$(dirname "$0")/../e2e/control-plane/build.sh" >/dev/null
