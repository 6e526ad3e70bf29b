# syntax=docker/dockerfile:1
#
# docent images. Two runtime targets, one binary each:
#
#   docker build --target cpu  -t docent:cpu  .
#   docker build --target cuda -t docent:cuda --build-arg CUDA_COMPUTE_CAP=86 .
#
# Neither image holds models. The models directory that scripts/fetch-models.sh
# assembles (the GGUF chat model, the ONNX embedding and reranker models, and
# onnxruntime/libonnxruntime.so.1.31.1, which docent loads at run time with
# dlopen from models.dir) is mounted read-only at /models. The ONNX Runtime
# library therefore comes with the models mount, not with the image; the image
# only has to provide what that library links against (glibc, libstdc++,
# libgcc_s; it is a manylinux_2_28 build).
#
# .cargo/config.toml builds for x86-64-v3 (AVX2 + FMA). For an older CPU:
#   --build-arg RUSTFLAGS_OVERRIDE="-C target-cpu=x86-64"
# See docs/deploy.md.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm
ARG CUDA_VERSION=12.8.1
ARG CUDA_UBUNTU=ubuntu24.04

# The Rust toolchain (rustc, cargo) both builders use.
FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS rust-toolchain

# ---------------------------------------------------------------------------
# CPU build: the default feature set.
FROM rust-toolchain AS builder
ARG RUSTFLAGS_OVERRIDE=""
WORKDIR /src
COPY . .
# The registry and target dir are build caches; the binary is copied out of
# the cached target dir within the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry,id=docent-cargo-registry \
    --mount=type=cache,target=/usr/local/cargo/git,id=docent-cargo-git \
    --mount=type=cache,target=/src/target,id=docent-target-cpu \
    if [ -n "$RUSTFLAGS_OVERRIDE" ]; then export RUSTFLAGS="$RUSTFLAGS_OVERRIDE"; fi \
    && cargo build --release --locked --bin docent \
    && install -D -m 0755 target/release/docent /out/docent

# ---------------------------------------------------------------------------
# CPU runtime.
FROM debian:${DEBIAN_RELEASE}-slim AS cpu
ARG DEBIAN_FRONTEND=noninteractive
# ca-certificates: https to an upstream generation server; curl: the health
# check; tesseract-ocr(-eng) and poppler-utils (pdftoppm): OCR of scanned pages
# and images (without them such pages are reported as needs_ocr); libstdc++6 and
# libgcc-s1: what models/onnxruntime/libonnxruntime.so links against.
# Package versions are not pinned (DL3008): the distribution release fixes them
# and its security updates should reach a rebuilt image.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        ca-certificates curl tesseract-ocr tesseract-ocr-eng poppler-utils libstdc++6 libgcc-s1 \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 docent \
    && useradd --system --uid 10001 --gid docent --home-dir /data --no-create-home --shell /usr/sbin/nologin docent \
    && mkdir -p /data /blobs /models \
    && chown docent:docent /data /blobs
COPY --from=builder /out/docent /usr/local/bin/docent
# Defaults for a container (all are config keys; compose.yaml sets them too).
ENV DOCENT__SERVER__HOST=0.0.0.0 \
    DOCENT__SERVER__PORT=8080 \
    DOCENT__STORAGE__DATA_DIR=/data \
    DOCENT__MODELS__DIR=/models
WORKDIR /data
USER 10001:10001
EXPOSE 8080
# On SIGTERM docent fails readiness, stops the listener, gives in-flight
# requests and ingest jobs server.shutdown_grace_secs, hands back unfinished
# jobs and flushes its indexes: stop with a timeout above that grace
# (compose.yaml: stop_grace_period; docker stop --time).
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=15s --timeout=5s --start-period=180s --retries=3 \
    CMD ["/bin/sh", "-c", "curl -fsS -o /dev/null \"http://127.0.0.1:${DOCENT__SERVER__PORT:-8080}/readyz\""]
ENTRYPOINT ["docent"]
CMD ["serve"]

# ---------------------------------------------------------------------------
# CUDA build: --features cuda (mistral.rs / candle kernels compiled with nvcc).
FROM nvidia/cuda:${CUDA_VERSION}-devel-${CUDA_UBUNTU} AS builder-cuda
ARG DEBIAN_FRONTEND=noninteractive
# There is no GPU during `docker build`, so nvidia-smi cannot report the compute
# capability the kernels are compiled for: set it for the GPUs you deploy on
# (80 = A100, 86 = A10/RTX 30xx, 89 = L4/L40/RTX 40xx, 90 = H100).
ARG CUDA_COMPUTE_CAP=80
ARG RUSTFLAGS_OVERRIDE=""
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential pkg-config ca-certificates \
    && rm -rf /var/lib/apt/lists/*
# The same toolchain as the CPU build, copied from the official Rust image.
COPY --from=rust-toolchain /usr/local/rustup /usr/local/rustup
COPY --from=rust-toolchain /usr/local/cargo /usr/local/cargo
ENV RUSTUP_HOME=/usr/local/rustup \
    CARGO_HOME=/usr/local/cargo \
    PATH=/usr/local/cargo/bin:/usr/local/cuda/bin:$PATH \
    LIBRARY_PATH=/usr/local/cuda/lib64:$LIBRARY_PATH \
    CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP}
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry,id=docent-cargo-registry \
    --mount=type=cache,target=/usr/local/cargo/git,id=docent-cargo-git \
    --mount=type=cache,target=/src/target,id=docent-target-cuda \
    if [ -n "$RUSTFLAGS_OVERRIDE" ]; then export RUSTFLAGS="$RUSTFLAGS_OVERRIDE"; fi \
    && cargo build --release --locked --features cuda --bin docent \
    && install -D -m 0755 target/release/docent /out/docent

# ---------------------------------------------------------------------------
# CUDA runtime: the runtime image of the same CUDA version and Ubuntu release
# (cudart, cuBLAS, cuRAND; the host needs the NVIDIA driver and the NVIDIA
# Container Toolkit). Embeddings and the reranker stay on CPU (ONNX Runtime from
# the models mount); generation runs on the GPU.
FROM nvidia/cuda:${CUDA_VERSION}-runtime-${CUDA_UBUNTU} AS cuda
ARG DEBIAN_FRONTEND=noninteractive
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        ca-certificates curl tesseract-ocr tesseract-ocr-eng poppler-utils libstdc++6 libgcc-s1 \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 docent \
    && useradd --system --uid 10001 --gid docent --home-dir /data --no-create-home --shell /usr/sbin/nologin docent \
    && mkdir -p /data /blobs /models \
    && chown docent:docent /data /blobs
COPY --from=builder-cuda /out/docent /usr/local/bin/docent
ENV DOCENT__SERVER__HOST=0.0.0.0 \
    DOCENT__SERVER__PORT=8080 \
    DOCENT__STORAGE__DATA_DIR=/data \
    DOCENT__MODELS__DIR=/models
WORKDIR /data
USER 10001:10001
EXPOSE 8080
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=15s --timeout=5s --start-period=180s --retries=3 \
    CMD ["/bin/sh", "-c", "curl -fsS -o /dev/null \"http://127.0.0.1:${DOCENT__SERVER__PORT:-8080}/readyz\""]
ENTRYPOINT ["docent"]
CMD ["serve"]
