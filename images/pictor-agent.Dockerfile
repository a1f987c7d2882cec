# syntax=docker/dockerfile:1
# The member agent's image: the operator image (which holds every binary of the operator crate)
# with pictor-agent as its entrypoint. `make images` builds pictor-operator first.
ARG IMAGE_REGISTRY=ghcr.io/pictor-network
ARG IMAGE_TAG=0.1.0
FROM ${IMAGE_REGISTRY}/pictor-operator:${IMAGE_TAG}
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/pictor-agent"]
