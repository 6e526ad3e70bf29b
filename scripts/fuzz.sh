#!/usr/bin/env bash
# Runs one cargo-fuzz target for a number of seconds on the stable toolchain.
#   scripts/fuzz.sh pdf 600
set -euo pipefail
cd "$(dirname "$0")/.."
target="${1:?target: pdf | docx | html_eml_csv}"
secs="${2:-600}"
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
corpus="fuzz/corpus/$target"
mkdir -p "$corpus"
case "$target" in
  pdf)
    # Seed with the shared corpus of real and broken PDFs (small ones).
    if [ -d ../shared/data/pdfs ] && [ -z "$(ls -A "$corpus")" ]; then
      find ../shared/data/pdfs -name '*.pdf' -size -200k -exec cp {} "$corpus"/ \;
    fi ;;
  docx)
    if [ -z "$(ls -A "$corpus")" ]; then
      python3 - "$corpus" <<'PY'
import sys, zipfile, io
body = ('<w:p><w:pPr><w:pStyle w:val="Heading1"/></w:pPr><w:r><w:t>Head</w:t></w:r></w:p>'
        '<w:p><w:r><w:t xml:space="preserve">Some &amp; text</w:t><w:tab/><w:br/></w:r></w:p>'
        '<w:tbl><w:tr><w:tc><w:p><w:r><w:t>a</w:t></w:r></w:p></w:tc><w:tc><w:p><w:r><w:t>b</w:t></w:r></w:p></w:tc></w:tr></w:tbl>')
doc = ('<?xml version="1.0"?><w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
       '<w:body>%s</w:body></w:document>' % body)
styles = ('<?xml version="1.0"?><w:styles xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
          '<w:style w:styleId="H1"><w:name w:val="heading 1"/></w:style>'
          '<w:style w:styleId="X"><w:basedOn w:val="H1"/><w:pPr><w:outlineLvl w:val="1"/></w:pPr></w:style></w:styles>')
for i, (method, extra) in enumerate([(zipfile.ZIP_DEFLATED, True), (zipfile.ZIP_STORED, False)]):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, 'w', method) as z:
        z.writestr('[Content_Types].xml', '<Types/>')
        z.writestr('word/document.xml', doc)
        if extra:
            z.writestr('word/styles.xml', styles)
    open(f"{sys.argv[1]}/seed{i}.docx", 'wb').write(buf.getvalue())
PY
    fi ;;
esac
# Stable toolchain: allow the -Z flags cargo-fuzz passes; no sanitizer.
export RUSTC_BOOTSTRAP=1
exec cargo fuzz run --sanitizer none "$target" "$corpus" -- \
  -max_total_time="$secs" -timeout=20 -rss_limit_mb=4096 -max_len=1048576 -print_final_stats=1
