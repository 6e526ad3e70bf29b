#!/usr/bin/env python3
"""Render `docent eval retrieval --json` output as the Markdown tables in
docs/results/. Usage: scripts/eval-table.py REPORT.json [TITLE]"""
import json
import sys


def pct(p):
    return f"{p['p50']:.1f} / {p['p95']:.1f} / {p['p99']:.1f}"


def main():
    r = json.load(open(sys.argv[1]))
    title = sys.argv[2] if len(sys.argv) > 2 else r["dataset"]
    print(f"### {title}\n")
    print(
        f"{r['documents']} documents, {r['chunks']} chunks, "
        f"{r['modes'][0]['queries']} queries; default mode `{r['default_mode']}`; "
        f"reranker `{r.get('reranker') or 'none'}`.\n"
    )
    best_leg = max(m["ndcg_at_10"] for m in r["modes"] if m["mode"] in ("bm25", "dense"))
    print("| mode | nDCG@10 | recall@100 | MRR@10 | p50 ms | p95 ms | p99 ms |")
    print("|---|---|---|---|---|---|---|")
    for m in r["modes"]:
        mark = " (above both legs)" if m["mode"] not in ("bm25", "dense") and m["ndcg_at_10"] > best_leg else ""
        print(
            f"| {m['mode']}{mark} | {m['ndcg_at_10']:.4f} | {m['recall_at_100']:.4f} | {m['mrr_at_10']:.4f} "
            f"| {m['latency_ms_p50']:.1f} | {m['latency_ms_p95']:.1f} | {m['latency_ms_p99']:.1f} |"
        )
    print("\nLatency per stage, ms (p50 / p95 / p99):\n")
    print("| mode | query embedding | bm25 | dense | fusion | hydrate | rerank |")
    print("|---|---|---|---|---|---|---|")
    for m in r["modes"]:
        s = m["stages_ms"]
        print(
            f"| {m['mode']} | {pct(s['query_embedding'])} | {pct(s['bm25'])} | {pct(s['dense'])} "
            f"| {pct(s['fusion'])} | {pct(s['hydrate'])} | {pct(s['rerank'])} |"
        )
    print("\nApproximate vs exact dense search:\n")
    print("| top k | recall | approx p50 ms | exact p50 ms | HNSW m / ef | int8 |")
    print("|---|---|---|---|---|---|")
    for a in r["ann"]:
        print(
            f"| {a['k']} | {a['recall']:.4f} | {a['approx_ms']['p50']:.2f} | {a['exact_ms']['p50']:.2f} "
            f"| {a['hnsw_m']} / {a['hnsw_ef']} | {a['int8']} |"
        )
    print()


if __name__ == "__main__":
    main()
