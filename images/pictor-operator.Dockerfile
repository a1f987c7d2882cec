# syntax=docker/dockerfile:1
# The hub's image: the binaries of the operator, agent, CLI and billing crates — pictor-operator (the default
# entrypoint), pictor-agent, pictor-billing and the pictor CLI. Built from the repository root:
#   docker build -f images/pictor-operator.Dockerfile -t ghcr.io/pictor-network/pictor-operator:0.1.0 .

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p pictor-operator -p pictor-agent -p pictor-cli -p pictor-billing \
        --bin pictor-operator --bin pictor-agent --bin pictor-billing --bin pictor \
    && mkdir -p /out \
    && cp target/release/pictor-operator target/release/pictor-agent target/release/pictor-billing target/release/pictor /out/

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 65532 --user-group --no-create-home --shell /usr/sbin/nologin pictor
COPY --from=build /out/pictor-operator /out/pictor-agent /out/pictor-billing /out/pictor /usr/local/bin/
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/pictor-operator"]
