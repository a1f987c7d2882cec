# syntax=docker/dockerfile:1
# The GPU nodes' image: the NVIDIA (NVML) and AMD (ROCm-SMI) device plugins and the node
# labeller, one binary. NVML is loaded at run time from the libnvidia-ml.so.1 the NVIDIA
# container runtime mounts; ROCm-SMI is linked, so the runtime carries Debian's librocm-smi64-1.
# The image runs as a non-root user; the chart runs the plugin DaemonSets as root, because the
# kubelet's socket folder on the node belongs to root.

FROM rust:1.95-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends protobuf-compiler libclang-dev librocm-smi-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p pictor-device-plugins --bin pictor-device-plugins \
    && mkdir -p /out \
    && cp target/release/pictor-device-plugins /out/

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates librocm-smi64-1 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 65532 --user-group --no-create-home --shell /usr/sbin/nologin pictor
COPY --from=build /out/pictor-device-plugins /usr/local/bin/
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/pictor-device-plugins"]
