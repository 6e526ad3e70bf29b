#!/usr/bin/env bash
# Side-by-side benchmark of docent against the engines a user would pick
# instead (issue #8): llama.cpp (llama-cpp-python), fastembed for Python and
# bm25s, on the same model files, data and thread count, in one run; plus
# docent's own figures against the issue's targets in the same report:
# hybrid search latency at 100k chunks (`docent bench search`), end-to-end
# ingestion of the PDF corpus (`docent ingest --json`) and, when the binary
# has it, `docent bench load`.
#
#   scripts/bench-peers.sh setup   # the peers, pinned, in a venv outside the repo
#   scripts/bench-peers.sh run     # setup (if needed), then scripts/bench/compare.py
#                                  # -> docs/results/peers.md (+ peers.json), with
#                                  # every command line as run in its Commands section
#   scripts/bench-peers.sh run --only search,ingest --rounds 1   # some areas only
#
# Everything comes from PyPI (llama-cpp-python is a source package: it builds
# llama.cpp with cmake here) and Debian (cmake, ninja, a C++ compiler).
# Environment:
#   BENCH_VENV   the venv (default /var/tmp/docent-bench-venv)
#   LLAMA_CPU    native (default: -DGGML_NATIVE=ON, i.e. -march=native, the
#                llama.cpp default for a local build: AVX2, AVX-512 and AMX
#                where the CPU has them), avx512 (AVX2, AVX-512 with VNNI, VBMI
#                and BF16, no AMX: on a Xeon VM here, 0.3.36's native build
#                crashed with SIGSEGV in ggml_backend_amx_mul_mat on the first
#                prompt) or avx2 (portable AVX2+FMA+F16C only); give each its
#                own BENCH_VENV
#   DOCENT_BIN   the docent binary (default $CARGO_TARGET_DIR/debug/docent)
#   PYTHON       the interpreter the venv is made from (default python3)
# Extra arguments after `run` go to compare.py (see --help).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${BENCH_VENV:-/var/tmp/docent-bench-venv}"
PYTHON="${PYTHON:-python3}"
LLAMA_CPU="${LLAMA_CPU:-native}"

# Pinned peers (and the ONNX Runtime docent itself loads: scripts/fetch-models.sh).
PINS=(
  "llama-cpp-python==0.3.36"
  "fastembed==0.9.1"
  "onnxruntime==1.31.1"
  "bm25s==0.3.16"
  "PyStemmer==3.1.0"
)

need_tools() {
  local missing=()
  command -v cmake >/dev/null || missing+=(cmake)
  command -v ninja >/dev/null || missing+=(ninja-build)
  command -v c++ >/dev/null || missing+=(g++)
  command -v cc >/dev/null || missing+=(gcc)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "bench-peers: installing ${missing[*]} (apt)" >&2
    if [ "$(id -u)" = 0 ]; then SUDO=(); else SUDO=(sudo); fi
    "${SUDO[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

cmake_args() {
  case "$LLAMA_CPU" in
    native) echo "-DGGML_NATIVE=ON -DGGML_BLAS=OFF -DGGML_OPENMP=ON" ;;
    avx512) echo "-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_AVX512=ON -DGGML_AVX512_VBMI=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF -DGGML_BLAS=OFF -DGGML_OPENMP=ON" ;;
    avx2) echo "-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF -DGGML_BLAS=OFF -DGGML_OPENMP=ON" ;;
    *) echo "bench-peers: LLAMA_CPU must be native, avx512 or avx2" >&2; exit 2 ;;
  esac
}

setup() {
  local stamp="$VENV/.docent-bench-$LLAMA_CPU-$(printf '%s\n' "${PINS[@]}" | sha256sum | cut -c1-12)"
  if [ -f "$stamp" ]; then
    return 0
  fi
  need_tools
  if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
  fi
  "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
  local args
  args="$(cmake_args)"
  echo "bench-peers: building llama-cpp-python (CMAKE_ARGS=$args) at nice 19; this takes a while on 2 cores" >&2
  # No prebuilt wheel: llama.cpp is compiled here, for this CPU.
  CMAKE_ARGS="$args" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
    nice -n 19 "$VENV/bin/python" -m pip install -q --no-cache-dir --no-binary llama-cpp-python "${PINS[@]}"
  echo "$args" > "$VENV/llama-cmake-args.txt"
  rm -f "$VENV"/.docent-bench-*
  touch "$stamp"
  echo "bench-peers: $VENV ready" >&2
}

cmd="${1:-run}"
shift || true
case "$cmd" in
  setup) setup ;;
  run)
    setup
    exec "$VENV/bin/python" "$ROOT/scripts/bench/compare.py" \
      --llama-cmake-args "$(cat "$VENV/llama-cmake-args.txt")" "$@"
    ;;
  *) echo "usage: $0 setup|run [compare.py args]" >&2; exit 2 ;;
esac
