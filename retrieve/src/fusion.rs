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
                dense_rank: Some(1)
            }
        );
        // a (1/61) and c (1/62): a first.
        assert_eq!(f[1].chunk_id, Uuid::from_u128(1));
        assert_eq!(f[1].legs.dense_rank, None);
        assert_eq!(f[2].chunk_id, Uuid::from_u128(3));
        assert_eq!(f.len(), 3);
    }
}
