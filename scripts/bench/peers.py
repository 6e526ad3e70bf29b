#!/usr/bin/env python3
"""The peers' side of the side-by-side benchmark (issue #8).

Run inside the venv that scripts/bench-peers.sh sets up. Every command prints
one JSON object on stdout with the same fields `docent bench generate|embed|
keyword` prints, so scripts/bench/compare.py can set them side by side.

  peers.py prepare  --models M --data D --out W   # the shared inputs (prompt, chunk sets)
  peers.py generate --gguf G --prompt W/prompt.txt [--max-tokens 128 --runs 5 --warmup 1]
  peers.py embed    --model-dir M/all-MiniLM-L6-v2-int8 --chunks W/chunks_mix.jsonl --queries D/scifact
  peers.py keyword  --dataset D/scifact [--k 10 --runs 3]

Definitions (shared with docent's side):
  ttft_s     request submitted -> first streamed token
  prompt_tps prompt tokens (chat template included) / ttft_s
  decode_tps (completion tokens - 1) / (last token time - first token time)
"""

import argparse
import json
import math
import os
import random
import statistics
import sys
import time
from pathlib import Path


def out(obj):
    json.dump(obj, sys.stdout)
    sys.stdout.write("\n")
    sys.stdout.flush()


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def test_queries(dataset):
    """queries.jsonl restricted to those judged in qrels/test.tsv, in file order."""
    judged = set()
    with open(Path(dataset) / "qrels" / "test.tsv", encoding="utf-8") as f:
        for i, line in enumerate(f):
            cols = line.rstrip("\n").split("\t")
            if len(cols) < 3 or (i == 0 and cols[0] == "query-id"):
                continue
            judged.add(cols[0])
    return [q for q in read_jsonl(Path(dataset) / "queries.jsonl") if q["_id"] in judged]


def qrels(dataset):
    rel = {}
    with open(Path(dataset) / "qrels" / "test.tsv", encoding="utf-8") as f:
        for i, line in enumerate(f):
            cols = line.rstrip("\n").split("\t")
            if len(cols) < 3 or (i == 0 and cols[0] == "query-id"):
                continue
            if int(cols[2]) > 0:
                rel.setdefault(cols[0], set()).add(cols[1])
    return rel


def pct(xs, p):
    """Nearest-rank percentile (same rule as docent's side)."""
    s = sorted(xs)
    if not s:
        return 0.0
    i = max(0, min(len(s) - 1, math.ceil(p / 100.0 * len(s)) - 1))
    return s[i]


# ---------------------------------------------------------------- prepare

LONG_ANSWER = (
    "Explain in detail: list every factor the sources mention, one paragraph per factor, "
    "then summarise the study's methods and results."
)

PROMPT_HEAD = (
    "Answer the question using only the numbered sources below. Write a detailed answer "
    "of several paragraphs and cite the source of every claim as [n].\n\n"
)


def docent_system_prompt():
    """docent's SYSTEM_PROMPT, read from its source so the two never drift."""
    import re

    src = (Path(__file__).resolve().parents[2] / "generate" / "src" / "prompt.rs").read_text(encoding="utf-8")
    m = re.search(r'pub const SYSTEM_PROMPT: &str = "(.*?)";', src, re.S)
    if not m:
        raise SystemExit("peers.py: SYSTEM_PROMPT not found in generate/src/prompt.rs")
    return re.sub(r"\\\n\s*", "", m.group(1))


def build_prompt(context, question, n_sentences, per_source=6):
    import re

    sentences = re.split(r"(?<=[.!?])\s+", context.strip())[:n_sentences]
    parts = []
    for i in range(0, len(sentences), per_source):
        n = i // per_source + 1
        parts.append(f'<source id="{n}">\n' + " ".join(sentences[i : i + per_source]) + "\n</source>")
    return PROMPT_HEAD + "\n".join(parts) + f"\n\nQuestion: {question}"


def cmd_prepare(a):
    from llama_cpp import Llama
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter
    from tokenizers import Tokenizer

    w = Path(a.out)
    w.mkdir(parents=True, exist_ok=True)
    data = Path(a.data)
    covid = json.load(open(data / "covidqa" / "covidqa.json", encoding="utf-8"))
    para = covid["data"][0]["paragraphs"][0]
    # The question asks for a long answer, so that greedy decoding runs to
    # --max-tokens on both sides (docent's ChatModel cannot ignore EOS).
    context = para["context"]
    question = para["qas"][0]["question"] + " " + LONG_ANSWER

    # Cut the first article to the most sentences whose chat-templated prompt
    # stays within --prompt-tokens, counted with the GGUF's own tokenizer.
    llm = Llama(model_path=a.gguf, vocab_only=True, verbose=False)
    tmpl = llm.metadata["tokenizer.chat_template"]
    eos = llm.detokenize([llm.token_eos()]).decode("utf-8", "replace")
    bos = llm.detokenize([llm.token_bos()]).decode("utf-8", "replace")
    fmt = Jinja2ChatFormatter(tmpl, eos_token=eos, bos_token=bos, add_generation_prompt=True)

    def count(text):
        p = fmt(messages=[{"role": "user", "content": text}]).prompt
        return len(llm.tokenize(p.encode("utf-8"), add_bos=False, special=True))

    lo, hi = 1, 400
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count(build_prompt(context, question, mid)) <= a.prompt_tokens:
            lo = mid
        else:
            hi = mid - 1
    prompt = build_prompt(context, question, lo)
    (w / "prompt.txt").write_text(prompt, encoding="utf-8")

    # RAG prompts as the chat path sends them: docent's fixed system prompt,
    # then sources from a different article each time (articles 2-5), so a
    # prefix cache can reuse the system prompt and nothing else.
    system = docent_system_prompt()

    def count_rag(text):
        msgs = [{"role": "system", "content": system}, {"role": "user", "content": text}]
        p = fmt(messages=msgs).prompt
        return len(llm.tokenize(p.encode("utf-8"), add_bos=False, special=True))

    rag_files = []
    for i, art in enumerate(covid["data"][1:5]):
        para = art["paragraphs"][0]
        ctx, q = para["context"], para["qas"][0]["question"] + " " + LONG_ANSWER
        lo, hi = 1, 400
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if count_rag(build_prompt(ctx, q, mid)) <= a.prompt_tokens:
                lo = mid
            else:
                hi = mid - 1
        f = w / f"prompt-rag-{i}.txt"
        f.write_text(build_prompt(ctx, q, lo), encoding="utf-8")
        rag_files.append({"file": str(f), "prompt_tokens": count_rag(build_prompt(ctx, q, lo))})

    # Chunk sets, cut from SciFact abstracts and CovidQA articles with the
    # embedding model's own tokenizer (no special tokens counted; at most 254
    # so [CLS] .. [SEP] fits docent's 256-token window untruncated).
    tok = Tokenizer.from_file(str(Path(a.models) / "all-MiniLM-L6-v2-int8" / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    sources = [d["title"] + ". " + d["text"] for d in read_jsonl(data / "scifact" / "corpus.jsonl")]
    sources += [p["context"] for art in covid["data"] for p in art["paragraphs"]]
    encs = {}

    def enc(i):
        if i not in encs:
            encs[i] = tok.encode(sources[i], add_special_tokens=False)
        return encs[i]

    def cut(rng, length):
        while True:
            i = rng.randrange(len(sources))
            e = enc(i)
            if len(e.ids) < length:
                continue
            s = rng.randrange(len(e.ids) - length + 1)
            text = sources[i][e.offsets[s][0] : e.offsets[s + length - 1][1]]
            n = len(tok.encode(text, add_special_tokens=False).ids)
            if n <= 254:
                return text, n

    sets = {"mix": (a.mix_chunks, (32, 254)), "256": (a.long_chunks, (254, 254))}
    summary = {}
    for name, (n, (lo_t, hi_t)) in sets.items():
        rng = random.Random(8 if name == "mix" else 256)
        rows, lens = [], []
        for j in range(n):
            text, got = cut(rng, rng.randint(lo_t, hi_t))
            rows.append({"_id": f"{name}-{j}", "text": text})
            lens.append(got)
        with open(w / f"chunks_{name}.jsonl", "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r) + "\n")
        summary[name] = {"chunks": n, "tokens_mean": statistics.mean(lens), "tokens_min": min(lens), "tokens_max": max(lens)}
    out({"prompt_file": str(w / "prompt.txt"), "prompt_tokens": count(prompt), "prompt_sentences": lo, "rag_prompts": rag_files, "chunk_sets": summary})


# ---------------------------------------------------------------- generate


def cmd_generate(a):
    import llama_cpp
    from llama_cpp import Llama, LogitsProcessorList

    prompt = Path(a.prompt).read_text(encoding="utf-8")
    t = time.perf_counter()
    llm = Llama(
        model_path=a.gguf,
        n_ctx=a.n_ctx,
        n_threads=a.threads,
        n_threads_batch=a.threads,
        seed=0,
        verbose=False,
    )
    load_s = time.perf_counter() - t
    eos = llm.token_eos()
    runs = []
    for r in range(a.warmup + a.runs):
        stamps = []

        def proc(_ids, scores):
            stamps.append(time.perf_counter())
            if a.ignore_eos:
                scores[eos] = -float("inf")
            return scores

        llm.reset()  # no KV reuse between runs: every run reads the whole prompt
        ctx = llm._ctx.ctx
        llama_cpp.llama_perf_context_reset(ctx)
        t0 = time.perf_counter()
        first = last = None
        text = []
        finish = None
        for chunk in llm.create_chat_completion(
            messages=[{"role": "user", "content": prompt}],
            max_tokens=a.max_tokens,
            temperature=0.0,
            top_k=1,
            stream=True,
            logits_processor=LogitsProcessorList([proc]),
        ):
            ch = chunk["choices"][0]
            d = ch.get("delta", {}).get("content")
            if d:
                now = time.perf_counter()
                first = first or now
                last = now
                text.append(d)
            finish = ch.get("finish_reason") or finish
        perf = llama_cpp.llama_perf_context(ctx)
        n_prompt = int(perf.n_p_eval)
        completion = len(stamps) - (1 if finish == "stop" else 0)
        if r < a.warmup:
            continue
        ttft = first - t0
        runs.append(
            {
                "prompt_tokens": n_prompt,
                "completion_tokens": completion,
                "ttft_s": ttft,
                "prompt_tps": n_prompt / ttft,
                "decode_tps": (completion - 1) / (last - first) if completion > 1 and last > first else 0.0,
                "total_s": last - t0,
                "engine_prompt_tps": n_prompt / (perf.t_p_eval_ms / 1000.0) if perf.t_p_eval_ms > 0 else None,
                "engine_decode_tps": perf.n_eval / (perf.t_eval_ms / 1000.0) if perf.t_eval_ms > 0 else None,
                "finish": finish,
            }
        )
    out(
        {
            "engine": "llama.cpp",
            "version": llama_cpp.__version__,
            "system_info": llama_cpp.llama_print_system_info().decode(),
            "threads": a.threads,
            "load_s": load_s,
            "max_tokens": a.max_tokens,
            "sample_text": "".join(text)[:400],
            "runs": runs,
        }
    )


# ---------------------------------------------------------------- embed


def cmd_embed(a):
    import fastembed
    import onnxruntime
    from fastembed import TextEmbedding
    from fastembed.common.model_description import ModelSource, PoolingType

    name = "docent/all-MiniLM-L6-v2-int8"
    TextEmbedding.add_custom_model(
        model=name,
        pooling=PoolingType.MEAN,
        normalization=True,
        sources=ModelSource(hf=name),
        dim=384,
        model_file="model.onnx",
    )
    t = time.perf_counter()
    model = TextEmbedding(
        model_name=name,
        specific_model_path=a.model_dir,
        threads=a.threads,
        local_files_only=True,
    )
    load_s = time.perf_counter() - t
    sets = {}
    for path in a.chunks:
        texts = [r["text"] for r in read_jsonl(path)]
        list(model.embed(texts[:32]))  # warm-up
        secs = []
        for _ in range(a.runs):
            t0 = time.perf_counter()
            vecs = list(model.embed(texts))
            secs.append(time.perf_counter() - t0)
            assert len(vecs) == len(texts) and len(vecs[0]) == 384
        sets[Path(path).stem] = {"chunks": len(texts), "seconds": secs, "chunks_per_s": [len(texts) / s for s in secs]}
    queries = [q["text"] for q in test_queries(a.queries)][: a.queries_n]
    for q in queries[:10]:
        list(model.query_embed(q))
    lat = []
    for q in queries:
        t0 = time.perf_counter()
        list(model.query_embed(q))
        lat.append((time.perf_counter() - t0) * 1000.0)
    out(
        {
            "engine": "fastembed-python",
            "version": fastembed.__version__,
            "onnxruntime": onnxruntime.__version__,
            "threads": a.threads,
            "batching": "fastembed default (batch_size=256, input order)",
            "load_s": load_s,
            "sets": sets,
            "query_ms": lat,
            "query_p50_ms": statistics.median(lat),
        }
    )


# ---------------------------------------------------------------- keyword


def cmd_keyword(a):
    import bm25s
    import Stemmer

    corpus = read_jsonl(Path(a.dataset) / "corpus.jsonl")
    ids = [d["_id"] for d in corpus]
    texts = [(d.get("title", "") + "\n" + d.get("text", "")) for d in corpus]
    queries = test_queries(a.dataset)
    rel = qrels(a.dataset)
    stemmer = Stemmer.Stemmer("english")
    index_s = []
    lat = []
    hits = 0
    for r in range(a.runs):
        t0 = time.perf_counter()
        tokens = bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False)
        retriever = bm25s.BM25()
        retriever.index(tokens, show_progress=False)
        index_s.append(time.perf_counter() - t0)
        for q in queries[:10]:  # warm-up
            qt = bm25s.tokenize(q["text"], stopwords="en", stemmer=stemmer, show_progress=False, return_ids=False)
            retriever.retrieve(qt, k=a.k, show_progress=False, n_threads=1)
        found = 0
        for q in queries:
            t0 = time.perf_counter()
            qt = bm25s.tokenize(q["text"], stopwords="en", stemmer=stemmer, show_progress=False, return_ids=False)
            docs, _scores = retriever.retrieve(qt, k=a.k, show_progress=False, n_threads=1)
            lat.append((time.perf_counter() - t0) * 1000.0)
            got = {ids[int(i)] for i in docs[0]}
            found += 1 if got & rel.get(q["_id"], set()) else 0
        hits = found
    out(
        {
            "engine": "bm25s",
            "version": bm25s.__version__,
            "documents": len(corpus),
            "queries": len(queries),
            "k": a.k,
            "index_s": index_s,
            "query_ms": lat,
            "query_p50_ms": pct(lat, 50),
            "query_p95_ms": pct(lat, 95),
            "success_at_k": hits / max(1, len(queries)),
        }
    )


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("prepare")
    s.add_argument("--models", required=True)
    s.add_argument("--data", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--gguf", required=True)
    s.add_argument("--prompt-tokens", type=int, default=1000)
    s.add_argument("--mix-chunks", type=int, default=512)
    s.add_argument("--long-chunks", type=int, default=256)
    s = sub.add_parser("generate")
    s.add_argument("--gguf", required=True)
    s.add_argument("--prompt", required=True)
    s.add_argument("--max-tokens", type=int, default=128)
    s.add_argument("--threads", type=int, default=2)
    s.add_argument("--n-ctx", type=int, default=2048)
    s.add_argument("--runs", type=int, default=5)
    s.add_argument("--warmup", type=int, default=1)
    s.add_argument("--ignore-eos", action="store_true")
    s = sub.add_parser("embed")
    s.add_argument("--model-dir", required=True)
    s.add_argument("--chunks", nargs="+", required=True)
    s.add_argument("--queries", required=True, help="a BEIR dataset dir (its test queries)")
    s.add_argument("--queries-n", type=int, default=200)
    s.add_argument("--threads", type=int, default=2)
    s.add_argument("--runs", type=int, default=3)
    s = sub.add_parser("keyword")
    s.add_argument("--dataset", required=True)
    s.add_argument("--k", type=int, default=10)
    s.add_argument("--runs", type=int, default=3)
    a = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    {"prepare": cmd_prepare, "generate": cmd_generate, "embed": cmd_embed, "keyword": cmd_keyword}[a.cmd](a)


if __name__ == "__main__":
    main()
