#!/usr/bin/env bash
# Debian's Chromium for the web chat test (no browser download at test time).
set -euo pipefail
if command -v chromium >/dev/null; then exit 0; fi
echo "ensure-chromium: installing chromium with apt" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq chromium >/dev/null
