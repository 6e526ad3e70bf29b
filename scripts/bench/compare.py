#!/usr/bin/env python3
"""Runs docent and its peers side by side, interleaved, and writes
docs/results/peers.md (+ peers.json with every sample).

Started by `scripts/bench-peers.sh run` inside the peers' venv. Per round and
per benchmark both sides run as separate processes, in alternating order (the
peer first in even rounds, docent first in odd ones), so drift on a noisy
machine hits both. Figures are medians over every timed run of every round.
Ratios are docent / peer for higher-is-better figures (tokens/s, chunks/s)
and peer / docent for times, so > 1.0x always means docent is faster.

Areas (--only, all by default):
  generate  docent bench generate    vs llama.cpp (llama-cpp-python)
  embed     docent bench embed       vs fastembed for Python
  keyword   docent bench keyword     vs bm25s
  search    docent bench search      alone: hybrid latency at --search-chunks chunks,
                                     in a data directory of its own built once and reused
  ingest    docent ingest --json     alone: end-to-end pages/s on --pdfs, a fresh data
                                     directory every round
  load      docent bench load --json alone, when the binary has it
"""

import argparse
import datetime as dt
import json
import math
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent

PEER_AREAS = ("generate", "embed", "keyword")
OWN_AREAS = ("search", "ingest", "load")
SEARCH_TARGET_MS = 10.0
LOAD_TARGET = "0 errors below capacity; only 429/503 with Retry-After above"


def last_json(text):
    """The last JSON object in a process's stdout: a line of its own, or
    pretty-printed from a line that starts with '{'."""
    dec = json.JSONDecoder()
    for m in reversed(list(re.finditer(r"^\{", text, re.M))):
        try:
            obj, _ = dec.raw_decode(text, m.start())
        except ValueError:
            continue
        if isinstance(obj, dict):
            return obj
    return None


def stat_busy_s():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")


class Failed(Exception):
    """A process that exited non-zero or printed no JSON."""

    def __init__(self, cmd, rc, stderr, stdout):
        super().__init__(f"failed ({rc}): {shlex.join(cmd)}")
        self.rc = rc
        # The panic or error message is near the top; a backtrace follows.
        lines = [l.strip() for l in stderr.splitlines() if l.strip()]
        at = next((i for i, l in enumerate(lines) if "panicked at" in l or l.startswith("Error")), None)
        # A panic's message is on the line after its location.
        msg = " ".join(lines[at:at + 2]) if at is not None else (lines[-1] if lines else "")
        self.message = msg[:400] or stdout.strip()[-300:]


def sh(cmd, env=None, cwd=ROOT, check=True):
    """Runs one benchmark process and returns its JSON report. A failure ends
    the harness, or with check=False raises Failed for the caller to record."""
    import resource

    t = time.perf_counter()
    b0 = stat_busy_s()
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
    wall = time.perf_counter() - t
    others = max(0.0, (stat_busy_s() - b0 - own) / (wall * (os.cpu_count() or 1)))
    rep = last_json(p.stdout) if p.returncode == 0 else None
    if rep is None:
        sys.stderr.write(p.stderr[:2000] + ("\n[...]\n" + p.stderr[-2000:] if len(p.stderr) > 4000 else p.stderr[2000:]))
        what = f"failed ({p.returncode})" if p.returncode else "no JSON"
        if check:
            raise SystemExit(f"compare: {what}: {shlex.join(cmd)}\n{p.stdout[-2000:]}")
        sys.stderr.write(f"compare: {what}, recorded and going on: {shlex.join(cmd)}\n")
        raise Failed(cmd, p.returncode, p.stderr, p.stdout)
    sys.stderr.write(f"compare: {wall:6.1f} s (others {others:.0%})  {shlex.join(cmd)[:160]}\n")
    rep["wall_s"] = wall
    rep["others_cpu_share"] = others
    return rep


def cpu_busy(window=3.0):
    """Share of all CPU time (0..1) spent busy over `window` seconds."""
    def snap():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return sum(v), v[3] + v[4]  # total, idle + iowait
    t0, i0 = snap()
    time.sleep(window)
    t1, i1 = snap()
    return 1.0 - (i1 - i0) / max(1, t1 - t0)


def wait_quiet(limit_s, threshold=0.15):
    """Waits (up to limit_s) until other work leaves the CPUs idle; returns
    the busy share seen last, recorded with every sample."""
    deadline = time.time() + limit_s
    busy = cpu_busy()
    while busy > threshold and time.time() < deadline:
        sys.stderr.write(f"compare: CPUs {busy:.0%} busy with other work; waiting\n")
        time.sleep(20)
        busy = cpu_busy()
    return busy


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else float("nan")


def pct(xs, p):
    s = sorted(xs)
    return s[max(0, min(len(s) - 1, math.ceil(p / 100.0 * len(s)) - 1))] if s else float("nan")


def cargo_lock_version(name):
    try:
        text = (ROOT / "Cargo.lock").read_text()
    except OSError:
        return "?"
    m = re.search(r'name = "' + re.escape(name) + r'"\nversion = "([^"]+)"', text)
    return m.group(1) if m else "?"


def machine():
    cpu = "?"
    flags = set()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name") and cpu == "?":
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    mem = "?"
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.0f} GiB"
    except OSError:
        pass
    feats = [f for f in ("avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8") if f in flags]
    return {"nproc": os.cpu_count(), "cpu": cpu, "features": feats, "memory": mem, "kernel": platform.release()}


def peer_versions(llama_cmake_args):
    import bm25s
    import fastembed
    import llama_cpp
    import onnxruntime

    import ctypes

    # llama-cpp-python vendors llama.cpp (a git submodule); ggml reports the
    # commit it was built from.
    commit, ggml = "not reported", "?"
    try:
        lib = ctypes.CDLL(str(Path(llama_cpp.__file__).parent / "lib" / "libggml-base.so"))
        for name in ("ggml_commit", "ggml_version"):
            getattr(lib, name).restype = ctypes.c_char_p
        commit, ggml = lib.ggml_commit().decode(), lib.ggml_version().decode()
    except (OSError, AttributeError):
        pass
    sysinfo = llama_cpp.llama_print_system_info().decode()
    return {
        "llama-cpp-python": llama_cpp.__version__,
        "llama.cpp commit (ggml_commit)": commit,
        "ggml": ggml,
        "llama.cpp build": f"CMAKE_ARGS={llama_cmake_args}",
        "llama.cpp system_info": sysinfo,
        "fastembed (Python)": fastembed.__version__,
        "onnxruntime (Python)": onnxruntime.__version__,
        "bm25s": bm25s.__version__,
        "python": platform.python_version(),
    }


def docent_versions(docent_bin):
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                           text=True).stdout.strip()
    head += " + uncommitted changes" if dirty else ""
    rustc = subprocess.run(["rustc", "-V"], capture_output=True, text=True).stdout.strip()
    flags = "?"
    cfgfile = ROOT / ".cargo" / "config.toml"
    if cfgfile.is_file():
        m = re.search(r"rustflags\s*=\s*(\[.*?\])", cfgfile.read_text())
        flags = m.group(1) if m else "none"
    if os.environ.get("RUSTFLAGS"):
        flags = os.environ["RUSTFLAGS"]
    ort = sorted((ROOT / "models" / "onnxruntime").glob("libonnxruntime.so*"))
    return {
        "docent": f"{head} ({docent_bin}, dev profile: dependencies at opt-level 3)",
        "rustc": rustc,
        "rustflags": flags,
        "mistralrs": cargo_lock_version("mistralrs"),
        "fastembed (Rust)": cargo_lock_version("fastembed"),
        "ort": cargo_lock_version("ort"),
        "onnxruntime (docent)": ort[0].name.replace("libonnxruntime.so.", "") if ort else "?",
        "tantivy": cargo_lock_version("tantivy"),
    }


def flat_numbers(obj, prefix=""):
    """Numeric fields of a JSON object, nested objects flattened as a.b
    (lists and strings left out), in the report's order."""
    out = {}
    for k, v in obj.items():
        key = f"{prefix}{k}"
        if isinstance(v, bool):
            out[key] = int(v)
        elif isinstance(v, (int, float)):
            out[key] = v
        elif isinstance(v, dict):
            out.update(flat_numbers(v, key + "."))
    return out


def fmt_num(x):
    if isinstance(x, float) and not x.is_integer():
        return f"{x:.3g}" if abs(x) < 100 else f"{x:,.0f}"
    return f"{int(x):,}"


MIB = 1024 * 1024

# Figures of `docent bench load --json` (src/load.rs) shown in the table:
# (field, flattened with dots; label; format of the median; lower is better?)
LOAD_FIGURES = [
    ("load.ttft.p50_ms", "TTFT p50", lambda v: f"{v / 1000:.2f} s", True),
    ("load.ttft.p95_ms", "TTFT p95", lambda v: f"{v / 1000:.2f} s", True),
    ("load.completion_tokens_per_second", "completion tokens/s, all sessions", "{:.2f}".format, False),
    ("load.requests_per_minute", "answers per minute", "{:.1f}".format, False),
    ("load.error_rate", "error rate below capacity", lambda v: f"{v:.2%}", True),
    ("peak_rss_bytes", "peak RSS (VmHWM)", lambda v: f"{v / MIB:.0f} MiB", True),
    ("overload.requests", "past capacity: requests at once", fmt_num, None),
    ("overload.ok", "past capacity: 200, complete answer", fmt_num, None),
    ("overload.refused_clean", "past capacity: 503 overloaded + Retry-After", fmt_num, None),
    ("overload.other", "past capacity: anything else", fmt_num, None),
]
# Left out of the list of every figure: settings and records, not results.
LOAD_SKIP = ("machine", "settings", "warmup", "records", "overload_records", "command", "date")


def load_check(rep):
    """(errors below capacity, answers other than a complete 200 or a clean
    503 + Retry-After past it) of one `docent bench load` report; None for
    what it does not report."""
    n = flat_numbers(rep)
    below = n.get("load.errors")
    above = n.get("overload.other") if isinstance(rep.get("overload"), dict) else None
    return below, above


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    tgt = os.environ.get("CARGO_TARGET_DIR", "/var/tmp/docent-target")
    ap.add_argument("--docent-bin", default=os.environ.get("DOCENT_BIN", f"{tgt}/debug/docent"))
    ap.add_argument("--models", default=str(ROOT / "models"))
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--work", default="/var/tmp/docent-bench-peers")
    ap.add_argument("--out", default=str(ROOT / "docs" / "results" / "peers.md"))
    ap.add_argument("--only", default=",".join(PEER_AREAS + OWN_AREAS),
                    help="comma-separated areas (default: all): " + ", ".join(PEER_AREAS + OWN_AREAS))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--prompt-tokens", type=int, default=1000)
    ap.add_argument("--gen-runs", type=int, default=3, help="timed generations per process (after 1 warm-up)")
    ap.add_argument("--embed-runs", type=int, default=1)
    ap.add_argument("--kw-runs", type=int, default=2)
    ap.add_argument("--search-chunks", type=int, default=100_000, help="chunks in the search area's collection")
    ap.add_argument("--search-dir", help="data directory of the search collection, built once and reused "
                    "(default WORK/search-CHUNKS)")
    ap.add_argument("--search-rebuild", action="store_true", help="build the search collection again")
    ap.add_argument("--pdfs", help="directory the ingest area ingests (default DATA/pdfs)")
    ap.add_argument("--load-args", default="", help="extra arguments for `docent bench load --json` (one string)")
    ap.add_argument("--llama-cmake-args", default="?")
    ap.add_argument("--from-json", help="re-render the report from a peers.json written by an earlier run")
    ap.add_argument("--resume", help="continue an interrupted run from the peers.json it wrote: its samples, "
                    "failures and setup are kept, and the rounds after its last finished one are run with its "
                    "arguments (plus any given here)")
    ap.add_argument("--area-rounds", default="",
                    help="run some areas in the first N rounds only, e.g. load=1,ingest=2 (slow docent-only "
                         "areas); the report gives each area's run count")
    ap.add_argument("--quiet-wait", type=float, default=20,
                    help="before each process, wait up to this many seconds for other work to leave the CPUs idle")
    a = ap.parse_args()
    saved = json.loads(Path(a.from_json).read_text()) if a.from_json else None
    resumed = json.loads(Path(a.resume).read_text()) if a.resume and not saved else None
    run_argv = sys.argv[1:]
    if saved or resumed:
        # Re-rendering or resuming: the run's own arguments (rounds, sizes,
        # paths), then whatever this invocation gives; not its --out.
        meta = (saved or resumed).get("meta", {})
        run_argv = meta.get("run_argv") or [x for x in meta.get("argv", []) if "--from-json" not in meta.get("argv", [])]
        keep, skip = [], False
        for x in run_argv:
            if skip or x == "--out" or x.startswith("--out="):
                skip = x == "--out"
                continue
            keep.append(x)
        a = ap.parse_args([*keep, *sys.argv[1:]])
        if resumed:
            run_argv = [x for x in [*keep, *sys.argv[1:]] if x != "--resume" and x != a.resume]
    caps = {}
    for item in filter(None, a.area_rounds.split(",")):
        name, _, n = item.partition("=")
        if name not in PEER_AREAS + OWN_AREAS or not n.isdigit():
            raise SystemExit(f"compare: --area-rounds wants AREA=N items, got {item!r}")
        caps[name] = int(n)

    py = sys.executable
    peers = str(HERE / "peers.py")
    gguf = str(Path(a.models) / "SmolLM2-135M-Instruct.Q4_1.gguf")
    w = Path(a.work)
    data = Path(a.data)
    scifact = str(data / "scifact")
    pdfs = a.pdfs or str(data / "pdfs")
    search_dir = Path(a.search_dir or w / f"search-{a.search_chunks}")
    if not saved and not Path(a.docent_bin).is_file():
        raise SystemExit(f"compare: no docent binary at {a.docent_bin} (cargo build first)")
    if saved:
        only = list(saved["raw"])
    else:
        only = [b for b in a.only.split(",") if b]
        unknown = [b for b in only if b not in PEER_AREAS + OWN_AREAS]
        if unknown:
            raise SystemExit(f"compare: unknown area(s) {', '.join(unknown)}; known: {', '.join(PEER_AREAS + OWN_AREAS)}")
        if "load" in only:
            probe = subprocess.run([a.docent_bin, "bench", "load", "--help"], capture_output=True, text=True)
            if probe.returncode != 0:
                sys.stderr.write("compare: this docent binary has no `bench load`; leaving the load area out\n")
                only.remove("load")

    prep_cmd = [py, peers, "prepare", "--models", a.models, "--data", str(data), "--out", str(w), "--gguf", gguf,
                "--prompt-tokens", str(a.prompt_tokens)]
    needs_prep = bool({"generate", "embed"} & set(only))
    if saved:
        prepared = saved["prepared"]
    else:
        prepared = sh(prep_cmd) if needs_prep else {}
    prompt = str(w / "prompt.txt")
    chunks = [str(w / "chunks_mix.jsonl"), str(w / "chunks_256.jsonl")]

    t = str(a.threads)
    denv = dict(os.environ, DOCENT__GENERATION__THREADS=t, DOCENT__MODELS__EMBED_THREADS=t, RAYON_NUM_THREADS=t,
                DOCENT__MODELS__DIR=a.models, RUST_LOG=os.environ.get("RUST_LOG", "warn"))
    penv = dict(os.environ, HF_HUB_OFFLINE="1")

    def own_env(data_dir):
        # docent alone, on a data directory of its own (no config file, no storage overrides from outside).
        e = {k: v for k, v in denv.items() if not k.startswith("DOCENT__STORAGE__") and k != "DOCENT_CONFIG"}
        e["DOCENT__STORAGE__DATA_DIR"] = str(data_dir)
        return e

    d = a.docent_bin
    ingest_dir = w / "ingest"
    cmds = {
        "generate": {
            "peer": ([py, peers, "generate", "--gguf", gguf, "--prompt", prompt, "--max-tokens", str(a.max_tokens),
                      "--threads", t, "--runs", str(a.gen_runs), "--warmup", "1"], penv),
            "docent": ([d, "bench", "generate", "--prompt", prompt, "--max-tokens", str(a.max_tokens),
                        "--runs", str(a.gen_runs), "--warmup", "1"], denv),
        },
        "embed": {
            "peer": ([py, peers, "embed", "--model-dir", str(Path(a.models) / "all-MiniLM-L6-v2-int8"), "--chunks", *chunks,
                      "--queries", scifact, "--threads", t, "--runs", str(a.embed_runs)], penv),
            "docent": ([d, "bench", "embed", "--chunks", *chunks, "--queries", scifact, "--runs", str(a.embed_runs)], denv),
        },
        "keyword": {
            "peer": ([py, peers, "keyword", "--dataset", scifact, "--k", "10", "--runs", str(a.kw_runs)], penv),
            "docent": ([d, "bench", "keyword", "--dataset", scifact, "-k", "10", "--runs", str(a.kw_runs)], denv),
        },
        "search": {
            "docent": ([d, "bench", "search", "--dataset", scifact, "--chunks", str(a.search_chunks), "--json"],
                       own_env(search_dir)),
        },
        "ingest": {
            "docent": ([d, "ingest", "--json", pdfs], own_env(ingest_dir)),
        },
        "load": {
            # Its own server on a temporary data directory (src/load.rs).
            "docent": ([d, "bench", "load", "--json",
                        *([] if "--dataset" in a.load_args else ["--dataset", str(data / "covidqa" / "covidqa.json")]),
                        *shlex.split(a.load_args)], denv),
        },
    }
    # Directories wiped before every run of an area.
    fresh = {"ingest": ingest_dir}

    rel = lambda c: shlex.join(c).replace(str(ROOT) + "/", "")  # noqa: E731

    def cmd_line(b, side):
        cmd, env = cmds[b][side]
        pre = f"rm -rf {shlex.quote(str(fresh[b]))} && " if b in fresh else ""
        if env.get("DOCENT__STORAGE__DATA_DIR"):
            pre += f"DOCENT__STORAGE__DATA_DIR={shlex.quote(env['DOCENT__STORAGE__DATA_DIR'])} "
        if side == "docent":
            # docent's kernel switches, when set, change what is measured.
            for var in ("DOCENT_AMX", "DOCENT_VNNI_TILES", "DOCENT_CPU_KERNELS"):
                if env.get(var):
                    pre += f"{var}={shlex.quote(env[var])} "
        return pre + rel(cmd)

    if saved:
        commands = saved.get("commands")
    elif resumed and resumed.get("commands"):
        commands = resumed["commands"] + [shlex.join(["scripts/bench-peers.sh", "run", "--resume", a.resume,
                                                      *(["--area-rounds", a.area_rounds] if a.area_rounds else [])])
                                          + f"   # continued after round {resumed['meta']['rounds_done']}"]
    else:
        # As invoked (less what bench-peers.sh adds itself), then each process.
        argv, skip = [], False
        for x in sys.argv[1:]:
            if skip or x.startswith("--llama-cmake-args"):
                skip = x == "--llama-cmake-args"
                continue
            argv.append(x)
        commands = [shlex.join(["scripts/bench-peers.sh", "run", *argv]) + "   # = setup, then:"]
        if needs_prep:
            commands.append(rel(prep_cmd))
        for b in only:
            if b == "search":
                commands.append(f"# search: built once into {search_dir} (kept while "
                                f"{search_dir.name}/.docent-bench-built exists), then once per round:")
            for side in ("peer", "docent"):
                if side in cmds[b]:
                    commands.append(cmd_line(b, side))
    if commands is None:  # a peers.json from before the commands were recorded: the report's own list
        prev = Path(a.out).read_text() if Path(a.out).is_file() else ""
        block = re.search(r"^## Commands\n\n```sh\n(.*?)\n```", prev, re.M | re.S)
        commands = block.group(1).splitlines() if block else None
    if commands is None:
        commands = ["scripts/bench-peers.sh run   # = setup, then:", rel(prep_cmd)]
        commands += [rel(cmds[b][side][0]) for b in only for side in ("peer", "docent") if side in cmds[b]]

    raw = {b: {side: [] for side in cmds[b]} for b in only}
    setup = saved.get("setup", {}) if saved else {}
    failures = saved.get("failures", []) if saved else []
    started = dt.datetime.now(dt.timezone.utc)
    first_round = 0
    if resumed:
        for b in raw:
            for side in raw[b]:
                raw[b][side] = resumed["raw"].get(b, {}).get(side, [])
        setup, failures = resumed.get("setup", {}), resumed.get("failures", [])
        started = dt.datetime.strptime(resumed["meta"]["started"], "%Y-%m-%d %H:%M").replace(tzinfo=dt.timezone.utc)
        first_round = resumed["meta"]["rounds_done"]

    def report(rounds_done):
        finished = dt.datetime.now(dt.timezone.utc)

        rows = []  # (area, figure, docent, peer, ratio, best run, target, verdict)
        summary = {}

        def add(area, figure, dv, pv, higher_better, unit, target=None, fmt="{:.1f}", best=None):
            ratio = (dv / pv) if higher_better else (pv / dv)
            verdict = ""
            if target is not None:
                verdict = "met" if ratio >= target else "missed"
            best_s = ""
            if best:
                # The best run of each side: on a shared machine, the run
                # least disturbed by other work.
                db = max(best[0]) if higher_better else min(best[0])
                pb = min(best[1]) if not higher_better else max(best[1])
                br = (db / pb) if higher_better else (pb / db)
                best_s = f"{fmt.format(db)} / {fmt.format(pb)}{unit} ({br:.2f}x)"
                if target is not None and (br >= target) != (ratio >= target):
                    verdict = f"median {verdict}, best run {'met' if br >= target else 'missed'}: unclear"
            rows.append((area, figure, fmt.format(dv) + unit, fmt.format(pv) + unit, f"{ratio:.2f}x", best_s,
                         f">= {target:.1f}x" if target is not None else "", verdict))
            summary[f"{area}: {figure}"] = {"docent": dv, "peer": pv, "ratio": ratio, "target": target, "best": best_s}

        def own(area, figure, vals, unit="", fmt="{:.1f}", higher_better=None, target=None, shown=None):
            """A docent-only figure: the median over rounds of one value per
            run; the best run when the direction is known; `target` is
            (text, test of a value)."""
            vals = [v for v in vals if v is not None]
            dv = med(vals)
            best_s, best = "", None
            if higher_better is not None and len(vals) > 1:
                best = max(vals) if higher_better else min(vals)
                best_s = fmt.format(best) + unit
            verdict, target_s = "", ""
            if target is not None:
                target_s, ok = target
                verdict = "met" if ok(dv) else "missed"
                if best is not None and ok(best) != ok(dv):
                    verdict = f"median {verdict}, best run {'met' if ok(best) else 'missed'}: unclear"
            rows.append((area, figure, shown if shown is not None else fmt.format(dv) + unit, "-", "-", best_s,
                         target_s, verdict))
            summary[f"{area}: {figure}"] = {"docent": dv, "peer": None, "ratio": None, "target": target_s or None,
                                            "best": best_s, "runs": vals}

        if "generate" in raw:
            def runs(side):
                return [x for rep in raw["generate"][side] for x in rep["runs"]]
            dr, pr = runs("docent"), runs("peer")
            for key, label in (("prompt_tps", "prompt tokens/s"), ("decode_tps", "decode tokens/s")):
                ds, ps = [x[key] for x in dr], [x[key] for x in pr]
                add("generation", label, med(ds), med(ps), True, "", 1.0, best=(ds, ps))
            ttft_d, ttft_p = med([x["ttft_s"] for x in dr]), med([x["ttft_s"] for x in pr])
            add("generation", "time to first token", ttft_d, ttft_p, False, " s", None, "{:.2f}",
                best=([x["ttft_s"] for x in dr], [x["ttft_s"] for x in pr]))
            rows[-1] = rows[-1][:6] + ("docent <= 1.5 s", "met" if ttft_d <= 1.5 else "missed")
            summary["generation: time to first token"]["target"] = "docent <= 1.5 s"
            gen_meta = {
                "docent prompt tokens": sorted({x["prompt_tokens"] for x in dr}),
                "llama.cpp prompt tokens": sorted({x["prompt_tokens"] for x in pr}),
                "docent completion tokens": sorted({x["completion_tokens"] for x in dr}),
                "llama.cpp completion tokens": sorted({x["completion_tokens"] for x in pr}),
                "samples": (len(dr), len(pr)),
                "llama.cpp engine-internal prompt tokens/s": med([x.get("engine_prompt_tps") for x in pr]),
                "llama.cpp engine-internal decode tokens/s": med([x.get("engine_decode_tps") for x in pr]),
                "docent load s": med([rep["load_s"] for rep in raw["generate"]["docent"]]),
                "docent Q4_1 prompt kernel": sorted({rep.get("q4_1_prompt_kernel", "not reported") for rep in raw["generate"]["docent"]}),
                "llama.cpp load s": med([rep["load_s"] for rep in raw["generate"]["peer"]]),
                "docent sample": raw["generate"]["docent"][-1]["sample_text"][:200],
                "llama.cpp sample": raw["generate"]["peer"][-1]["sample_text"][:200],
            }
        if "embed" in raw:
            for s, label, target in (("chunks_mix", "chunks/s, mixed 32-254 tokens", 1.3), ("chunks_256", "chunks/s, 254-token chunks", None)):
                ds = [v for rep in raw["embed"]["docent"] for v in rep["sets"][s]["chunks_per_s"]]
                ps = [v for rep in raw["embed"]["peer"] for v in rep["sets"][s]["chunks_per_s"]]
                add("embedding", label, med(ds), med(ps), True, "", target, best=(ds, ps))
            dq = [v for rep in raw["embed"]["docent"] for v in rep["query_ms"]]
            pq = [v for rep in raw["embed"]["peer"] for v in rep["query_ms"]]
            add("embedding", "single query p50", med(dq), med(pq), False, " ms", None, "{:.2f}")
        if "keyword" in raw:
            ds = [v for rep in raw["keyword"]["docent"] for v in rep["index_s"]]
            ps = [v for rep in raw["keyword"]["peer"] for v in rep["index_s"]]
            add("keyword (SciFact)", "index time", med(ds), med(ps), False, " s", None, "{:.2f}", best=(ds, ps))
            dq = [v for rep in raw["keyword"]["docent"] for v in rep["query_ms"]]
            pq = [v for rep in raw["keyword"]["peer"] for v in rep["query_ms"]]
            add("keyword (SciFact)", "query p50", pct(dq, 50), pct(pq, 50), False, " ms", None, "{:.2f}")
            add("keyword (SciFact)", "query p95", pct(dq, 95), pct(pq, 95), False, " ms", None, "{:.2f}")
        search_meta = None
        if raw.get("search", {}).get("docent"):
            sr = raw["search"]["docent"]

            def mode(rep, name):
                if name == "query embedding":
                    return rep["query_embedding"]
                return next((x for x in rep["latency"] if x["mode"] == name), None)

            def lat(name, key):
                return [mode(rep, name)[key] for rep in sr if mode(rep, name)]

            area = f"search ({sr[-1]['chunks']:,} chunks)"
            for incl in ("excluded", "included"):
                name = f"hybrid (embedding {incl})"
                for p in ("p50", "p95", "p99"):
                    target = None
                    if incl == "excluded" and p == "p95":
                        target = (f"<= {SEARCH_TARGET_MS:g} ms", lambda v: v <= SEARCH_TARGET_MS)
                    own(area, f"hybrid {p}, query embedding {incl}", lat(name, f"{p}_ms"), " ms", "{:.2f}",
                        higher_better=False, target=target)
            search_meta = {
                name: (med(lat(name, "p50_ms")), med(lat(name, "p95_ms")))
                for name in ("bm25", "dense (embedding excluded)", "query embedding")
            }
            search_meta["rep"] = sr[-1]
            search_meta["peak_rss"] = med([rep["peak_rss_bytes"] for rep in sr])
        ingest_meta = None
        if raw.get("ingest", {}).get("docent"):
            ir = raw["ingest"]["docent"]
            last = ir[-1]
            area = f"ingestion ({last['files']} files)"
            own(area, "pages/s, end to end", [rep["pages_per_s"] for rep in ir], "", "{:.2f}", higher_better=True)
            own(area, "chunks/s, end to end", [rep["chunks_per_s"] for rep in ir], "", "{:.2f}", higher_better=True)
            failed = [rep["failed"] for rep in ir]
            own(area, "failed files", failed, shown=f"{med(failed):.0f} of {last['files']}")
            stages = sorted({s for rep in ir for s in rep["stage_share"]},
                            key=lambda s: -med([rep["stage_share"].get(s, 0.0) for rep in ir]))
            for s in stages:
                shares = [rep["stage_share"].get(s, 0.0) for rep in ir]
                secs = med([rep["stage_seconds"].get(s, 0.0) for rep in ir])
                own(area, f"share of stage time: {s}", shares, shown=f"{med(shares):.0%} ({secs:.1f} s)")
            ingest_meta = {"rep": last, "elapsed": med([rep["elapsed_s"] for rep in ir]),
                           "pages": sorted({rep["pages"] for rep in ir}), "chunks": sorted({rep["chunks"] for rep in ir})}
        load_meta = None
        if raw.get("load", {}).get("docent"):
            lr = raw["load"]["docent"]
            nums = [flat_numbers({k: v for k, v in rep.items() if k not in LOAD_SKIP}) for rep in lr]
            sessions = (lr[-1].get("load") or {}).get("sessions")
            area = f"load ({sessions} sessions)" if sessions else "load"
            known = [f for f in LOAD_FIGURES if f[0] in nums[-1]]
            if not known:  # a report this script does not know: every numeric field
                known = [(k, k, fmt_num, None) for k in nums[-1] if k not in ("others_cpu_share", "busy_before", "wall_s")]
            for key, label, f, lower in known:
                vals = [n[key] for n in nums if key in n]
                best = ""
                if lower is not None and len(vals) > 1:
                    best = f(min(vals) if lower else max(vals))
                own(area, label, vals, shown=f(med(vals)))
                rows[-1] = rows[-1][:5] + (best,) + rows[-1][6:]
            checks = [load_check(rep) for rep in lr]
            below = [c[0] for c in checks if c[0] is not None]
            above = [c[1] for c in checks if c[1] is not None]
            bad = [i + 1 for i, (b, o) in enumerate(checks) if (b or 0) > 0 or (o or 0) > 0]
            verdict = "" if not below else ("met" if not bad else f"missed in round(s) {', '.join(map(str, bad))}")
            if below and not above:
                verdict += " (below capacity only: no overload phase)"
            shown = f"{sum(below)} / {sum(above) if above else '-'} in {len(lr)} run(s)"
            own(area, "errors below capacity / other answers past it", [], shown=shown)
            rows[-1] = rows[-1][:6] + (LOAD_TARGET, verdict)
            summary[f"{area}: errors below capacity / other answers past it"].update(
                {"docent": [sum(below), sum(above)], "target": LOAD_TARGET, "verdict": verdict})
            load_meta = {"rep": lr[-1], "nums": nums}

        if saved:
            pv, dv, m = {}, saved["versions"], saved["machine"]
        else:
            pv = peer_versions(a.llama_cmake_args) if set(PEER_AREAS) & set(only) else {}
            dv = docent_versions(a.docent_bin)
            m = machine()
        outp = Path(a.out)
        outp.parent.mkdir(parents=True, exist_ok=True)
        L = []
        L.append("# docent against its peers, side by side (issue #8)\n")
        L.append("Regenerate with `scripts/bench-peers.sh run` (sets up the peers in a venv, then runs "
                 "`scripts/bench/compare.py`). Both sides run in one run on one machine, interleaved per round "
                 "(peer first in even rounds, docent first in odd ones); every figure is the median over all timed "
                 "runs of all rounds. **Ratio** is docent / peer for rates and peer / docent for times: "
                 "above 1.0x docent is faster. Rows without a peer (search at scale, ingestion, load) are docent "
                 "alone against the issue's targets: the median over rounds of each run's figure, and its best run.\n")
        prev_date = re.search(r"^- date: (.+?) - (\S+) UTC", outp.read_text() if outp.is_file() else "", re.M)
        if saved and "meta" in saved:
            started_s, finished_s = saved["meta"]["started"], saved["meta"]["finished"]
        elif saved and prev_date:  # a peers.json from before "meta" was recorded
            started_s, finished_s = prev_date.group(1), prev_date.group(2)
        else:
            started_s, finished_s = f"{started:%Y-%m-%d %H:%M}", f"{finished:%H:%M}"
        L.append(f"- date: {started_s} - {finished_s} UTC, {rounds_done} of {a.rounds} rounds")
        if caps:
            L.append("- runs per area (`--area-rounds`): " + ", ".join(
                f"{b} {len(raw[b].get('docent', []))}" for b in raw if b in caps))
        L.append(f"- machine: {m['nproc']} cores, {m['cpu']}, {m['memory']}, Linux {m['kernel']}; CPU features: {', '.join(m['features'])}")
        L.append(f"- threads: {a.threads} on both sides")
        busy = [rep["busy_before"] for b in raw for side in raw[b] for rep in raw[b][side]]
        others = [rep["others_cpu_share"] for b in raw for side in raw[b] for rep in raw[b][side]]
        L.append(f"- other work on the machine just before each process (CPU busy share, waited up to {a.quiet_wait:.0f} s "
                 f"for < 15%): median {med(busy):.0%}, max {max(busy, default=float('nan')):.0%}; during the processes "
                 f"(CPU time of other work / all CPU time): median {med(others):.0%}, max "
                 f"{max(others, default=float('nan')):.0%}")
        if failures:
            L.append("- failed runs, left out of the figures: " + "; ".join(
                f"{f['area']} {'setup' if f['round'] == 0 else 'round ' + str(f['round'])} (exit {f['exit']}: "
                f"{f['message'].replace('|', '/')})" for f in failures))
        L.append("")
        table_at = len(L)
        L.append("| area | figure | docent (median) | peer (median) | ratio | best run: docent / peer (ratio) | target | |")
        L.append("|---|---|---:|---:|---:|---:|---|---|")
        for area, fig, dvs, pvs, ratio_s, best_s, target, verdict in rows:
            L.append(f"| {area} | {fig} | {dvs} | {pvs} | {ratio_s} | {best_s} | {target} | {verdict} |")
        L.append("")
        table_end = len(L)
        if set(PEER_AREAS) & set(raw):
            L.append("Peers: generation against llama.cpp (llama-cpp-python), embedding against fastembed for Python, "
                     "keyword search against bm25s.\n")
        L.append("## What was measured\n")
        if "generate" in raw:
            L.append(f"- **generation**: SmolLM2-135M-Instruct Q4_1 (`models/SmolLM2-135M-Instruct.Q4_1.gguf`, the same file on both sides), "
                     f"one user message read from the same file ({prepared['prompt_tokens']} prompt tokens with the chat template; "
                     f"the first CovidQA article cut to whole sentences, as numbered sources, plus its first question), greedy, "
                     f"at most {a.max_tokens} new tokens, {a.threads} threads, 1 warm-up then {a.gen_runs} timed generations per "
                     f"process. No KV/prefix reuse between runs on either side (llama-cpp-python: `Llama.reset()`; docent: "
                     f"`generation.prefix_cache_n = 0`). TTFT = request submitted to first streamed token; prompt tokens/s = "
                     f"prompt tokens / TTFT; decode tokens/s = (completion tokens - 1) / (last token - first token). "
                     f"Samples: {gen_meta['samples'][0]} docent, {gen_meta['samples'][1]} llama.cpp.")
            L.append(f"  - prompt tokens as each engine counted them: docent {gen_meta['docent prompt tokens']}, "
                     f"llama.cpp {gen_meta['llama.cpp prompt tokens']}; completion tokens: docent {gen_meta['docent completion tokens']}, "
                     f"llama.cpp {gen_meta['llama.cpp completion tokens']}")
            L.append(f"  - llama.cpp's own counters (llama_perf_context): prompt {gen_meta['llama.cpp engine-internal prompt tokens/s']:.1f} tokens/s, "
                     f"decode {gen_meta['llama.cpp engine-internal decode tokens/s']:.1f} tokens/s; model load: docent "
                     f"{gen_meta['docent load s']:.1f} s, llama.cpp {gen_meta['llama.cpp load s']:.1f} s")
            L.append(f"  - docent's Q4_1 matmul for prompts on this CPU (chosen at run time): "
                     f"{', '.join(gen_meta['docent Q4_1 prompt kernel'])}")
        if "embed" in raw:
            cs = prepared["chunk_sets"]
            L.append(f"- **embedding**: all-MiniLM-L6-v2 int8 (`models/all-MiniLM-L6-v2-int8`, the same model.onnx and tokenizer on both sides, "
                     f"loaded by fastembed-python through `TextEmbedding.add_custom_model` + `specific_model_path`), {a.threads} threads. "
                     f"Chunk sets cut from SciFact abstracts and CovidQA articles with the model's tokenizer (seeded): "
                     f"mixed = {cs['mix']['chunks']} chunks of {cs['mix']['tokens_min']}-{cs['mix']['tokens_max']} tokens "
                     f"(mean {cs['mix']['tokens_mean']:.0f}); long = {cs['256']['chunks']} chunks of {cs['256']['tokens_max']} tokens "
                     f"(256 with [CLS]/[SEP]). docent: the ingest path (windows of `ingest.embed_batch` chunks, two in flight, to the "
                     f"shared embedding worker, which sorts them by token count and cuts model calls by `models.embed_call_tokens`); "
                     f"fastembed-python: `embed(texts)` with its defaults (batch_size 256). Single query: the first 200 SciFact test "
                     f"queries, one `embed_query` / `query_embed` call each. {a.embed_runs} timed passes per process after a warm-up.")
        if "keyword" in raw:
            kd = raw["keyword"]["docent"][-1]
            kp = raw["keyword"]["peer"][-1]
            L.append(f"- **keyword**: SciFact corpus ({kd['documents']} documents), its {kd['queries']} test queries, k = 10, one "
                     f"query at a time. docent: tantivy through `KeywordIndex` (English analyzer: stop words + Porter stemming; title "
                     f"and body fields; every query carries an access filter), a fresh index per run, one upsert of the corpus "
                     f"(analysis + commit). bm25s: `bm25s.tokenize` (English stop words, PyStemmer) + `BM25().index`, query "
                     f"tokenization included in the latency, `n_threads=1`. Share of queries with a relevant document in the "
                     f"top 10: docent {kd['success_at_k']:.2f}, bm25s {kp['success_at_k']:.2f}.")
        if search_meta:
            sm, rep = search_meta, search_meta["rep"]
            built = setup.get("search") or {}
            built_s = ""
            if built.get("build_seconds") is not None:
                built_s = (f" The collection was built once ({built.get('built', '?')}, docent {built.get('docent', '?')}, "
                           f"{built['build_seconds']:.0f} s, of which embedding the base documents "
                           f"{built.get('embed_seconds') or 0:.0f} s) and reused by every round.")
            mib = 1024 * 1024
            L.append(f"- **search**: `docent bench search` on {rep['chunks']:,} chunks ({rep['base_documents']:,} SciFact "
                     f"documents embedded for real plus seeded variants: 15% of the words dropped, the vector plus noise "
                     f"at cosine ~0.9) in SQL, qdrant-edge (HNSW) and tantivy; its first {rep['queries']} SciFact queries one at "
                     f"a time, k = {rep['k']}, through the real `Searcher` (BM25 and dense legs, fusion, SQL hydration, access "
                     f"filter), after 20 warm-up queries. \"Query embedding excluded\" gives the searcher a vector embedded "
                     f"beforehand; \"included\" embeds the query inside the timed call. One process per round; p50/p95/p99 are "
                     f"nearest-rank over that process's queries, the table the median over rounds.{built_s}")
            L.append(f"  - other modes (median p50 / p95): BM25 {sm['bm25'][0]:.2f} / {sm['bm25'][1]:.2f} ms, dense "
                     f"(embedding excluded) {sm['dense (embedding excluded)'][0]:.2f} / {sm['dense (embedding excluded)'][1]:.2f} ms, "
                     f"query embedding alone {sm['query embedding'][0]:.2f} / {sm['query embedding'][1]:.2f} ms; on disk: vectors "
                     f"{rep['disk_bytes']['vectors'] / mib:.0f} MiB, BM25 {rep['disk_bytes']['bm25'] / mib:.0f} MiB, SQL "
                     f"{rep['disk_bytes']['sql'] / mib:.0f} MiB; peak RSS {sm['peak_rss'] / mib:.0f} MiB")
        if ingest_meta:
            rep = ingest_meta["rep"]
            by_class = ", ".join(f"{c} {n}" for c, n in rep["failed_by_class"].items()) or "none"
            L.append(f"- **ingestion**: `docent ingest --json` of `{rel([pdfs])}` ({rep['files']} files, "
                     f"{rep['bytes'] / (1024 * 1024):.1f} MiB: real PDFs from the pdf.js and qpdf test suites and the PDF "
                     f"\"cabinet of horrors\", many damaged, encrypted or malformed on purpose) into a fresh data directory "
                     f"each round (SQLite, qdrant-edge, tantivy on local disk), the CLI's one-file-at-a-time path: read, "
                     f"submit, extract, chunk, embed, index. pages/s and chunks/s = pages and chunks of the ingested "
                     f"documents / wall time of the whole loop (failed files included); {'/'.join(map(str, ingest_meta['pages']))} "
                     f"pages and {'/'.join(map(str, ingest_meta['chunks']))} chunks per run, median {ingest_meta['elapsed']:.1f} s. Stage shares: the time "
                     f"documents spent in each pipeline stage (from the progress callback) over the sum of all stages. "
                     f"Failures of the last run by class: {by_class}.")
            slow = rep.get("slowest_files") or []
            if slow:
                total = rep["elapsed_s"] or 1.0
                top = sum(f["seconds"] for f in slow)
                items = "; ".join(f"`{Path(f['file']).name}` {f['seconds']:.1f} s ({f['pages']} pages, {f['outcome']})"
                                  for f in slow)
                L.append(f"  - the {len(slow)} slowest files of the last run take {top:.1f} s of its {total:.1f} s "
                         f"({top / total:.0%}): {items}")
        if load_meta:
            rep, nums = load_meta["rep"], load_meta["nums"]
            st, co, lp, op = rep.get("settings", {}), rep.get("corpus", {}), rep.get("load", {}), rep.get("overload")
            text = (f"- **load**: `docent bench load --json` (src/load.rs), one process per round: the real server in the "
                    f"process on 127.0.0.1 with a temporary data directory")
            if co:
                text += (f", {co.get('documents')} COVID-QA article(s) uploaded over HTTP ({co.get('chunks')} chunks), then "
                         f"{lp.get('sessions')} concurrent chat sessions x {lp.get('turns')} turn(s) ({lp.get('endpoint')}), "
                         f"streaming, at most {st.get('max_tokens')} completion tokens per answer, chat model "
                         f"{st.get('model')} on {st.get('compute_threads')} threads, admission "
                         f"{lp.get('admission', {}).get('max_active')} generating + {lp.get('admission', {}).get('max_queued')} "
                         f"waiting. TTFT = request sent to the first streamed token, client side, over complete answers "
                         f"that called the model")
            if isinstance(op, dict):
                text += (f"; then a second server with {op['admission']['max_active']} + {op['admission']['max_queued']} "
                         f"slots gets {op['requests']} requests at once: each must be a complete 200 or a 503 `overloaded` "
                         f"with a Retry-After of whole seconds and the JSON error shape (after it: `/healthz` "
                         f"{op.get('healthz_status')}, `/readyz` {op.get('readyz_status')}, a chat "
                         f"{'answered' if op.get('chat_after_ok') else 'FAILED'})")
            text += f". Target: {LOAD_TARGET}."
            L.append(text)
            every = [f"`{k}` {fmt_num(med([n[k] for n in nums if k in n]))}" for k in nums[-1]
                     if k not in ("others_cpu_share", "busy_before", "wall_s")]
            L.append(f"  - every figure it reports (median over rounds): {', '.join(every)}")
        L.append("\n## Versions\n")
        for k, v in {**dv, **pv}.items():
            L.append(f"- {k}: `{v}`")
        L.append("\n## Commands\n")
        L.append("```sh")
        L.extend(commands)
        L.append("```")
        L.append(f"\ndocent runs with `DOCENT__GENERATION__THREADS={t} DOCENT__MODELS__EMBED_THREADS={t} RAYON_NUM_THREADS={t} "
                 f"DOCENT__MODELS__DIR=models` from the repository root. Raw samples: `{outp.with_suffix('.json').name}`.\n")
        if "generate" in raw:
            L.append("Sample outputs (first 200 characters of the last run):\n")
            L.append(f"- docent: {json.dumps(gen_meta['docent sample'])}")
            L.append(f"- llama.cpp: {json.dumps(gen_meta['llama.cpp sample'])}")
        marker = "<!-- notes below are kept when the file is regenerated -->"
        notes = ""
        if outp.is_file():
            old = outp.read_text()
            if marker in old:
                notes = old.split(marker, 1)[1]
        L.append("\n" + marker + notes.rstrip("\n") + "\n")
        outp.write_text("\n".join(L))
        outp.with_suffix(".json").write_text(json.dumps({"prepared": prepared, "summary": summary, "versions": {**dv, **pv},
                                                         "machine": m, "raw": raw, "setup": setup, "commands": commands, "failures": failures,
                                                         "meta": {"started": started_s, "finished": finished_s,
                                                                  "rounds_done": rounds_done, "argv": sys.argv[1:],
                                                                  "run_argv": run_argv}}, indent=1))
        print("\n".join(L[:table_end]))

    if saved:
        raw = saved["raw"]
        report(saved.get("meta", {}).get("rounds_done")
               or min(len(reps) for sides in raw.values() for reps in sides.values()))
        return
    if "search" in only:
        # The collection is built once (embedding the corpus takes minutes)
        # and reused by every round and every later run.
        marker = search_dir / ".docent-bench-built"
        if a.search_rebuild or not marker.is_file():
            shutil.rmtree(search_dir, ignore_errors=True)
            search_dir.mkdir(parents=True)
            sys.stderr.write(f"compare: building the search collection ({a.search_chunks} chunks) in {search_dir}\n")
            cmd, env = cmds["search"]["docent"]
            try:
                rep = sh(cmd, env=env, check=False)
                marker.write_text(json.dumps({
                    "chunks": rep["chunks"], "build_seconds": rep.get("build_seconds"),
                    "embed_seconds": rep.get("embed_seconds"),
                    "docent": docent_versions(a.docent_bin)["docent"].split(" (")[0],
                    "built": f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC"}))
            except Failed as e:
                failures.append({"area": "search", "round": 0, "exit": e.rc, "message": e.message})
                only.remove("search")
        if marker.is_file():
            setup["search"] = json.loads(marker.read_text())
    for r in range(first_round, a.rounds):
        order = ["peer", "docent"] if r % 2 == 0 else ["docent", "peer"]
        for b in only:
            if r >= caps.get(b, a.rounds):
                continue
            for side in order:
                if side not in cmds[b]:
                    continue
                cmd, env = cmds[b][side]
                if b in fresh:
                    shutil.rmtree(fresh[b], ignore_errors=True)
                busy = wait_quiet(a.quiet_wait)
                try:
                    # docent alone: a failed run is recorded and the others go on.
                    rep = sh(cmd, env=env, check=b in PEER_AREAS)
                except Failed as e:
                    failures.append({"area": b, "round": r + 1, "exit": e.rc, "message": e.message})
                    continue
                rep["busy_before"] = busy
                raw[b][side].append(rep)
        # Written after every round, so an interrupted run still leaves its figures.
        report(r + 1)


if __name__ == "__main__":
    main()
