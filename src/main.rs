//! `docent`: CLI and wiring only. Subcommands: serve, ingest, extract,
//! search, ask, check, reindex, models, eval.

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use docent::app::Components;
use docent::config::Config;
use docent_core::{AccessFilter, DocStatus, Principal, TokenSink};
use docent_ingest::follow::Follower;
use docent_ingest::pipeline::{NewDocument, Submitted};
use docent_ingest::queue::{IngestQueue, QueueConfig};
use docent_retrieve::search::Mode;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Parser, Debug)]
#[command(
    name = "docent",
    version,
    about = "Private knowledge assistant with checked citations"
)]
struct Cli {
    /// Configuration file (TOML). Env vars DOCENT__SECTION__KEY override it.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Log as JSON lines (one object per event, structured fields kept).
    #[arg(long, global = true, env = "DOCENT_JSON_LOGS", value_parser = clap::builder::BoolishValueParser::new())]
    json_logs: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the HTTP API and web chat.
    Serve {
        #[arg(long)]
        port: Option<u16>,
        #[arg(long)]
        host: Option<String>,
    },
    /// Ingest files and directories (.pdf .docx .html .md .txt .csv .eml, images).
    Ingest {
        paths: Vec<PathBuf>,
        #[arg(long)]
        collection: Option<String>,
        /// Comma-separated access labels (default: inherit the
        /// collection's groups).
        #[arg(long)]
        access: Option<String>,
        /// Comma-separated tags, filterable at search time.
        #[arg(long)]
        tags: Option<String>,
        /// The documents' own date (YYYY-MM-DD or RFC 3339) for date filters.
        #[arg(long)]
        date: Option<String>,
        /// Print the summary (counts, throughput, stage times, failures) as
        /// one line of JSON instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Show what docent reads from one file (type, pages, positioned text),
    /// without storing anything.
    Extract {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Hybrid search.
    Search {
        query: String,
        #[arg(short, long, default_value_t = 10)]
        k: usize,
        #[arg(long, default_value = "hybrid")]
        mode: Mode,
        #[arg(long)]
        collection: Option<String>,
        /// Only documents with at least one of these comma-separated tags.
        #[arg(long)]
        tags: Option<String>,
        /// Only documents dated on or after (YYYY-MM-DD or RFC 3339).
        #[arg(long)]
        from: Option<String>,
        /// Only documents dated on or before (YYYY-MM-DD or RFC 3339; a plain
        /// day includes the whole day).
        #[arg(long)]
        to: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Answer a question with citations.
    Ask {
        question: String,
        #[arg(long)]
        collection: Option<String>,
    },
    /// Check that SQL, the vector index and the keyword index agree.
    Check {
        /// Fix disagreements from SQL (remove orphans, index missing chunks).
        #[arg(long)]
        repair: bool,
    },
    /// Rebuild the vector and keyword indexes from SQL.
    Reindex,
    /// Apply the SQL migrations (serve also does at startup) and report the
    /// schema version.
    Migrate,
    /// API keys: create (shown once), list, revoke.
    Keys {
        #[command(subcommand)]
        what: KeysCmd,
    },
    /// The tamper-evident audit trail.
    Audit {
        #[command(subcommand)]
        what: AuditCmd,
    },
    /// Model provenance: file, size, sha256, architecture, quantization, license.
    Models {
        #[arg(long)]
        json: bool,
    },
    /// Evaluate retrieval on a BEIR-format dataset.
    Eval {
        #[command(subcommand)]
        what: EvalCmd,
    },
    /// Benchmarks that print figures.
    Bench {
        #[command(subcommand)]
        what: BenchCmd,
    },
}

#[derive(Subcommand, Debug)]
enum KeysCmd {
    /// Create a key for a user; prints it once (only its hash is stored).
    Create {
        #[arg(long)]
        user: String,
        /// Comma-separated groups the key may read.
        #[arg(long)]
        groups: String,
        /// reader (search, chat), editor (+ upload, delete) or admin.
        #[arg(long, default_value = "reader")]
        role: String,
    },
    /// Every key (never the key itself), revoked ones marked.
    List,
    /// Revoke a key by its id; requests with it are refused from now on.
    Revoke { id: uuid::Uuid },
}

#[derive(Subcommand, Debug)]
enum AuditCmd {
    /// Walk the hash chain; exit 1 naming the first record that was edited
    /// or follows a deleted one.
    Verify,
    /// Write the records as JSON lines (for a SIEM), oldest first.
    Export {
        /// Only records after this sequence number.
        #[arg(long, default_value_t = 0)]
        since: i64,
        /// Write here instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum BenchCmd {
    /// Search latency at scale: builds a collection of CHUNKS chunks from a
    /// BEIR corpus (real embeddings of every document plus seeded variants),
    /// then times BM25, dense and hybrid search over the dataset's queries.
    Search {
        #[arg(long)]
        dataset: PathBuf,
        #[arg(long, default_value_t = 100_000)]
        chunks: u64,
        #[arg(short, long, default_value_t = 10)]
        k: usize,
        #[arg(long, default_value = "bench")]
        collection: String,
        #[arg(long)]
        json: bool,
    },
    /// Latency overhead of the access filter (issue #7): builds a collection
    /// of CHUNKS chunks whose documents carry 1-3 seeded groups from a pool
    /// (plus "all"), then times hybrid, dense and BM25 search on that one
    /// index for a baseline principal holding "all" (matches every chunk)
    /// and for users holding --user-groups groups, checking every hit
    /// against the user's groups. Use a data directory of its own.
    Permissions {
        /// A BEIR directory (corpus.jsonl, queries.jsonl).
        #[arg(long)]
        dataset: PathBuf,
        /// Chunks to build (an existing collection with as many is reused).
        #[arg(long, default_value_t = 100_000)]
        chunks: u64,
        /// Results per search.
        #[arg(short, long, default_value_t = 10)]
        k: usize,
        #[arg(long, default_value = "bench-perm")]
        collection: String,
        /// Groups documents draw their labels from.
        #[arg(long, default_value_t = 200)]
        pool: usize,
        /// Seed of the labels and of the users' groups.
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// One user per entry, holding that many groups (comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "1,50")]
        user_groups: Vec<usize>,
        /// Times the query set runs per mode and principal.
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// Print the report as JSON instead of the tables.
        #[arg(long)]
        json: bool,
        /// Also write the JSON report to this file.
        #[arg(long)]
        json_out: Option<PathBuf>,
        /// Also (re)write this Markdown results file (notes after its marker line are kept).
        #[arg(long)]
        markdown: Option<PathBuf>,
    },
    /// The server under load (issue #8): the real server in this process on
    /// 127.0.0.1, a few COVID-QA articles uploaded, then concurrent
    /// streamed chat sessions over loopback HTTP (TTFT p50/p95, tokens/s,
    /// error rate, peak RSS), then more requests at once than a small
    /// admission capacity allows (200 / clean 503 / other). Stops by itself.
    Load(docent::load::LoadOptions),
    /// `generate`, `embed`, `keyword`: docent's side of the comparison
    /// with llama.cpp, fastembed-python and bm25s (scripts/bench-peers.sh).
    #[command(flatten)]
    Peer(docent::perf::PeerBench),
}

#[derive(Subcommand, Debug)]
enum EvalCmd {
    /// Build a BEIR passage-retrieval collection from a SQuAD-format file
    /// (articles split into passages; a question's relevant passages hold
    /// its gold answer).
    SquadToBeir {
        #[arg(long)]
        squad: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// Minimum passage length in characters (split at line breaks).
        #[arg(long, default_value_t = 600)]
        min_chars: usize,
    },
    /// Calibrate the abstention threshold on a SQuAD-format file: half the
    /// articles indexed, half held out.
    Abstention {
        #[arg(long)]
        dataset: PathBuf,
        #[arg(long, default_value = "squad-half")]
        collection: String,
        #[arg(long, default_value_t = 600)]
        max_questions: usize,
    },
    /// Answer quality on a SQuAD-format file (COVID-QA) with the configured
    /// model: citation precision, token F1, abstention rates, time to first
    /// token and decode speed. Half the articles are indexed, half held out.
    Answers {
        #[arg(long)]
        dataset: PathBuf,
        #[arg(long, default_value = "squad-half")]
        collection: String,
        /// Questions per class (answerable, article held out), evenly spaced.
        #[arg(long, default_value_t = 40)]
        questions: usize,
        #[arg(long)]
        json: bool,
        /// Skip generation: abstention rates and the checker probe only.
        #[arg(long)]
        no_generate: bool,
    },
    Retrieval {
        #[arg(long)]
        dataset: PathBuf,
        /// Collection to load the corpus into (default: beir-<dir name>).
        #[arg(long)]
        collection: Option<String>,
        #[arg(long)]
        json: bool,
        /// Also write each mode's ranking as a TREC run file, PATH.<mode>.
        #[arg(long, value_name = "PATH")]
        run_file: Option<PathBuf>,
        /// Skip the reranked mode (it runs when models.reranker_dir holds a model).
        #[arg(long)]
        no_rerank: bool,
        /// Ask at most this many of the judged queries (evenly spaced).
        #[arg(long)]
        max_queries: Option<usize>,
    },
}

fn main() -> anyhow::Result<()> {
    check_cpu();
    let cli = Cli::parse();
    let cfg = Config::load(cli.config.as_deref())?;
    init_tracing(cli.json_logs);
    // Model compute threads: must be set before any thread pool starts.
    let threads = cfg.compute_threads();
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(run(cli.cmd, cfg))
}

/// The default build targets x86-64-v3 (.cargo/config.toml); on an older
/// CPU it would die on an illegal instruction somewhere in a model. Say so
/// up front instead, naming the portable build.
fn check_cpu() {
    #[cfg(all(target_arch = "x86_64", target_feature = "avx2"))]
    if !(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")) {
        eprintln!(
            "docent: this binary was built for x86-64-v3 (AVX2, FMA) and this CPU lacks them; \
             build the portable one: RUSTFLAGS=\"-C target-cpu=x86-64\" cargo build --release (README, Build target)"
        );
        std::process::exit(2);
    }
}

fn init_tracing(json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("DOCENT_LOG").unwrap_or_else(|_| {
        EnvFilter::new(
            "info,mistralrs_core=error,mistralrs_quant=warn,qdrant_edge=error,ort=warn,tantivy=warn,sqlx=warn,lopdf=error",
        )
    });
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        b.json().init();
    } else {
        b.init();
    }
}

async fn run(cmd: Cmd, mut cfg: Config) -> anyhow::Result<()> {
    match cmd {
        Cmd::Serve { port, host } => {
            if let Some(p) = port {
                cfg.server.port = p;
            }
            if let Some(h) = host {
                cfg.server.host = h;
            }
            serve(cfg).await
        }
        Cmd::Ingest {
            paths,
            collection,
            access,
            tags,
            date,
            json,
        } => {
            ingest(
                cfg,
                paths,
                collection,
                access,
                docent_core::split_list(tags.as_deref()),
                date,
                json,
            )
            .await
        }
        Cmd::Search {
            query,
            k,
            mode,
            collection,
            tags,
            from,
            to,
            json,
        } => {
            let mut filter = filter_for(&cfg, collection);
            filter.tags = docent_core::split_list(tags.as_deref());
            filter.date_from = from.as_deref().map(|d| parse_bound(d, false)).transpose()?;
            filter.date_to = to.as_deref().map(|d| parse_bound(d, true)).transpose()?;
            search(cfg, &query, k, mode, filter, json).await
        }
        Cmd::Ask { question, collection } => ask(cfg, &question, collection).await,
        Cmd::Audit { what } => audit_cmd(&cfg, what).await,
        Cmd::Keys { what } => keys_cmd(&cfg, what).await,
        Cmd::Migrate => {
            let url = cfg.database_url();
            let store = open_store(&cfg).await?;
            let applied = store.applied_migrations().await?;
            println!(
                "{}: schema at migration {} ({} applied)",
                docent::config::redact_url(&url),
                applied
                    .last()
                    .map(|(v, d)| format!("{v} {d}"))
                    .unwrap_or_else(|| "none".to_owned()),
                applied.len()
            );
            store.close().await;
            Ok(())
        }
        Cmd::Extract { file, json } => extract_file(&cfg, &file, json),
        Cmd::Models { json } => {
            let list = model_provenance(&cfg)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                for m in &list {
                    println!("{}", m["role"].as_str().unwrap_or(""));
                    for (k, v) in m.as_object().into_iter().flatten() {
                        if k != "role" {
                            println!(
                                "  {k:<15} {}",
                                v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string())
                            );
                        }
                    }
                }
            }
            Ok(())
        }
        Cmd::Check { repair } => {
            if repair {
                let c = Components::build(&cfg).await?;
                let r = c.repair().await?;
                println!("{}", serde_json::to_string(&r)?);
                drop(c);
            }
            check(cfg).await
        }
        Cmd::Reindex => {
            let c = Components::build(&cfg).await?;
            let bar = indicatif::ProgressBar::new(0);
            let n = c
                .reindex(&|done, total| {
                    bar.set_length(total as u64);
                    bar.set_position(done as u64);
                })
                .await?;
            bar.finish_and_clear();
            println!("reindexed {n} chunks");
            // Release the index directories before `check` opens them again.
            drop(c);
            check(cfg).await
        }
        Cmd::Bench { what } => bench(cfg, what).await,
        Cmd::Eval {
            what: EvalCmd::SquadToBeir { squad, out, min_chars },
        } => {
            let b = docent::eval::squad_to_beir(&squad, &out, min_chars)?;
            println!(
                "{}: {} passages, {} queries, {} judgments",
                out.display(),
                b.passages,
                b.queries,
                b.judgments
            );
            Ok(())
        }
        Cmd::Eval {
            what:
                EvalCmd::Abstention {
                    dataset,
                    collection,
                    max_questions,
                },
        } => {
            let c = Components::build(&cfg).await?;
            let reranker = if cfg.reranker_dir().join("model.onnx").is_file() {
                Some(c.reranker().await?)
            } else {
                None
            };
            let r = docent::eval::abstention(&c, reranker, &dataset, &collection, max_questions).await?;
            println!("{}", serde_json::to_string_pretty(&r)?);
            Ok(())
        }
        Cmd::Eval {
            what:
                EvalCmd::Answers {
                    dataset,
                    collection,
                    questions,
                    json,
                    no_generate,
                },
        } => {
            let c = Components::build(&cfg).await?;
            let chat = c.chat_model().await?;
            let support = c.support_model().await?;
            let show = !json && std::io::stderr().is_terminal();
            let r = docent::eval::answers(
                &c,
                chat.as_ref(),
                support,
                &dataset,
                &collection,
                docent::eval::AnswersOptions {
                    per_class: questions,
                    generate: !no_generate,
                    show_progress: show,
                },
            )
            .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                print_answers(&r);
            }
            Ok(())
        }
        Cmd::Eval {
            what:
                EvalCmd::Retrieval {
                    dataset,
                    collection,
                    json,
                    run_file,
                    no_rerank,
                    max_queries,
                },
        } => {
            let c = Components::build(&cfg).await?;
            let reranker = if no_rerank || !cfg.reranker_dir().join("model.onnx").is_file() {
                c.searcher.reranker().cloned()
            } else {
                Some(c.reranker().await?)
            };
            let name = dataset
                .file_name()
                .and_then(|s| s.to_str())
                .unwrap_or("dataset")
                .to_owned();
            let collection = collection.unwrap_or_else(|| format!("beir-{name}"));
            let report = docent::eval::evaluate(
                &c,
                &dataset,
                &collection,
                !json,
                run_file.as_deref(),
                reranker,
                max_queries,
            )
            .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!(
                    "dataset {}  documents {}  chunks {}{}",
                    report.dataset,
                    report.documents,
                    report.chunks,
                    report
                        .ingest_seconds
                        .map(|s| format!("  ingest {s:.1}s"))
                        .unwrap_or_default()
                );
                println!(
                    "default mode {}  reranker {}",
                    report.default_mode,
                    report.reranker.as_deref().unwrap_or("none")
                );
                println!(
                    "{:<18} {:>8} {:>10} {:>8} {:>8} {:>8} {:>8}",
                    "mode", "nDCG@10", "recall@100", "MRR@10", "p50 ms", "p95 ms", "p99 ms"
                );
                for m in &report.modes {
                    println!(
                        "{:<18} {:>8.4} {:>10.4} {:>8.4} {:>8.1} {:>8.1} {:>8.1}",
                        m.mode,
                        m.ndcg_at_10,
                        m.recall_at_100,
                        m.mrr_at_10,
                        m.latency_ms_p50,
                        m.latency_ms_p95,
                        m.latency_ms_p99
                    );
                }
                println!("\nlatency per stage, ms (p50 / p95 / p99)");
                println!(
                    "{:<18} {:>17} {:>17} {:>17} {:>17} {:>17} {:>17}",
                    "mode", "query embedding", "bm25", "dense", "fusion", "hydrate", "rerank"
                );
                let f = |p: &docent::eval::Percentiles| format!("{:.1}/{:.1}/{:.1}", p.p50, p.p95, p.p99);
                for m in &report.modes {
                    let s = &m.stages_ms;
                    println!(
                        "{:<18} {:>17} {:>17} {:>17} {:>17} {:>17} {:>17}",
                        m.mode,
                        f(&s.query_embedding),
                        f(&s.bm25),
                        f(&s.dense),
                        f(&s.fusion),
                        f(&s.hydrate),
                        f(&s.rerank)
                    );
                }
                for a in &report.ann {
                    println!(
                        "\napproximate vs exact dense search, top {}: recall {:.4}  (HNSW m={} ef={}{}; p50 {:.2} ms vs exact {:.2} ms)",
                        a.k,
                        a.recall,
                        a.hnsw_m,
                        a.hnsw_ef,
                        if a.int8 { ", int8 + rescoring" } else { "" },
                        a.approx_ms.p50,
                        a.exact_ms.p50
                    );
                }
            }
            Ok(())
        }
    }
}

async fn bench(cfg: Config, what: BenchCmd) -> anyhow::Result<()> {
    let (dataset, chunks, k, collection, json) = match what {
        BenchCmd::Search {
            dataset,
            chunks,
            k,
            collection,
            json,
        } => (dataset, chunks, k, collection, json),
        BenchCmd::Permissions {
            dataset,
            chunks,
            k,
            collection,
            pool,
            seed,
            user_groups,
            rounds,
            json,
            json_out,
            markdown,
        } => {
            let c = Components::build(&cfg).await?;
            let opts = docent::bench::PermissionOptions {
                collection,
                chunks,
                k,
                pool,
                seed,
                user_groups,
                rounds,
                show: !json,
            };
            let r = docent::bench::permission_bench(&c, &dataset, &opts).await?;
            let body = serde_json::to_string_pretty(&r)?;
            if let Some(path) = json_out {
                std::fs::write(&path, &body).with_context(|| format!("writing {}", path.display()))?;
            }
            if let Some(path) = markdown {
                let previous = std::fs::read_to_string(&path).ok();
                let md = docent::bench::permission_markdown(&r, previous.as_deref());
                std::fs::write(&path, md).with_context(|| format!("writing {}", path.display()))?;
            }
            if json {
                println!("{body}");
            } else {
                print!("{}", docent::bench::permission_table(&r));
            }
            return Ok(());
        }
        BenchCmd::Load(opts) => return docent::load::command(&cfg, &opts).await,
        BenchCmd::Peer(what) => {
            let report = docent::perf::run(&cfg, what).await?;
            println!("{}", serde_json::to_string(&report)?);
            return Ok(());
        }
    };
    let c = Components::build(&cfg).await?;
    let r = docent::bench::search_bench(&c, &dataset, &collection, chunks, k, !json).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!(
        "chunks {}  base documents {}  queries {}  k {}{}",
        r.chunks,
        r.base_documents,
        r.queries,
        r.k,
        r.build_seconds
            .map(|b| format!(
                "  built in {b:.0} s (embedding {:.0} s)",
                r.embed_seconds.unwrap_or(0.0)
            ))
            .unwrap_or_default()
    );
    println!(
        "{:<28} {:>8} {:>8} {:>8} {:>8}",
        "search", "p50 ms", "p95 ms", "p99 ms", "mean ms"
    );
    for l in std::iter::once(&r.query_embedding).chain(&r.latency) {
        println!(
            "{:<28} {:>8.2} {:>8.2} {:>8.2} {:>8.2}",
            l.mode, l.p50_ms, l.p95_ms, l.p99_ms, l.mean_ms
        );
    }
    println!(
        "disk: vectors {:.1} MiB, bm25 {:.1} MiB, sql {:.1} MiB; resident {:.0} MiB (peak {:.0} MiB)",
        mib(r.disk_bytes.vectors),
        mib(r.disk_bytes.bm25),
        mib(r.disk_bytes.sql),
        mib(r.rss_bytes),
        mib(r.peak_rss_bytes)
    );
    Ok(())
}

async fn serve(cfg: Config) -> anyhow::Result<()> {
    // Sign-in keys first: a wrong JWKS file or URL stops startup at once.
    let oidc = match cfg.oidc_settings() {
        Some(s) => Some(Arc::new(
            docent_web::oidc::Verifier::load(s)
                .await
                .context("loading the OIDC issuer's signing keys (access.oidc)")?,
        )),
        None => None,
    };
    let c = Components::build(&cfg).await?;
    let chat = c.chat_model().await?;
    let support = c.support_model().await?;
    let evidence = c.evidence_reranker().await?;
    let ingestor = Arc::clone(&c.ingestor);
    // Uploads wait in SQL for any replica's workers.
    ingestor.set_claim_on_submit(false);
    let metrics = Arc::new(docent_web::metrics::Metrics::new().context("creating the metrics registry")?);
    ingestor.set_observer(metrics.clone());
    // Changes logged from here on are applied by the follower, even those
    // the repair below already covers (applying is idempotent).
    let log_start = c.store.last_change_seq().await.context("reading the change log")?;
    // A crash can leave index entries SQL does not know, or miss some.
    c.repair().await.context("repairing the indexes from SQL")?;
    let follower = Arc::new(Follower::new(Arc::clone(&ingestor), log_start));
    let following = Arc::clone(&follower).spawn(std::time::Duration::from_millis(cfg.storage.follow_interval_ms));
    // Jobs this replica's previous process held are dead: release them now
    // rather than waiting for their leases; documents without a job get one.
    let released = c.store.release_claims_of(ingestor.replica()).await?;
    let created = ingestor.ensure_jobs().await?;
    if released + created as u64 > 0 {
        tracing::info!(released, created, "resuming unfinished ingests");
    }
    let queue = Arc::new(IngestQueue::start(
        Arc::clone(&ingestor),
        QueueConfig {
            workers: cfg.ingest.workers,
            capacity: cfg.ingest.queue_capacity,
            poll: std::time::Duration::from_millis(cfg.ingest.poll_ms),
        },
    ));
    let listener = std::net::TcpListener::bind((cfg.server.host.as_str(), cfg.server.port))
        .with_context(|| format!("binding {}:{}", cfg.server.host, cfg.server.port))?;
    let addr = listener.local_addr()?;
    let state = c.web_state(docent::app::WebParts {
        chat,
        support,
        evidence,
        queue: Arc::clone(&queue),
        follower: Arc::clone(&follower),
        metrics,
        oidc,
        provenance: {
            let cfg = cfg.clone();
            docent_web::ModelProvenance::new(move || model_provenance(&cfg).map_err(|e| format!("{e:#}")))
        },
        admission: c.admission_config(),
    });
    let grace = cfg.server.shutdown_grace_secs;
    let server = docent_web::server(listener, state, cfg.server.workers, grace)?;
    let handle = server.handle();
    // Machine-readable for scripts and tests that bind port 0.
    println!("docent listening on http://{addr}");
    std::io::stdout().flush()?;
    tracing::info!(%addr, replica = ingestor.replica(), shared_vectors = c.shared_vectors, "serving");
    let mut server = tokio::spawn(server);
    tokio::select! {
        res = &mut server => {
            res.context("server task")??;
        }
        sig = shutdown_signal() => {
            tracing::info!(signal = sig, grace_secs = grace, "shutting down: readiness fails, the listener stops, in-flight work drains");
            // Readiness fails from here (the queue reports stopping), new
            // uploads get 503; then the listener stops and in-flight
            // requests get the grace period, while ingest jobs drain.
            let grace = std::time::Duration::from_secs(grace);
            let (drained, ()) = tokio::join!(queue.shutdown(grace), handle.stop(true));
            tracing::info!(finished = drained.finished, handed_back = drained.handed_back, "ingest drained");
            let _ = server.await;
        }
    }
    following.stop().await;
    // Flush the indexes: a clean stop leaves nothing for the next repair.
    // (No optimization here: it can take minutes on a large index, past an
    // orchestrator's kill deadline; ingest runs it after every batch.)
    let vectors = Arc::clone(&c.vectors);
    match tokio::task::spawn_blocking(move || vectors.flush()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "flushing the vector index failed"),
        Err(e) => tracing::warn!(error = %e, "flushing the vector index panicked"),
    }
    c.store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// The SQL store alone (migrated), for the commands that need nothing else.
async fn open_store(cfg: &Config) -> anyhow::Result<docent_store::Store> {
    let url = cfg.database_url();
    docent_store::Store::connect(&url)
        .await
        .with_context(|| format!("opening {}", docent::config::redact_url(&url)))
}

async fn keys_cmd(cfg: &Config, what: KeysCmd) -> anyhow::Result<()> {
    let store = open_store(cfg).await?;
    // Key changes are audited, as the operator running the CLI.
    let actor = format!("cli:{}", std::env::var("USER").unwrap_or_else(|_| "unknown".to_owned()));
    match what {
        KeysCmd::Create { user, groups, role } => {
            let role = docent_core::AccessRole::parse(&role)
                .with_context(|| format!("--role must be reader, editor or admin, not {role:?}"))?;
            let groups = docent_core::split_list(Some(&groups));
            if user.trim().is_empty() || groups.is_empty() {
                bail!("--user and --groups must not be empty");
            }
            let (key, plaintext) = store.create_api_key(user.trim(), &groups, role).await?;
            store
                .audit(
                    &actor,
                    "key.create",
                    &serde_json::json!({"key_id": key.id, "user": key.user, "groups": key.groups, "role": role}),
                )
                .await?;
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({
                    "id": key.id, "user": key.user, "groups": key.groups, "role": key.role, "key": plaintext,
                }))?
            );
            eprintln!("This key is shown once; only its hash is stored.");
        }
        KeysCmd::List => {
            println!("{}", serde_json::to_string_pretty(&store.list_api_keys().await?)?);
        }
        KeysCmd::Revoke { id } => {
            if !store.revoke_api_key(id).await? {
                bail!("no live key with id {id}");
            }
            store
                .audit(&actor, "key.revoke", &serde_json::json!({"key_id": id}))
                .await?;
            println!("revoked {id}");
        }
    }
    store.close().await;
    Ok(())
}

async fn audit_cmd(cfg: &Config, what: AuditCmd) -> anyhow::Result<()> {
    let store = open_store(cfg).await?;
    match what {
        AuditCmd::Verify => {
            let v = store.verify_audit().await?;
            println!("{}", serde_json::to_string_pretty(&v)?);
            store.close().await;
            if !v.ok {
                bail!(
                    "audit trail broken at record {}: {}",
                    v.first_bad_seq.unwrap_or_default(),
                    v.problem.unwrap_or_default()
                );
            }
        }
        AuditCmd::Export { since, out } => {
            let mut w: Box<dyn Write> = match &out {
                Some(p) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
                )),
                None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            };
            let mut after = since;
            let mut n = 0usize;
            loop {
                let page = store.audit_records(after, 1000).await?;
                let Some(last) = page.last() else { break };
                after = last.seq;
                for r in &page {
                    // The detail as an object, and the exact hashed text.
                    let detail: serde_json::Value =
                        serde_json::from_str(&r.detail).unwrap_or_else(|_| serde_json::Value::String(r.detail.clone()));
                    let line = serde_json::json!({
                        "seq": r.seq, "at": r.at, "actor": r.actor, "action": r.action,
                        "detail": detail, "detail_raw": r.detail, "prev_hash": r.prev_hash, "hash": r.hash,
                    });
                    writeln!(w, "{line}")?;
                    n += 1;
                }
            }
            w.flush()?;
            drop(w);
            store.close().await;
            if let Some(p) = out {
                eprintln!("{n} audit records written to {}", p.display());
            }
        }
    }
    Ok(())
}

/// SIGTERM (orchestrators) or SIGINT (Ctrl-C); returns which.
async fn shutdown_signal() -> &'static str {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = term => "SIGTERM",
        r = tokio::signal::ctrl_c() => {
            if let Err(e) = r {
                tracing::warn!(error = %e, "cannot listen for SIGINT");
                std::future::pending::<()>().await;
            }
            "SIGINT"
        }
    }
}

fn collect_files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut stack = vec![p.clone()];
            while let Some(dir) = stack.pop() {
                let mut entries: Vec<_> = std::fs::read_dir(&dir)
                    .with_context(|| format!("reading {}", dir.display()))?
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .collect();
                entries.sort();
                for e in entries {
                    if e.is_dir() {
                        stack.push(e);
                    } else if is_supported(&e) {
                        out.push(e);
                    }
                }
            }
        } else if p.is_file() {
            out.push(p.clone());
        } else {
            bail!("{} does not exist", p.display());
        }
    }
    Ok(out)
}

fn extract_file(cfg: &Config, file: &Path, json: bool) -> anyhow::Result<()> {
    use docent_ingest::extract;
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let limits = cfg.extract_limits();
    let result = extract::detect(&bytes, name)
        .and_then(|kind| extract::extract_bounded(kind, Arc::new(bytes), limits).map(|e| (kind, e)));
    let (kind, ex) = match result {
        Ok(r) => r,
        Err(e) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"error": {"code": e.code(), "message": e.to_string()}})
                );
            } else {
                println!("{}: [{}] {e}", file.display(), e.code());
            }
            std::process::exit(1);
        }
    };
    if json {
        let blocks: Vec<serde_json::Value> = ex
            .blocks
            .iter()
            .map(|b| {
                serde_json::json!({
                    "page": b.page, "heading_path": b.heading_path,
                    "table": b.kind == extract::BlockKind::Table, "text": b.text,
                })
            })
            .collect();
        let attachments: Vec<serde_json::Value> = ex
            .attachments
            .iter()
            .map(|a| serde_json::json!({"file_name": a.file_name, "bytes": a.bytes.len()}))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "kind": kind.as_str(), "title": ex.title, "pages": ex.pages, "ocr_pages": ex.ocr_pages,
                "pages_needing_ocr": ex.pages_needing_ocr, "blocks": blocks, "attachments": attachments,
            }))?
        );
        return Ok(());
    }
    println!("kind: {}", kind.as_str());
    if let Some(t) = &ex.title {
        println!("title: {t}");
    }
    if let Some(p) = ex.pages {
        println!("pages: {p}");
    }
    if !ex.ocr_pages.is_empty() {
        println!("read by OCR: pages {:?}", ex.ocr_pages);
    }
    if !ex.pages_needing_ocr.is_empty() {
        println!("needs OCR (not read): pages {:?}", ex.pages_needing_ocr);
    }
    for b in &ex.blocks {
        let mut pos = Vec::new();
        if let Some(p) = b.page {
            pos.push(format!("page {p}"));
        }
        if !b.heading_path.is_empty() {
            pos.push(b.heading_path.join(" > "));
        }
        if b.kind == extract::BlockKind::Table {
            pos.push("table".to_owned());
        }
        println!("--- {}", pos.join(" | "));
        println!("{}", b.text.trim_end());
    }
    for a in &ex.attachments {
        println!("attachment: {} ({} bytes)", a.file_name, a.bytes.len());
    }
    Ok(())
}

fn is_supported(p: &Path) -> bool {
    matches!(
        p.extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some(
            "pdf"
                | "md"
                | "markdown"
                | "txt"
                | "docx"
                | "html"
                | "htm"
                | "csv"
                | "tsv"
                | "eml"
                | "png"
                | "jpg"
                | "jpeg"
                | "tif"
                | "tiff"
        )
    )
}

async fn ingest(
    cfg: Config,
    paths: Vec<PathBuf>,
    collection: Option<String>,
    access: Option<String>,
    tags: Vec<String>,
    date: Option<String>,
    json: bool,
) -> anyhow::Result<()> {
    if let Some(d) = date.as_deref() {
        parse_bound(d, false)?;
    }
    let c = Components::build(&cfg).await?;
    // The CLI runs what it submits: its jobs are claimed at submission and
    // kept by a heartbeat, so no server replica on the database takes them.
    let heartbeat = docent_ingest::queue::spawn_heartbeat(Arc::clone(&c.ingestor));
    let paths: Vec<PathBuf> = paths
        .iter()
        .map(|p| std::fs::canonicalize(p).with_context(|| format!("{} does not exist", p.display())))
        .collect::<anyhow::Result<_>>()?;
    let files = collect_files(&paths)?;
    let collection = collection.unwrap_or_else(|| cfg.access.default_collection.clone());
    let access: Vec<String> = access
        .map(|a| {
            a.split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        })
        // None named: the documents inherit the collection's groups (the
        // default labels when the collection has none configured).
        .unwrap_or_default();
    let bar = if json {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(files.len() as u64)
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} [{bar:40}] {pos}/{len} {wide_msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let (mut ready, mut dup, mut failed) = (0usize, 0usize, 0usize);
    let (mut pages, mut chunks, mut bytes_total) = (0u64, 0u64, 0u64);
    let mut failures = Vec::new();
    let stages = std::sync::Arc::new(std::sync::Mutex::new(StageClock::default()));
    // (file, seconds from read to outcome, pages, outcome) per file.
    let mut per_file: Vec<(String, f64, u32, &'static str)> = Vec::with_capacity(files.len());
    let started = std::time::Instant::now();
    for f in &files {
        let file_started = std::time::Instant::now();
        let (mut file_pages, mut outcome) = (0u32, "failed");
        bar.set_message(f.display().to_string());
        let bytes = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
        bytes_total += bytes.len() as u64;
        let name = f.file_name().and_then(|n| n.to_str()).unwrap_or("file").to_owned();
        let sub = c
            .ingestor
            .submit(NewDocument {
                bytes,
                file_name: name,
                source: f.display().to_string(),
                collection: collection.clone(),
                access: access.clone(),
                title: None,
                tags: tags.clone(),
                date: date.clone(),
            })
            .await;
        match sub {
            Ok(Submitted::Duplicate { .. }) => {
                dup += 1;
                outcome = "unchanged";
            }
            Ok(Submitted::Queued { doc, job }) => {
                let b = bar.clone();
                let name = f.display().to_string();
                let clock = std::sync::Arc::clone(&stages);
                let progress = move |doc: uuid::Uuid, stage: DocStatus, _: f32| {
                    b.set_message(format!("{name}: {}", stage.as_str()));
                    if let Ok(mut c) = clock.lock() {
                        c.enter(doc, stage);
                    }
                };
                match c.ingestor.run(job.id, doc.id, &progress).await {
                    Ok(d) => {
                        ready += 1;
                        file_pages = d.pages.unwrap_or(0);
                        outcome = "ingested";
                        pages += u64::from(file_pages);
                        chunks += u64::from(d.chunk_count);
                    }
                    Err(e) => {
                        failed += 1;
                        failures.push((f.display().to_string(), e.code(), e.to_string()));
                    }
                }
            }
            Err(e) => {
                failed += 1;
                failures.push((f.display().to_string(), e.code(), e.to_string()));
            }
        }
        per_file.push((
            f.display().to_string(),
            file_started.elapsed().as_secs_f64(),
            file_pages,
            outcome,
        ));
        bar.inc(1);
    }
    bar.finish_and_clear();
    heartbeat.abort();
    per_file.sort_by(|a, b| b.1.total_cmp(&a.1));
    let elapsed = started.elapsed().as_secs_f64();
    // Files that were ingested from these directories before and are gone now.
    let mut removed = 0usize;
    let dirs: Vec<&PathBuf> = paths.iter().filter(|p| p.is_dir()).collect();
    if !dirs.is_empty() {
        for d in c.store.documents_in_collection(&collection).await? {
            // Attachments have no file of their own; they go with their carrier.
            if d.parent_id.is_some() {
                continue;
            }
            let src = Path::new(&d.source);
            if dirs.iter().any(|dir| src.starts_with(dir)) && !src.exists() {
                c.ingestor.delete(d.id).await?;
                removed += 1;
            }
        }
    }
    let per_s = |n: f64| if elapsed > 0.0 { n / elapsed } else { 0.0 };
    if json {
        let stage_seconds = stages.lock().map(|c| c.totals.clone()).unwrap_or_default();
        let total: f64 = stage_seconds.values().sum();
        let stage_share: std::collections::BTreeMap<&str, f64> = stage_seconds
            .iter()
            .map(|(s, secs)| (*s, if total > 0.0 { secs / total } else { 0.0 }))
            .collect();
        let mut by_class: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
        for (_, code, _) in &failures {
            *by_class.entry(code).or_default() += 1;
        }
        let summary = serde_json::json!({
            "files": files.len(),
            "ingested": ready,
            "unchanged": dup,
            "removed": removed,
            "failed": failed,
            "pages": pages,
            "chunks": chunks,
            "bytes": bytes_total,
            "elapsed_s": elapsed,
            "pages_per_s": per_s(pages as f64),
            "chunks_per_s": per_s(chunks as f64),
            "files_per_s": per_s((ready + failed) as f64),
            "stage_seconds": stage_seconds,
            "stage_share": stage_share,
            "failed_by_class": by_class,
            // Where the time went, file by file: the ten slowest.
            "slowest_files": per_file
                .iter()
                .take(10)
                .map(|(f, secs, pages, outcome)| {
                    serde_json::json!({"file": f, "seconds": secs, "pages": pages, "outcome": outcome})
                })
                .collect::<Vec<_>>(),
            "failures": failures
                .iter()
                .map(|(f, code, msg)| serde_json::json!({"file": f, "code": code, "message": msg}))
                .collect::<Vec<_>>(),
        });
        println!("{summary}");
        return Ok(());
    }
    println!("{:<12} {:>8}", "files", files.len());
    println!("{:<12} {:>8}", "ingested", ready);
    println!("{:<12} {:>8}", "unchanged", dup);
    println!("{:<12} {:>8}", "removed", removed);
    println!("{:<12} {:>8}", "failed", failed);
    println!("{:<12} {:>8}", "pages", pages);
    println!("{:<12} {:>8}", "chunks", chunks);
    println!("{:<12} {:>8.1} MiB", "read", bytes_total as f64 / (1024.0 * 1024.0));
    println!("{:<12} {:>8.1} s", "elapsed", elapsed);
    println!(
        "{:<12} {:>8.2} pages/s, {:.2} chunks/s, {:.2} files/s (end to end)",
        "throughput",
        per_s(pages as f64),
        per_s(chunks as f64),
        per_s((ready + failed) as f64)
    );
    if let Ok(clock) = stages.lock() {
        let total: f64 = clock.totals.values().sum();
        if total > 0.0 {
            let shares: Vec<String> = clock
                .totals
                .iter()
                .map(|(stage, secs)| format!("{stage} {secs:.1} s ({:.0}%)", 100.0 * secs / total))
                .collect();
            println!("{:<12} {}", "stage time", shares.join(", "));
        }
    }
    if !failures.is_empty() {
        let mut by_class: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
        for (_, code, _) in &failures {
            *by_class.entry(code).or_default() += 1;
        }
        let classes: Vec<String> = by_class.iter().map(|(c, n)| format!("{c} {n}")).collect();
        println!("{:<12} {}", "by class", classes.join(", "));
        println!("failures:");
        for (f, code, msg) in &failures {
            println!("  {f}: [{code}] {msg}");
        }
    }
    Ok(())
}

/// Time each document spends in each ingest stage, summed.
#[derive(Default)]
struct StageClock {
    current: std::collections::HashMap<uuid::Uuid, (DocStatus, std::time::Instant)>,
    totals: std::collections::BTreeMap<&'static str, f64>,
}

impl StageClock {
    fn enter(&mut self, doc: uuid::Uuid, stage: DocStatus) {
        let now = std::time::Instant::now();
        if let Some((prev, since)) = self.current.get(&doc).copied() {
            if prev == stage {
                return;
            }
            *self.totals.entry(prev.as_str()).or_default() += now.duration_since(since).as_secs_f64();
        }
        if stage.is_terminal() {
            self.current.remove(&doc);
        } else {
            self.current.insert(doc, (stage, now));
        }
    }
}

/// A date bound in unix seconds (see `docent_core::parse_date_bound`).
fn parse_bound(s: &str, upper: bool) -> anyhow::Result<i64> {
    docent_core::parse_date_bound(s, upper).with_context(|| format!("date {s:?} is neither YYYY-MM-DD nor RFC 3339"))
}

fn filter_for(cfg: &Config, collection: Option<String>) -> AccessFilter {
    let mut f = AccessFilter::for_principal(&Principal {
        role: docent_core::AccessRole::Reader,
        user: "cli".into(),
        groups: cfg.access.default_labels.clone(),
    });
    f.collections = collection.into_iter().collect();
    f
}

async fn search(
    cfg: Config,
    query: &str,
    k: usize,
    mode: Mode,
    filter: AccessFilter,
    json: bool,
) -> anyhow::Result<()> {
    let c = Components::build(&cfg).await?;
    let out = c.searcher.search(query, &filter, k, mode).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&out.hits)?);
        return Ok(());
    }
    for (i, h) in out.hits.iter().enumerate() {
        let legs = match (h.legs.bm25_rank, h.legs.dense_rank) {
            (Some(b), Some(d)) => format!("bm25#{b} dense#{d}"),
            (Some(b), None) => format!("bm25#{b}"),
            (None, Some(d)) => format!("dense#{d}"),
            (None, None) => String::new(),
        };
        let page = h.chunk.page.map(|p| format!(" p.{p}")).unwrap_or_default();
        let snippet: String = h.chunk.text.chars().take(160).collect();
        println!("{:>2}. {:.4}  {}{}  [{}]", i + 1, h.score, h.document.title, page, legs);
        println!("    {}", snippet.replace('\n', " "));
    }
    if out.hits.is_empty() {
        println!("no results");
    }
    Ok(())
}

fn print_answers(r: &docent::eval::AnswersReport) {
    println!(
        "{} with {} (support: {})",
        r.dataset,
        r.model,
        r.support_model.as_deref().unwrap_or("lexical")
    );
    println!(
        "abstention (floor {:.2}): answerable {:.1}% abstained ({} q), article absent {:.1}% abstained ({} q)",
        r.min_evidence,
        r.answerable_abstained * 100.0,
        r.answerable,
        r.unanswerable_abstained * 100.0,
        r.unanswerable
    );
    println!(
        "answered {}: gold span in the prompt {:.1}%, token F1 {:.3}",
        r.answered,
        r.gold_in_prompt * 100.0,
        r.token_f1
    );
    println!("citations        count  precision  cited  correctly cited  unsupported sentences");
    for (name, c) in [
        ("model, raw", &r.citations_raw),
        ("checked, lexical", &r.citations_lexical),
        ("checked", &r.citations_checked),
    ] {
        println!(
            "{name:<16} {:>5}  {:>9.3}  {:>5.3}  {:>15.3}  {:>21.3}",
            c.citations, c.precision, c.answers_cited, c.answers_correctly_cited, c.unsupported_sentences
        );
    }
    println!("checker alone (claim = question + gold answer)  cases  keeps right  drops wrong  attaches right  attaches wrong");
    for (name, p) in [("word overlap", &r.checker_lexical), ("configured", &r.checker_checked)] {
        println!(
            "{name:<47} {:>5}  {:>11.3}  {:>11.3}  {:>14.3}  {:>14.3}",
            p.cases, p.keeps_right, p.drops_wrong, p.attaches_right, p.attaches_wrong
        );
    }
    println!(
        "time to first token p50 {:.0} ms, p95 {:.0} ms; prompt {:.0} tokens at {:.1} tok/s; decode {:.1} tok/s",
        r.time_to_first_token_ms.p50,
        r.time_to_first_token_ms.p95,
        r.mean_prompt_tokens,
        r.prompt_tokens_per_s,
        r.decode_tokens_per_s
    );
}

struct StdoutSink;

impl TokenSink for StdoutSink {
    fn token(&mut self, text: &str) -> bool {
        print!("{text}");
        std::io::stdout().flush().is_ok()
    }
}

async fn ask(cfg: Config, question: &str, collection: Option<String>) -> anyhow::Result<()> {
    let c = Components::build(&cfg).await?;
    let evidence = c.evidence_reranker().await?;
    let judge = evidence.as_ref().map(|r| (r, cfg.generation.evidence_rerank_n));
    let hits = c
        .searcher
        .search_for_answer(question, &filter_for(&cfg, collection), cfg.retrieval.answer_k, judge)
        .await?;
    let chat = c.chat_model().await?;
    let support = c.support_model().await?;
    let answer = docent_generate::answer::answer(
        chat.as_ref(),
        support,
        question,
        &hits,
        &c.answer_config(),
        &mut StdoutSink,
    )
    .await?;
    println!();
    if !answer.checked.citations.is_empty() {
        println!("\nSources:");
        for cit in &answer.checked.citations {
            let page = cit.page.map(|p| format!(", page {p}")).unwrap_or_default();
            let quote = &cit.passage[cit.span.0..cit.span.1];
            println!("  [{}] {}{} — \"{}\"", cit.n, cit.title, page, quote.replace('\n', " "));
        }
    }
    let unsupported = answer.checked.unsupported_count();
    if unsupported > 0 {
        println!("\n{unsupported} sentence(s) have no supporting source.");
    }
    if !answer.abstained {
        println!(
            "\n({} prompt tokens, {} generated, first token {} ms, total {} ms)",
            answer.usage.prompt_tokens,
            answer.usage.completion_tokens,
            answer.usage.time_to_first_token_ms,
            answer.usage.total_ms
        );
    }
    Ok(())
}

fn sha256_file(path: &Path) -> anyhow::Result<String> {
    use sha2::Digest;
    let mut f =
        std::fs::File::open(path).with_context(|| format!("{} (run scripts/fetch-models.sh)", path.display()))?;
    let mut h = sha2::Sha256::new();
    std::io::copy(&mut f, &mut h)?;
    Ok(hex::encode(h.finalize()))
}

/// License and source of a model file from the models directory's
/// MANIFEST.tsv (written by scripts/fetch-models.sh), when listed.
fn manifest_entry(cfg: &Config, path: &Path) -> Option<(String, String)> {
    let manifest = std::fs::read_to_string(cfg.models.dir.join("MANIFEST.tsv")).ok()?;
    let rel = path.strip_prefix(&cfg.models.dir).ok()?.to_str()?.to_owned();
    manifest.lines().skip(1).find_map(|l| {
        let cols: Vec<&str> = l.split('\t').collect();
        (cols.len() >= 4 && cols[0] == rel).then(|| (cols[2].to_owned(), cols[3].to_owned()))
    })
}

fn chat_provenance(cfg: &Config) -> anyhow::Result<serde_json::Value> {
    if cfg.generation.backend == "openai" {
        // No local file: the weights live on the upstream server, whose
        // operator records them.
        return Ok(serde_json::json!({
            "role": "chat",
            "backend": "openai",
            "upstream_url": cfg.generation.upstream_url,
            "model": cfg.generation.upstream_model,
        }));
    }
    let gguf = cfg.chat_gguf();
    let info = docent_generate::gguf::read_file(&gguf).with_context(|| format!("reading {}", gguf.display()))?;
    let (source, license) = manifest_entry(cfg, &gguf).unwrap_or_default();
    Ok(serde_json::json!({
        "role": "chat",
        "file": gguf.display().to_string(),
        "size_bytes": std::fs::metadata(&gguf)?.len(),
        "sha256": sha256_file(&gguf)?,
        "format": format!("GGUF v{}", info.version),
        "name": info.get_str("general.name"),
        "architecture": info.architecture(),
        "quantization": info.quantization(),
        "context_length": info.context_length(),
        "license": info.get_str("general.license").unwrap_or(license),
        "source": source,
    }))
}

fn model_provenance(cfg: &Config) -> anyhow::Result<Vec<serde_json::Value>> {
    let chat = chat_provenance(cfg)?;
    let onnx = cfg.embedding_dir().join("model.onnx");
    let (source, license) = manifest_entry(cfg, &onnx).unwrap_or_default();
    let embed = serde_json::json!({
        "role": "embedding",
        "file": onnx.display().to_string(),
        "size_bytes": std::fs::metadata(&onnx).with_context(|| format!("{} (run scripts/fetch-models.sh)", onnx.display()))?.len(),
        "sha256": sha256_file(&onnx)?,
        "format": "ONNX",
        "license": license,
        "source": source,
    });
    let mut out = vec![chat, embed];
    let rr = cfg.reranker_dir().join("model.onnx");
    if rr.is_file() {
        let (source, license) = manifest_entry(cfg, &rr).unwrap_or_default();
        out.push(serde_json::json!({
            "role": "reranker",
            "file": rr.display().to_string(),
            "size_bytes": std::fs::metadata(&rr)?.len(),
            "sha256": sha256_file(&rr)?,
            "format": "ONNX",
            "enabled": cfg.retrieval.rerank,
            "license": license,
            "source": source,
        }));
    }
    Ok(out)
}

async fn check(cfg: Config) -> anyhow::Result<()> {
    let c = Components::build(&cfg).await?;
    let ids = c.store.ready_chunk_ids().await?;
    let report = c.consistency(&ids)?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    if !report.ok() {
        bail!("SQL and the derived indexes disagree");
    }
    Ok(())
}
