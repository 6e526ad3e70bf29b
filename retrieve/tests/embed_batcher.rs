//! The shared embedding worker with the real model: texts of concurrent
//! requesters, sorted together and padded inside shared model calls, get
//! the vectors they get when embedded alone.

use docent_core::Embedder;
use docent_retrieve::batcher::{BatchPolicy, EmbedBatcher, PassageModel};
use docent_retrieve::embed::{EmbedderOptions, EmbedderPaths, FastEmbedder};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn models_dir() -> PathBuf {
    let dir = std::env::var_os("DOCENT_TEST_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../models"));
    assert!(
        dir.join("all-MiniLM-L6-v2-int8/model.onnx").is_file(),
        "models missing in {}: run scripts/fetch-models.sh",
        dir.display()
    );
    dir
}

/// Passages of 3 to ~250 tokens, in no particular order.
fn passages(seed: usize, n: usize) -> Vec<String> {
    let words = [
        "renal",
        "clearance",
        "of",
        "the",
        "anticoagulant",
        "was",
        "measured",
        "in",
        "elderly",
        "patients",
        "with",
        "atrial",
        "fibrillation",
        "and",
        "dose",
        "adjusted",
        "weekly",
    ];
    (0..n)
        .map(|i| {
            let len = 2 + (i * 53 + seed * 17) % 190;
            (0..len)
                .map(|j| words[(i * 7 + j * 3 + seed) % words.len()])
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

#[test]
fn concurrent_requests_get_the_vectors_each_text_gets_alone() {
    let dir = models_dir();
    let paths = EmbedderPaths {
        model_dir: dir.join("all-MiniLM-L6-v2-int8"),
        onnxruntime_lib: dir.join("onnxruntime/libonnxruntime.so.1.31.1"),
    };
    let model = Arc::new(FastEmbedder::load(&paths, EmbedderOptions::default()).expect("load the embedding model"));
    // Small calls, so that texts of both requesters share calls and most
    // of them are padded.
    let policy = BatchPolicy {
        max_round: 256,
        token_budget: 2048,
        max_batch: 16,
        queue: 4,
    };
    let batcher = Arc::new(EmbedBatcher::start(Arc::clone(&model) as Arc<dyn PassageModel>, policy).expect("start"));
    let inputs = [passages(1, 40), passages(2, 33)];
    let handles: Vec<_> = inputs
        .iter()
        .cloned()
        .map(|texts| {
            let b = Arc::clone(&batcher);
            std::thread::spawn(move || b.embed_passages(&texts))
        })
        .collect();
    let outputs: Vec<Vec<Vec<f32>>> = handles
        .into_iter()
        .map(|h| h.join().expect("requester thread").expect("embed"))
        .collect();
    let stats = batcher.stats();
    assert_eq!(stats.texts, 73);
    assert!(stats.padded_tokens > stats.tokens, "calls mixed lengths: {stats:?}");
    for (texts, vecs) in inputs.iter().zip(&outputs) {
        assert_eq!(texts.len(), vecs.len());
        for (t, v) in texts.iter().zip(vecs) {
            let alone = model.embed_passage_batch(&[t.as_str()]).expect("alone").remove(0);
            assert_eq!(v.len(), alone.len());
            let diff = v.iter().zip(&alone).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            assert!(diff < 1e-4, "{diff} for a text of {} tokens", model.passage_tokens(t));
        }
    }
    // The direct path agrees too.
    let direct = model.embed_passages(&inputs[0]).expect("direct");
    for (a, b) in direct.iter().zip(&outputs[0]) {
        let diff = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
        assert!(diff < 1e-4, "{diff}");
    }
}
