# The two commands of the README: `make demo` runs the local network, `make test` runs every test.
# Both set up a fresh machine first (Debian packages, the control plane built from Go modules).

CARGO ?= cargo
GO ?= go

.PHONY: deps demo test lint crds images

deps:
	./scripts/install-deps.sh

demo: deps
	$(CARGO) run -p pictor-e2e --bin pictor-local -- demo

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

test: deps lint
	$(CARGO) test --workspace
	cd charts/pictor/argocd && $(GO) test ./...
	# The demo once, as `make demo` runs it: it exits non-zero when its end is wrong.
	$(CARGO) run -p pictor-e2e --bin pictor-local -- demo

crds:
	$(CARGO) run -p pictor-crds --bin crdgen

# The container images the charts reference, one images/<name>.Dockerfile each, tagged
# $(IMAGE_REGISTRY)/<name>:$(IMAGE_TAG). pictor-agent is built on pictor-operator, so that comes first.
DOCKER ?= docker
IMAGE_REGISTRY ?= ghcr.io/pictor-network
IMAGE_TAG ?= 0.1.0
IMAGES := pictor-operator $(filter-out pictor-operator,$(basename $(notdir $(wildcard images/*.Dockerfile))))

images:
	@set -e; for image in $(IMAGES); do \
		echo "building $(IMAGE_REGISTRY)/$$image:$(IMAGE_TAG)"; \
		DOCKER_BUILDKIT=1 $(DOCKER) build -f images/$$image.Dockerfile \
			--build-arg IMAGE_REGISTRY=$(IMAGE_REGISTRY) --build-arg IMAGE_TAG=$(IMAGE_TAG) \
			-t $(IMAGE_REGISTRY)/$$image:$(IMAGE_TAG) . ; \
	done

# kube-scheduler and pictor-scheduler draining a backlog, against the API server's ceiling (a
# round-robin binder), on fresh local control planes (not part of `make test`: it takes minutes).
# Sizes are flags: make bench-scheduler BENCH_ARGS="--nodes 1000 --pods 4000"; the arrival
# workloads: BENCH_ARGS="--mode arrival".
.PHONY: bench-scheduler
bench-scheduler: deps
	$(CARGO) build --release -p pictor-scheduler -p pictor-e2e --bin pictor-scheduler \
		--bin scheduler-bench --bin round-robin-binder
	./target/release/scheduler-bench $(BENCH_ARGS)

# How long the hub takes to place the 10,000 units of a 100,000-frame RenderJob on 50 members,
# against a plain create loop, and the operator's peak memory (not part of `make test`). The
# operator runs as the release build it is deployed as; BENCH_ARGS=--debug-operator for a debug one.
.PHONY: bench-placement
bench-placement: deps
	$(CARGO) run -p pictor-e2e --bin bench-placement -- $(BENCH_ARGS)

# pictor-billing paying verified units on the Aptos test node, batched against one transaction
# per unit (not part of `make test`).
.PHONY: bench-billing
bench-billing: deps
	$(CARGO) run -p pictor-e2e --bin bench-billing -- $(BENCH_ARGS)

# The hub's verification policy against real Blender renders of a small scene (Cycles, CPU):
# honest renders with different seeds and cheaters' frames compared as the hub compares them,
# then the sample, escalation and cordon simulated over those outcomes (not part of `make test`:
# minutes). e.g. make bench-verification BENCH_ARGS="--runs 5000 --cheat-percent 20"
.PHONY: bench-verification
bench-verification: deps
	$(CARGO) run --release -p pictor-e2e --bin bench-verification -- $(BENCH_ARGS)

# The device plugin's Allocate latency and health propagation, in-process and through a real
# kubelet on a real node where this machine can run one (not part of `make test`).
.PHONY: bench-device-plugin
bench-device-plugin: deps
	$(CARGO) run --release -p pictor-e2e --bin bench-device-plugin -- $(BENCH_ARGS)
