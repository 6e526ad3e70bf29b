#!/usr/bin/env bash
# Offline OCR and the extraction reference, from Debian's packages:
# tesseract (tesseract-ocr, English data) reads scanned pages and images,
# pdftoppm renders PDF pages for it, and pdftotext is the reference the
# extraction-quality test compares against (all in poppler-utils).
set -euo pipefail
missing=()
command -v tesseract >/dev/null || missing+=(tesseract-ocr tesseract-ocr-eng)
command -v pdftoppm >/dev/null && command -v pdftotext >/dev/null || missing+=(poppler-utils)
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
echo "ensure-tools: installing ${missing[*]} with apt" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq || true
apt-get install -y -qq "${missing[@]}" >/dev/null
