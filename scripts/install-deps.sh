#!/usr/bin/env bash
# Installs what building and testing Pictor needs on a fresh Debian machine, skipping what is
# already there: Debian packages for the gRPC code generator and the GPU libraries, then the
# local control plane (built from Go modules into a cache outside the repository).
set -euo pipefail

packages=(protobuf-compiler libclang-dev librocm-smi-dev openssl curl ca-certificates)
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

command -v go >/dev/null || { echo "[deps] Go is required to build the control plane (go 1.26 or newer)" >&2; exit 1; }
command -v cargo >/dev/null || { echo "[deps] Rust is required (rustup, Rust 1.95 or newer)" >&2; exit 1; }

"$(dirname "$0")/../e2e/control-plane/build.sh" >/dev/null
