//! Fusion of the keyword and dense legs.
//!
//! Reciprocal rank fusion (Cormack et al., 2009): each leg contributes
//! `1 / (k + rank)` for a hit at 1-based `rank`. Rank-based, so it needs no
//! score calibration between BM25 and cosine similarity.

use docent_core::{LegHit, Legs};
use std::collections::HashMap;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fused {
    pub chunk_id: Uuid,
    pub score: f32,
    pub legs: Legs,
}

/// Fuses two ranked lists with RRF; ties break by chunk id for determinism.
pub fn rrf(bm25: &[LegHit], dense: &[LegHit], k: f32) -> Vec<Fused> {
    let mut acc: HashMap<Uuid, Fused> = HashMap::new();
    for (i, h) in bm25.iter().enumerate() {
        let rank = i as u32 + 1;
        let e = acc.entry(h.chunk_id).or_insert(Fused {
            chunk_id: h.chunk_id,
            score: 0.0,
            legs: Legs::default(),
        });
        e.score += 1.0 / (k + rank as f32);
        e.legs.bm25_rank = Some(rank);
    }
    for (i, h) in dense.iter().enumerate() {
        let rank = i as u32 + 1;
        let e = acc.entry(h.chunk_id).or_insert(Fused {
            chunk_id: h.chunk_id,
            score: 0.0,
            legs: Legs::default(),
        });
        e.score += 1.0 / (k + rank as f32);
        e.legs.dense_rank = Some(rank);
        e.legs.dense_score = Some(h.score);
    }
    let mut out: Vec<Fused> = acc.into_values().collect();
    out.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.chunk_id.cmp(&b.chunk_id)));
    out
}

/// How the two legs are combined.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "method")]
pub enum Fusion {
    /// Reciprocal rank fusion with constant `k`.
    Rrf { k: f32 },
    /// Convex combination `alpha * dense + (1 - alpha) * bm25` of scores
    /// min-max normalized within each leg's candidate list.
    Convex { alpha: f32 },
}

impl Fusion {
    pub fn fuse(&self, bm25: &[LegHit], dense: &[LegHit]) -> Vec<Fused> {
        match *self {
            Fusion::Rrf { k } => rrf(bm25, dense, k),
            Fusion::Convex { alpha } => convex(bm25, dense, alpha),
        }
    }
}

fn min_max(hits: &[LegHit]) -> impl Fn(f32) -> f32 {
    let lo = hits.iter().map(|h| h.score).fold(f32::INFINITY, f32::min);
    let hi = hits.iter().map(|h| h.score).fold(f32::NEG_INFINITY, f32::max);
    move |s| if hi > lo { (s - lo) / (hi - lo) } else { 1.0 }
}

/// Convex combination of min-max normalized scores; a hit missing from a
/// leg scores 0 there.
pub fn convex(bm25: &[LegHit], dense: &[LegHit], alpha: f32) -> Vec<Fused> {
    let alpha = alpha.clamp(0.0, 1.0);
    let nb = min_max(bm25);
    let nd = min_max(dense);
    let mut acc: HashMap<Uuid, Fused> = HashMap::new();
    for (i, h) in bm25.iter().enumerate() {
        let e = acc.entry(h.chunk_id).or_insert(Fused {
            chunk_id: h.chunk_id,
            score: 0.0,
            legs: Legs::default(),
        });
        e.score += (1.0 - alpha) * nb(h.score);
        e.legs.bm25_rank = Some(i as u32 + 1);
    }
    for (i, h) in dense.iter().enumerate() {
        let e = acc.entry(h.chunk_id).or_insert(Fused {
            chunk_id: h.chunk_id,
            score: 0.0,
            legs: Legs::default(),
        });
        e.score += alpha * nd(h.score);
        e.legs.dense_rank = Some(i as u32 + 1);
        e.legs.dense_score = Some(h.score);
    }
    let mut out: Vec<Fused> = acc.into_values().collect();
    out.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.chunk_id.cmp(&b.chunk_id)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(n: u128) -> LegHit {
        LegHit {
            chunk_id: Uuid::from_u128(n),
            score: 0.0,
        }
    }

    #[test]
    fn rrf_matches_hand_computation() {
        // bm25: a, b ; dense: b, c ; k = 60
        let f = rrf(&[hit(1), hit(2)], &[hit(2), hit(3)], 60.0);
        assert_eq!(f[0].chunk_id, Uuid::from_u128(2));
        let expect_b = 1.0 / 62.0 + 1.0 / 61.0;
        assert!((f[0].score - expect_b).abs() < 1e-7);
        assert_eq!(
            f[0].legs,
            Legs {
                bm25_rank: Some(2),
                dense_rank: Some(1),
                dense_score: Some(0.0),
                rerank_score: None,
            }
        );
        // a (1/61) and c (1/62): a first.
        assert_eq!(f[1].chunk_id, Uuid::from_u128(1));
        assert_eq!(f[1].legs.dense_rank, None);
        assert_eq!(f[2].chunk_id, Uuid::from_u128(3));
        assert_eq!(f.len(), 3);
    }

    fn scored(n: u128, score: f32) -> LegHit {
        LegHit {
            chunk_id: Uuid::from_u128(n),
            score,
        }
    }

    #[test]
    fn convex_matches_hand_computation() {
        // bm25: a=10, b=5, c=0 -> 1, .5, 0 ; dense: b=.9, d=.5 -> 1, 0
        let b = [scored(1, 10.0), scored(2, 5.0), scored(3, 0.0)];
        let d = [scored(2, 0.9), scored(4, 0.5)];
        let f = convex(&b, &d, 0.5);
        // b: .5*.5 + .5*1 = .75 ; a: .5 ; c: 0 ; d: 0
        assert_eq!(f[0].chunk_id, Uuid::from_u128(2));
        assert!((f[0].score - 0.75).abs() < 1e-6);
        assert_eq!(f[1].chunk_id, Uuid::from_u128(1));
        assert!((f[1].score - 0.5).abs() < 1e-6);
        // alpha = 1 is the dense leg alone.
        let only_dense = convex(&b, &d, 1.0);
        assert_eq!(only_dense[0].chunk_id, Uuid::from_u128(2));
        assert!((only_dense[0].score - 1.0).abs() < 1e-6);
        assert_eq!(Fusion::Rrf { k: 60.0 }.fuse(&b, &d)[0].chunk_id, Uuid::from_u128(2));
    }
}
