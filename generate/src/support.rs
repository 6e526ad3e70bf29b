//! Models that score how well a passage supports a claim, for the citation
//! checker: embedding similarity (always available) or the cross-encoder
//! (when reranking is configured).

use crate::citations::SupportModel;
use docent_core::{BackendResult, Embedder, Reranker};
use std::sync::Arc;

/// Cosine similarity of claim and passage embeddings, mapped linearly from
/// `[floor, full]` to `[0, 1]`.
pub struct EmbeddingSupport {
    pub embedder: Arc<dyn Embedder>,
    pub floor: f32,
    pub full: f32,
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (mut dot, mut na, mut nb) = (0.0f32, 0.0f32, 0.0f32);
    for (x, y) in a.iter().zip(b) {
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 {
        return 0.0;
    }
    dot / (na.sqrt() * nb.sqrt())
}

impl EmbeddingSupport {
    fn map(&self, cos: f32) -> f32 {
        let span = (self.full - self.floor).max(f32::EPSILON);
        ((cos - self.floor) / span).clamp(0.0, 1.0)
    }
}

impl SupportModel for EmbeddingSupport {
    fn score(&self, claims: &[String], passages: &[String]) -> BackendResult<Vec<Vec<f32>>> {
        if claims.is_empty() || passages.is_empty() {
            return Ok(vec![Vec::new(); claims.len()]);
        }
        let mut texts = claims.to_vec();
        texts.extend(passages.iter().cloned());
        let vecs = self.embedder.embed_passages(&texts)?;
        let (c, p) = vecs.split_at(claims.len());
        Ok(c.iter()
            .map(|cv| p.iter().map(|pv| self.map(cosine(cv, pv))).collect())
            .collect())
    }

    fn name(&self) -> String {
        format!("embedding:{}", self.embedder.model_id())
    }
}

/// The cross-encoder's logit through a logistic function.
pub struct RerankSupport {
    pub reranker: Arc<dyn Reranker>,
}

impl SupportModel for RerankSupport {
    fn score(&self, claims: &[String], passages: &[String]) -> BackendResult<Vec<Vec<f32>>> {
        let refs: Vec<&str> = passages.iter().map(String::as_str).collect();
        claims
            .iter()
            .map(|c| {
                let logits = self.reranker.rerank(c, &refs)?;
                Ok(logits.into_iter().map(|l| 1.0 / (1.0 + (-l).exp())).collect())
            })
            .collect()
    }

    fn name(&self) -> String {
        format!("cross-encoder:{}", self.reranker.model_id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_and_mapping() {
        assert!((cosine(&[1.0, 0.0], &[1.0, 0.0]) - 1.0).abs() < 1e-6);
        assert!(cosine(&[1.0, 0.0], &[0.0, 1.0]).abs() < 1e-6);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 0.0]), 0.0);
        struct Nil;
        impl Embedder for Nil {
            fn dim(&self) -> usize {
                1
            }
            fn embed_passages(&self, t: &[String]) -> BackendResult<Vec<Vec<f32>>> {
                Ok(t.iter().map(|_| vec![1.0]).collect())
            }
            fn embed_query(&self, _: &str) -> BackendResult<Vec<f32>> {
                Ok(vec![1.0])
            }
            fn model_id(&self) -> String {
                "nil".into()
            }
        }
        let s = EmbeddingSupport {
            embedder: Arc::new(Nil),
            floor: 0.2,
            full: 0.7,
        };
        assert_eq!(s.map(0.1), 0.0);
        assert!((s.map(0.45) - 0.5).abs() < 1e-6);
        assert_eq!(s.map(0.9), 1.0);
        let m = s.score(&["a b".into()], &["c".into(), "d".into()]).expect("scores");
        assert_eq!(m, vec![vec![1.0, 1.0]]);
    }
}
