#!/usr/bin/env python3
"""Runs docent and its peers side by side, interleaved, and writes
docs/results/peers.md (+ peers.json with every sample).

Started by `scripts/bench-peers.sh run` inside the peers' venv. Per round and
per benchmark both sides run as separate processes, in alternating order (the
peer first in even rounds, docent first in odd ones), so drift on a noisy
machine hits both. Figures are medians over every timed run of every round.
Ratios are docent / peer for higher-is-better figures (tokens/s, chunks/s)
and peer / docent for times, so > 1.0x always means docent is faster.
"""

import argparse
import datetime as dt
import json
import math
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent


def stat_busy_s():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")


def sh(cmd, env=None, cwd=ROOT):
    import resource

    t = time.perf_counter()
    b0 = stat_busy_s()
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
    wall = time.perf_counter() - t
    others = max(0.0, (stat_busy_s() - b0 - own) / (wall * (os.cpu_count() or 1)))
    if p.returncode != 0:
        sys.stderr.write(p.stderr[-4000:])
        raise SystemExit(f"compare: failed ({p.returncode}): {shlex.join(cmd)}")
    lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
    if not lines:
        raise SystemExit(f"compare: no JSON from {shlex.join(cmd)}\n{p.stdout[-2000:]}")
    sys.stderr.write(f"compare: {wall:6.1f} s (others {others:.0%})  {shlex.join(cmd)[:160]}\n")
    rep = json.loads(lines[-1])
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


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    tgt = os.environ.get("CARGO_TARGET_DIR", "/var/tmp/docent-target")
    ap.add_argument("--docent-bin", default=os.environ.get("DOCENT_BIN", f"{tgt}/debug/docent"))
    ap.add_argument("--models", default=str(ROOT / "models"))
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--work", default="/var/tmp/docent-bench-peers")
    ap.add_argument("--out", default=str(ROOT / "docs" / "results" / "peers.md"))
    ap.add_argument("--only", default="generate,embed,keyword")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--prompt-tokens", type=int, default=1000)
    ap.add_argument("--gen-runs", type=int, default=3, help="timed generations per process (after 1 warm-up)")
    ap.add_argument("--embed-runs", type=int, default=1)
    ap.add_argument("--kw-runs", type=int, default=2)
    ap.add_argument("--llama-cmake-args", default="?")
    ap.add_argument("--from-json", help="re-render the report from a peers.json written by an earlier run")
    ap.add_argument("--quiet-wait", type=float, default=20,
                    help="before each process, wait up to this many seconds for other work to leave the CPUs idle")
    a = ap.parse_args()

    py = sys.executable
    peers = str(HERE / "peers.py")
    gguf = str(Path(a.models) / "SmolLM2-135M-Instruct.Q4_1.gguf")
    w = Path(a.work)
    data = Path(a.data)
    scifact = str(data / "scifact")
    if not Path(a.docent_bin).is_file():
        raise SystemExit(f"compare: no docent binary at {a.docent_bin} (cargo build first)")

    prep_cmd = [py, peers, "prepare", "--models", a.models, "--data", str(data), "--out", str(w), "--gguf", gguf,
                "--prompt-tokens", str(a.prompt_tokens)]
    saved = json.loads(Path(a.from_json).read_text()) if a.from_json else None
    prepared = saved["prepared"] if saved else sh(prep_cmd)
    prompt = str(w / "prompt.txt")
    chunks = [str(w / "chunks_mix.jsonl"), str(w / "chunks_256.jsonl")]

    t = str(a.threads)
    denv = dict(os.environ, DOCENT__GENERATION__THREADS=t, DOCENT__MODELS__EMBED_THREADS=t, RAYON_NUM_THREADS=t,
                DOCENT__MODELS__DIR=a.models, RUST_LOG=os.environ.get("RUST_LOG", "warn"))
    penv = dict(os.environ, HF_HUB_OFFLINE="1")
    d = a.docent_bin
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
    }
    only = [b for b in a.only.split(",") if b]
    raw = {b: {"peer": [], "docent": []} for b in only}
    started = dt.datetime.now(dt.timezone.utc)

    def report(rounds_done):
        finished = dt.datetime.now(dt.timezone.utc)

        rows = []  # (area, figure, docent, peer, ratio, target, verdict)
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
            rows.append((area, figure, fmt.format(dv) + unit, fmt.format(pv) + unit, ratio, best_s,
                         f">= {target:.1f}x" if target is not None else "", verdict))
            summary[f"{area}: {figure}"] = {"docent": dv, "peer": pv, "ratio": ratio, "target": target, "best": best_s}

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

        if saved:
            pv, dv, m = {}, saved["versions"], saved["machine"]
        else:
            pv = peer_versions(a.llama_cmake_args)
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
                 "above 1.0x docent is faster.\n")
        prev_date = re.search(r"^- date: (.+?) - (\S+) UTC", outp.read_text() if outp.is_file() else "", re.M)
        if saved and "meta" in saved:
            started_s, finished_s = saved["meta"]["started"], saved["meta"]["finished"]
        elif saved and prev_date:  # a peers.json from before "meta" was recorded
            started_s, finished_s = prev_date.group(1), prev_date.group(2)
        else:
            started_s, finished_s = f"{started:%Y-%m-%d %H:%M}", f"{finished:%H:%M}"
        L.append(f"- date: {started_s} - {finished_s} UTC, {rounds_done} of {a.rounds} rounds")
        L.append(f"- machine: {m['nproc']} cores, {m['cpu']}, {m['memory']}, Linux {m['kernel']}; CPU features: {', '.join(m['features'])}")
        L.append(f"- threads: {a.threads} on both sides")
        busy = [rep["busy_before"] for b in raw for side in raw[b] for rep in raw[b][side]]
        others = [rep["others_cpu_share"] for b in raw for side in raw[b] for rep in raw[b][side]]
        L.append(f"- other work on the machine just before each process (CPU busy share, waited up to {a.quiet_wait:.0f} s "
                 f"for < 15%): median {med(busy):.0%}, max {max(busy):.0%}; during the processes (CPU time of other "
                 f"work / all CPU time): median {med(others):.0%}, max {max(others):.0%}")
        L.append("")
        L.append("| area | figure | docent (median) | peer (median) | ratio | best run: docent / peer (ratio) | target | |")
        L.append("|---|---|---:|---:|---:|---:|---|---|")
        for area, fig, dvs, pvs, ratio, best_s, target, verdict in rows:
            L.append(f"| {area} | {fig} | {dvs} | {pvs} | {ratio:.2f}x | {best_s} | {target} | {verdict} |")
        L.append("")
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
        if "embed" in raw:
            cs = prepared["chunk_sets"]
            L.append(f"- **embedding**: all-MiniLM-L6-v2 int8 (`models/all-MiniLM-L6-v2-int8`, the same model.onnx and tokenizer on both sides, "
                     f"loaded by fastembed-python through `TextEmbedding.add_custom_model` + `specific_model_path`), {a.threads} threads. "
                     f"Chunk sets cut from SciFact abstracts and CovidQA articles with the model's tokenizer (seeded): "
                     f"mixed = {cs['mix']['chunks']} chunks of {cs['mix']['tokens_min']}-{cs['mix']['tokens_max']} tokens "
                     f"(mean {cs['mix']['tokens_mean']:.0f}); long = {cs['256']['chunks']} chunks of {cs['256']['tokens_max']} tokens "
                     f"(256 with [CLS]/[SEP]). docent: `Embedder::embed_passages` per `ingest.embed_batch` chunks as ingest calls it; "
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
        L.append("\n## Versions\n")
        for k, v in {**dv, **pv}.items():
            L.append(f"- {k}: `{v}`")
        L.append("\n## Commands\n")
        rel = lambda c: shlex.join(c).replace(str(ROOT) + "/", "")  # noqa: E731
        L.append("```sh")
        L.append("scripts/bench-peers.sh run   # = setup, then:")
        L.append(rel(prep_cmd))
        for b in only:
            for side in ("peer", "docent"):
                cmd, _ = cmds[b][side]
                L.append(rel(cmd))
        L.append("```")
        L.append(f"\ndocent runs with `DOCENT__GENERATION__THREADS={t} DOCENT__MODELS__EMBED_THREADS={t} RAYON_NUM_THREADS={t}` "
                 f"from the repository root. Raw samples: `{outp.with_suffix('.json').name}`.\n")
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
                                                         "machine": m, "raw": raw,
                                                         "meta": {"started": started_s, "finished": finished_s,
                                                                  "rounds_done": rounds_done, "argv": sys.argv[1:]}}, indent=1))
        print("\n".join(L[: 8 + len(rows) + 2]))

    if saved:
        raw = saved["raw"]
        report(min(len(reps) for sides in raw.values() for reps in sides.values()))
        return
    for r in range(a.rounds):
        order = ["peer", "docent"] if r % 2 == 0 else ["docent", "peer"]
        for b in only:
            for side in order:
                cmd, env = cmds[b][side]
                busy = wait_quiet(a.quiet_wait)
                rep = sh(cmd, env=env)
                rep["busy_before"] = busy
                raw[b][side].append(rep)
        # Written after every round, so an interrupted run still leaves its figures.
        report(r + 1)


if __name__ == "__main__":
    main()
