#!/usr/bin/env bash
# Fetches the models, builds docent and serves the API and web chat on
# embedded defaults (SQLite + qdrant-edge + tantivy under ./data).
# Extra arguments go to `docent serve` (e.g. --port 9000).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/docent-target}"
scripts/fetch-models.sh models
exec cargo run --quiet --bin docent -- serve "$@"
