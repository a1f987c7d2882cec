# syntax=docker/dockerfile:1
# The render worker: pictor-render-worker (the command of every render and verification pod)
# with Blender from Debian. Built from the repository root.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p pictor-render-worker --bin pictor-render-worker \
    && mkdir -p /out \
    && cp target/release/pictor-render-worker /out/

FROM debian:bookworm-slim
# The one package list, shared with the image e2e/real-node/build-images.sh builds for real nodes.
COPY images/render-worker.packages /tmp/render-worker.packages
RUN apt-get update \
    && apt-get install -y --no-install-recommends $(grep -v '^\s*#' /tmp/render-worker.packages) \
    && rm -rf /var/lib/apt/lists/* /tmp/render-worker.packages \
    && useradd --uid 65532 --user-group --create-home --shell /usr/sbin/nologin pictor
COPY --from=build /out/pictor-render-worker /usr/local/bin/
# Blender writes its user configuration under HOME.
ENV HOME=/home/pictor PICTOR_BLENDER=/usr/bin/blender
USER 65532:65532
WORKDIR /home/pictor
ENTRYPOINT ["/usr/local/bin/pictor-render-worker"]
