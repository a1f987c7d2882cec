# syntax=docker/dockerfile:1
# pictor-scheduler, the members' GPU- and gang-aware scheduler. Built from the repository root.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p pictor-scheduler --bin pictor-scheduler \
    && mkdir -p /out \
    && cp target/release/pictor-scheduler /out/

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 65532 --user-group --no-create-home --shell /usr/sbin/nologin pictor
COPY --from=build /out/pictor-scheduler /usr/local/bin/
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/pictor-scheduler"]
