# syntax=docker/dockerfile:1
#
# icnr-upscale: the HTTP service in a slim, non-root image.
#
#   docker build -t icnr-upscale .
#   docker run --rm -p 8080:8080 icnr-upscale
#
# Stages: chef (toolchain + cargo-chef) -> planner (dependency recipe) -> builder (cook the dependencies, a layer
# that stays cached until Cargo.toml/Cargo.lock change, then build the crate) -> runtime (the binary alone).
# .ci/run starts the release binary with this file's ENV and CMD, so keep those two the only way it is launched.

FROM rust:1.95-slim-bookworm AS chef
# The version is pinned so that the cook layer is reproducible.
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /app

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
# The image ships no debugger, so drop the debug info that Cargo.toml's release profile keeps for profiling.
ENV CARGO_PROFILE_RELEASE_DEBUG=0 \
    CARGO_PROFILE_RELEASE_STRIP=symbols
COPY --from=planner /app/recipe.json recipe.json
RUN cargo chef cook --release --locked --bin icnr-upscale --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked --bin icnr-upscale

# Debian slim already has what the binary links against (glibc, libgcc_s); no package is installed.
FROM debian:bookworm-slim AS runtime
COPY --from=builder /app/target/release/icnr-upscale /usr/local/bin/icnr-upscale
# A numeric uid/gid that exists nowhere else, so Kubernetes' runAsNonRoot can verify it (deploy/kubernetes.yaml).
USER 10001:10001
ENV ICNR_UPSCALE_BIND=0.0.0.0:8080
EXPOSE 8080
# The binary probes GET /healthz on ICNR_UPSCALE_BIND itself: the image needs no curl.
HEALTHCHECK --interval=30s --timeout=5s --start-period=5s --retries=3 CMD ["/usr/local/bin/icnr-upscale", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/icnr-upscale"]
CMD ["serve"]
