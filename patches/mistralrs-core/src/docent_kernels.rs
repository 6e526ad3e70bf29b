//! docent patch: CPU kernels for reading a prompt (issue #8 in docent).
//!
//! A profile of a 1k-token prompt on the CPU put 15-25% of the time in
//! scalar element-wise passes: the attention's scale, its broadcast mask add
//! and its softmax (one scalar `expf` per score), and the MLP's SiLU. This
//! module replaces them with:
//!
//! - `exp` for eight lanes at a time (AVX2 + FMA, picked at run time; the
//!   Cephes polynomial, within a few ulp of `f32::exp`, 0 below the smallest
//!   normal result);
//! - `softmax_masked_row`: scale, mask and softmax of one row of scores in
//!   three passes over that row, written once;
//! - `silu_mul`: `silu(gate) * up`;
//! - `cpu_attention`: attention on the CPU, for a prompt and for decoding.
//!   Query rows go in blocks of `QUERY_BLOCK`; each block reads only the key
//!   positions its mask leaves open (for a causal mask, up to its last row),
//!   so about half the scores of a long prompt are never computed. A query
//!   head reads its key/value head in place, from the KV cache's own buffer
//!   (no `repeat_kv` copy, no transposed copy): the heads of one group are
//!   stacked as rows of one matmul. Decoding (up to `DIRECT_MAX_ROWS` query
//!   rows) skips the matmuls: the query heads of a group go through each
//!   block of key and value rows together while it is in L1, the scores
//!   eight key positions at a time, the weighted sums held in registers,
//!   from the cache's buffer in place; a long context is split into key
//!   ranges for the threads, merged by their softmax maxima and sums. This
//!   replaces mistral.rs's scalar per-position loop, whose cost grows with
//!   the context (at 1k cached tokens it took most of each token), and a
//!   gemm whose packing of the whole key/value head and padding of a few
//!   rows to its tile cost more than the products.
//! - `kv_cache_dtype`: the KV cache in f16 on the CPU (half the bytes a
//!   decoded token reads from it); `cpu_attention` widens it as it reads.
//!
//! Everything has a portable scalar path with the same structure. Setting
//! `DOCENT_CPU_KERNELS=off` sends attention back to mistral.rs's own paths
//! (`naive_sdpa` for prompts, the fused scalar loop for decoding) and the
//! SiLU to the scalar loop, for A/B measurements in one binary.

use std::sync::OnceLock;

use candle_core::{DType, Result, Storage, Tensor};
use rayon::prelude::*;

/// Query rows per block of `prompt_attention`. Small enough that a causal
/// mask saves most of the upper triangle, large enough that each matmul
/// still has hundreds of rows (times the heads of a group).
const QUERY_BLOCK: usize = 128;

/// False when `DOCENT_CPU_KERNELS=off` (read once).
pub fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| {
        !matches!(
            std::env::var("DOCENT_CPU_KERNELS").as_deref(),
            Ok("off" | "0" | "false")
        )
    })
}

#[cfg(target_arch = "x86_64")]
fn has_avx2_fma() -> bool {
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
    })
}

/// `dst[i] = exp(src[i])`.
pub fn exp(src: &[f32], dst: &mut [f32]) {
    assert_eq!(src.len(), dst.len(), "exp: lengths differ");
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU has AVX2 and FMA (checked above); lengths are equal.
        unsafe { x86::exp_slice(src, dst) };
        return;
    }
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = s.exp();
    }
}

/// One row of attention probabilities: `softmax(src * scale + mask)`, into
/// `dst`. A row whose every position is masked (`-inf`) gets zeros.
pub fn softmax_masked_row(src: &[f32], mask: Option<&[f32]>, scale: f32, dst: &mut [f32]) {
    softmax_row_stats(src, mask, scale, dst);
}

/// `softmax_masked_row`, returning the row's maximum (after scale and mask)
/// and the sum of `exp(x - max)` it divided by, or `None` for a row whose
/// every position is masked. Two softmaxes over parts of one row merge
/// through these (`direct_attention` splits long contexts).
fn softmax_row_stats(
    src: &[f32],
    mask: Option<&[f32]>,
    scale: f32,
    dst: &mut [f32],
) -> Option<(f32, f32)> {
    assert_eq!(src.len(), dst.len(), "softmax: lengths differ");
    if let Some(m) = mask {
        assert_eq!(m.len(), src.len(), "softmax: mask length differs");
    }
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU has AVX2 and FMA (checked above); lengths are equal.
        return unsafe { x86::softmax_masked_row(src, mask, scale, dst) };
    }
    let mut max = f32::NEG_INFINITY;
    for (i, (d, &s)) in dst.iter_mut().zip(src).enumerate() {
        *d = s * scale + mask.map_or(0.0, |m| m[i]);
        max = max.max(*d);
    }
    if max == f32::NEG_INFINITY {
        dst.fill(0.0);
        return None;
    }
    let mut sum = 0f32;
    for d in dst.iter_mut() {
        *d = (*d - max).exp();
        sum += *d;
    }
    let inv = 1.0 / sum;
    for d in dst.iter_mut() {
        *d *= inv;
    }
    Some((max, sum))
}

/// `out[i] = silu(gate[i]) * up[i]`, with `silu(g) = g / (1 + exp(-g))`.
pub fn silu_mul(gate: &[f32], up: &[f32], out: &mut [f32]) {
    assert!(
        gate.len() == up.len() && up.len() == out.len(),
        "silu_mul: lengths differ"
    );
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU has AVX2 and FMA (checked above); lengths are equal.
        unsafe { x86::silu_mul(gate, up, out) };
        return;
    }
    for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
        *o = g / (1.0 + (-g).exp()) * u;
    }
}

/// The f32 elements of a contiguous CPU tensor, or `None`.
fn cpu_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<Option<R>> {
    if t.dtype() != DType::F32 || !t.is_contiguous() {
        return Ok(None);
    }
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else {
        return Ok(None);
    };
    let start = layout.start_offset();
    let data = &cpu.as_slice::<f32>()?[start..start + t.elem_count()];
    Ok(Some(f(data)))
}

/// Attention on the CPU (a prompt or one decoded token):
/// `softmax(q k^T * scale + mask) v` per head, with grouped key/value heads.
///
/// - `q`: (b, heads, seq, head_dim); `k`, `v`: (b, kv_heads, kv_len,
///   head_dim) with `heads = kv_heads * n_kv_groups` (query head `h` reads
///   key/value head `h / n_kv_groups`, as mistral.rs's `repeat_kv` orders
///   them);
/// - `mask`: `None`, or (seq, kv_len) added to the scores (0 or `-inf`).
///
/// `k` and `v` may be views with a row stride of their own (the KV cache's
/// preallocated buffer): they are read in place. Returns `None` (the caller
/// uses its own path) for other dtypes, devices or mask shapes. Output:
/// (b, heads, seq, head_dim), contiguous.
pub fn cpu_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: Option<&Tensor>,
    scale: f32,
    n_kv_groups: usize,
) -> Result<Option<Tensor>> {
    let (b, heads, seq, head_dim) = q.dims4()?;
    let (kb, kv_heads, kv_len, k_dim) = k.dims4()?;
    let v_dims = v.dims4()?;
    let kv_dtype = k.dtype();
    if q.dtype() != DType::F32
        || !matches!(kv_dtype, DType::F32 | DType::F16)
        || v.dtype() != kv_dtype
        || !q.device().is_cpu()
        || kb != b
        || k_dim != head_dim
        || v_dims != (b, kv_heads, kv_len, head_dim)
        || n_kv_groups == 0
        || kv_heads * n_kv_groups != heads
        || seq == 0
        || kv_len == 0
    {
        return Ok(None);
    }
    let mask = match mask {
        None => None,
        Some(m) if m.dims() == [seq, kv_len] && m.dtype() == DType::F32 => Some(m.contiguous()?),
        Some(_) => return Ok(None),
    };
    // The mask's rows are read in place (it is the same tensor for every
    // layer; no copy per call).
    let mask_storage = mask.as_ref().map(|m| m.storage_and_layout());
    let mask: Option<&[f32]> = match &mask_storage {
        None => None,
        Some((storage, layout)) => {
            let Storage::Cpu(cpu) = &**storage else {
                return Ok(None);
            };
            let start = layout.start_offset();
            Some(&cpu.as_slice::<f32>()?[start..start + seq * kv_len])
        }
    };
    let q = q.contiguous()?;
    if seq <= DIRECT_MAX_ROWS {
        let (k, v) = (matmul_operand(k)?, matmul_operand(v)?);
        return match kv_dtype {
            DType::F16 => direct_attention::<half::f16>(&q, &k, &v, mask, scale, n_kv_groups),
            _ => direct_attention::<f32>(&q, &k, &v, mask, scale, n_kv_groups),
        };
    }
    // A prompt's matmuls take f32: an f16 cache (`kv_cache_dtype`) is
    // widened once per call.
    let (k, v) = if kv_dtype == DType::F32 {
        (matmul_operand(k)?, matmul_operand(v)?)
    } else {
        (k.to_dtype(DType::F32)?, v.to_dtype(DType::F32)?)
    };

    let mut blocks = Vec::with_capacity(seq.div_ceil(QUERY_BLOCK));
    let mut start = 0;
    while start < seq {
        let rows = QUERY_BLOCK.min(seq - start);
        let block_mask = mask.map(|m| &m[start * kv_len..(start + rows) * kv_len]);
        // Key positions past the last one any row of this block may see are
        // never read: for a causal mask, everything after the block's last
        // row.
        let open = match block_mask {
            Some(m) => m
                .chunks_exact(kv_len)
                .map(|row| {
                    row.iter()
                        .rposition(|&x| x != f32::NEG_INFINITY)
                        .map_or(0, |p| p + 1)
                })
                .max()
                .unwrap_or(0)
                .max(1),
            None => kv_len,
        };
        let kb = k.narrow(2, 0, open)?;
        let vb = v.narrow(2, 0, open)?;
        // (b, heads, rows, d) -> (b, kv_heads, groups * rows, d): the query
        // heads sharing a key/value head become rows of one matmul.
        let qb = q.narrow(2, start, rows)?.contiguous()?.reshape((
            b,
            kv_heads,
            n_kv_groups * rows,
            head_dim,
        ))?;
        let scores = qb.matmul(&kb.t()?)?;
        let probs = cpu_f32(&scores, |s| {
            let mut out = vec![0f32; s.len()];
            out.par_chunks_mut(open)
                .zip(s.par_chunks(open))
                .enumerate()
                .for_each(|(i, (dst, src))| {
                    // Row i of (b, kv_heads, groups, rows): query row i % rows.
                    let r = i % rows;
                    let m = block_mask.map(|m| &m[r * kv_len..r * kv_len + open]);
                    softmax_masked_row(src, m, scale, dst);
                });
            out
        })?;
        let Some(probs) = probs else {
            return Ok(None);
        };
        let probs = Tensor::from_vec(probs, scores.shape(), scores.device())?;
        let out = probs
            .matmul(&vb)?
            .reshape((b, heads, rows, head_dim))?;
        blocks.push(out);
        start += rows;
    }
    if blocks.len() == 1 {
        return Ok(blocks.pop());
    }
    Ok(Some(Tensor::cat(&blocks, 2)?))
}

/// Query rows per head up to which `cpu_attention` computes each row
/// directly (decoding) instead of through matmuls: for a handful of rows a
/// gemm packs the whole key/value head and pads the rows to its register
/// tile, which cost more than the dot products themselves.
const DIRECT_MAX_ROWS: usize = 4;

/// Below this many multiply-adds for the scores of a call (as many again
/// go to the weighted sums) the rows run on the caller's thread: a parallel
/// dispatch costs more than it saves.
const DIRECT_PARALLEL_MIN: usize = 1 << 16;

/// A parallel call splits each key/value head's positions into ranges of
/// at least this many, so that there are about two tasks per thread even
/// when there are fewer key/value heads than threads (SmolLM2 has 3).
const DIRECT_SPLIT_MIN: usize = 256;

/// Floats of key (or value) rows that the query rows of a group go through
/// together, while they sit in L1 (16 KB).
const DIRECT_L1_FLOATS: usize = 4096;

/// One task's share of `direct_attention`: the query rows of one key/value
/// head's group over one range of key positions. `out` holds each row's
/// weighted sum normalized over the range, `stats` its softmax's maximum
/// and sum (`None`: every position in the range is masked).
struct Partial {
    out: Vec<f32>,
    stats: Vec<Option<(f32, f32)>>,
}

/// `cpu_attention` for a few query rows, without matmuls, everything read
/// in place: `k` and `v` have rows of `head_dim` contiguous values
/// (`matmul_operand`); `q` is contiguous.
///
/// The work goes by key/value head: the `n_kv_groups` query heads that
/// share one (times the `seq` rows) take their dot products with a block of
/// key rows in turn while the block is in L1, and their weighted sums with
/// a block of value rows likewise, so the cache is read once per group
/// instead of once per query head. A parallel call also splits the key
/// positions into ranges; each range's softmax is normalized on its own and
/// the ranges are merged by their maxima and sums, as flash-decoding does.
fn direct_attention<T: KvElem>(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: Option<&[f32]>,
    scale: f32,
    n_kv_groups: usize,
) -> Result<Option<Tensor>> {
    let (b, heads, seq, d) = q.dims4()?;
    let kv_heads = heads / n_kv_groups;
    let kv_len = k.dim(2)?;
    let (q_guard, q_layout) = q.storage_and_layout();
    let (k_guard, k_layout) = k.storage_and_layout();
    let (v_guard, v_layout) = v.storage_and_layout();
    let (Storage::Cpu(q_cpu), Storage::Cpu(k_cpu), Storage::Cpu(v_cpu)) =
        (&*q_guard, &*k_guard, &*v_guard)
    else {
        return Ok(None);
    };
    let q_all = &q_cpu.as_slice::<f32>()?[q_layout.start_offset()..];
    let q_all = &q_all[..b * heads * seq * d];
    // Element (bi, h, j, x) of k is at start + bi * s0 + h * s1 + j * d + x.
    fn head_rows<'a, T>(
        data: &'a [T],
        layout: &candle_core::Layout,
        (bi, h): (usize, usize),
        len: usize,
    ) -> Option<&'a [T]> {
        let s = layout.stride();
        let first = layout.start_offset() + bi * s[0] + h * s[1];
        data.get(first..first + len)
    }
    let k_all = k_cpu.as_slice::<T>()?;
    let v_all = v_cpu.as_slice::<T>()?;
    if k_layout.stride()[2] != d || v_layout.stride()[2] != d {
        return Ok(None);
    }
    // Every (batch, key/value head) pair's key and value rows, checked once.
    let mut kv = Vec::with_capacity(b * kv_heads);
    for bi in 0..b {
        for h in 0..kv_heads {
            match (
                head_rows(k_all, k_layout, (bi, h), kv_len * d),
                head_rows(v_all, v_layout, (bi, h), kv_len * d),
            ) {
                (Some(kr), Some(vr)) => kv.push((kr, vr)),
                _ => return Ok(None),
            }
        }
    }
    // Per query row: the key positions up to its last open one (the mask
    // is the same for every head).
    let open: Vec<usize> = (0..seq)
        .map(|r| match mask {
            Some(m) => m[r * kv_len..(r + 1) * kv_len]
                .iter()
                .rposition(|&x| x != f32::NEG_INFINITY)
                .map_or(0, |p| p + 1),
            None => kv_len,
        })
        .collect();
    let reach = open.iter().copied().max().unwrap_or(0);

    // Rows of a group: row `gi * seq + r` is query head `kvh * groups + gi`,
    // query row `r`.
    let rows = n_kv_groups * seq;
    let parallel = b * heads * seq * kv_len * d >= DIRECT_PARALLEL_MIN;
    let splits = if parallel {
        let want = (2 * rayon::current_num_threads()).div_ceil(b * kv_heads);
        want.min(reach / DIRECT_SPLIT_MIN).max(1)
    } else {
        1
    };
    let span = reach.div_ceil(splits).max(1);
    let splits = reach.div_ceil(span).max(1);
    let block = (DIRECT_L1_FLOATS / d).max(8) / 8 * 8;
    let q_row = |g: usize, row: usize| {
        let (bi, kvh) = (g / kv_heads, g % kv_heads);
        let h = kvh * n_kv_groups + row / seq;
        let at = ((bi * heads + h) * seq + row % seq) * d;
        &q_all[at..at + d]
    };
    let task = |t: usize| -> Partial {
        let (g, s) = (t / splits, t % splits);
        let (kr, vr) = kv[g];
        let k0 = (s * span).min(reach);
        let n = span.min(reach - k0);
        // Per row: how many of this range's positions it may see.
        let ends: Vec<usize> = (0..rows)
            .map(|row| open[row % seq].saturating_sub(k0).min(n))
            .collect();
        let mut scores = vec![0f32; rows * n];
        let mut probs = vec![0f32; rows * n];
        let mut out = vec![0f32; rows * d];
        let mut j = 0;
        while j < n {
            let next = (j + block).min(n);
            for (row, &end) in ends.iter().enumerate() {
                let hi = next.min(end);
                if hi > j {
                    row_scores(
                        q_row(g, row),
                        &kr[(k0 + j) * d..(k0 + hi) * d],
                        &mut scores[row * n + j..row * n + hi],
                    );
                }
            }
            j = next;
        }
        let stats: Vec<Option<(f32, f32)>> = ends
            .iter()
            .enumerate()
            .map(|(row, &end)| {
                if end == 0 {
                    return None;
                }
                let r = row % seq;
                let m = mask.map(|m| &m[r * kv_len + k0..r * kv_len + k0 + end]);
                softmax_row_stats(
                    &scores[row * n..row * n + end],
                    m,
                    scale,
                    &mut probs[row * n..row * n + end],
                )
            })
            .collect();
        let mut j = 0;
        while j < n {
            let next = (j + block).min(n);
            for (row, &end) in ends.iter().enumerate() {
                let hi = next.min(end);
                if hi > j && stats[row].is_some() {
                    weighted_rows(
                        &probs[row * n + j..row * n + hi],
                        &vr[(k0 + j) * d..(k0 + hi) * d],
                        &mut out[row * d..(row + 1) * d],
                    );
                }
            }
            j = next;
        }
        Partial { out, stats }
    };
    let tasks = b * kv_heads * splits;
    let parts: Vec<Partial> = if parallel && tasks > 1 {
        (0..tasks).into_par_iter().map(task).collect()
    } else {
        (0..tasks).map(task).collect()
    };
    drop((q_guard, k_guard, v_guard));

    // Merge each row's ranges: weights sum * exp(max - overall max). A row
    // with no open position keeps zeros, as the softmax gives.
    let mut out = vec![0f32; b * heads * seq * d];
    for (g, group) in parts.chunks_exact(splits).enumerate() {
        let (bi, kvh) = (g / kv_heads, g % kv_heads);
        for row in 0..rows {
            let h = kvh * n_kv_groups + row / seq;
            let at = ((bi * heads + h) * seq + row % seq) * d;
            let dst = &mut out[at..at + d];
            let open_parts: Vec<(&Partial, (f32, f32))> = group
                .iter()
                .filter_map(|p| p.stats[row].map(|st| (p, st)))
                .collect();
            match open_parts.as_slice() {
                [] => {}
                [(p, _)] => dst.copy_from_slice(&p.out[row * d..(row + 1) * d]),
                many => {
                    let top = many
                        .iter()
                        .map(|(_, (m, _))| *m)
                        .fold(f32::NEG_INFINITY, f32::max);
                    let mut total = 0f32;
                    for (p, (m, sum)) in many {
                        let w = sum * (m - top).exp();
                        total += w;
                        for (o, &x) in dst.iter_mut().zip(&p.out[row * d..(row + 1) * d]) {
                            *o += w * x;
                        }
                    }
                    let inv = 1.0 / total;
                    for o in dst.iter_mut() {
                        *o *= inv;
                    }
                }
            }
        }
    }
    Ok(Some(Tensor::from_vec(out, (b, heads, seq, d), q.device())?))
}

/// What the KV cache may hold on the CPU: f32, or f16 (`kv_cache_dtype`),
/// read as f32 (eight lanes at a time through F16C).
pub trait KvElem: candle_core::WithDType + Copy + Send + Sync {
    fn f32(self) -> f32;
    /// Eight values from `p` as f32 lanes.
    ///
    /// # Safety
    /// Eight values must be readable at `p`; the CPU must have AVX2 and F16C.
    #[cfg(target_arch = "x86_64")]
    unsafe fn load8(p: *const Self) -> std::arch::x86_64::__m256;
}

impl KvElem for f32 {
    #[inline(always)]
    fn f32(self) -> f32 {
        self
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load8(p: *const f32) -> std::arch::x86_64::__m256 {
        std::arch::x86_64::_mm256_loadu_ps(p)
    }
}

impl KvElem for half::f16 {
    #[inline(always)]
    fn f32(self) -> f32 {
        self.to_f32()
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn load8(p: *const half::f16) -> std::arch::x86_64::__m256 {
        use std::arch::x86_64::*;
        _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i))
    }
}

/// The dtype docent keeps the KV cache in, for a model computing in
/// `dtype` on `device`: f16 on the CPU when the model computes in f32 and
/// these kernels are on (half the bytes each decoded token reads, as
/// llama.cpp's default cache; the values are widened to f32 as they are
/// read), otherwise `dtype` unchanged.
pub fn kv_cache_dtype(dtype: DType, device: &candle_core::Device) -> DType {
    if dtype == DType::F32 && device.is_cpu() && enabled() {
        DType::F16
    } else {
        dtype
    }
}

/// `out[j] = q . k_j` for the rows `k_j` of `k` (`q.len()` values each,
/// `out.len()` rows).
fn row_scores<T: KvElem>(q: &[f32], k: &[T], out: &mut [f32]) {
    let d = q.len();
    assert_eq!(k.len(), out.len() * d, "row_scores: shapes differ");
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU has AVX2, FMA and F16C (checked above); shapes
        // checked.
        unsafe { x86::row_scores(q, k, out) };
        return;
    }
    for (o, kr) in out.iter_mut().zip(k.chunks_exact(d)) {
        *o = q.iter().zip(kr).map(|(a, b)| a * b.f32()).sum();
    }
}

/// `out += sum_j p[j] * v_j` over the rows `v_j` of `v` (`out.len()` values
/// each, `p.len()` rows).
fn weighted_rows<T: KvElem>(p: &[f32], v: &[T], out: &mut [f32]) {
    let d = out.len();
    assert_eq!(v.len(), p.len() * d, "weighted_rows: shapes differ");
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU has AVX2, FMA and F16C (checked above); shapes
        // checked.
        unsafe { x86::weighted_rows(p, v, out) };
        return;
    }
    for (&pj, vr) in p.iter().zip(v.chunks_exact(d)) {
        for (o, &x) in out.iter_mut().zip(vr) {
            *o += pj * x.f32();
        }
    }
}

/// `t` (b, heads, n, d) as candle's CPU matmul can read it: rows of `d`
/// contiguous values, heads at a fixed stride, batches whole. The KV cache's
/// narrowed buffer is such a view and is used as it is; anything else is
/// copied.
fn matmul_operand(t: &Tensor) -> Result<Tensor> {
    let dims = t.dims();
    let stride = t.stride();
    let in_place = dims.len() == 4
        && stride[3] == 1
        && stride[2] == dims[3]
        && stride[1] >= dims[2] * dims[3]
        && (dims[0] == 1 || stride[0] == stride[1] * dims[1]);
    if in_place {
        Ok(t.clone())
    } else {
        t.contiguous()
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// exp of eight lanes: Cephes `expf` (range reduction by ln 2 in two
    /// parts, a degree-5 polynomial, 2^n through the exponent bits). Inputs
    /// below ln(2^-126) give 0 (this includes `-inf`), inputs above
    /// 88.376 (where 2^n would pass 2^127) give `inf`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn exp8(x: __m256) -> __m256 {
        let lo = _mm256_set1_ps(-87.336_55);
        let hi = _mm256_set1_ps(88.376_26);
        let underflow = _mm256_cmp_ps::<_CMP_LT_OQ>(x, lo);
        let overflow = _mm256_cmp_ps::<_CMP_GT_OQ>(x, hi);
        let x = _mm256_max_ps(_mm256_min_ps(x, hi), lo);
        let fx = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm256_mul_ps(x, _mm256_set1_ps(std::f32::consts::LOG2_E)),
        );
        let r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693_359_375), x);
        let r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.121_944_4e-4), r);
        let mut y = _mm256_set1_ps(1.987_569_1e-4);
        y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.398_199_9e-3));
        y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(8.333_452e-3));
        y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(4.166_579_6e-2));
        y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(0.166_666_65));
        y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(0.5));
        let r2 = _mm256_mul_ps(r, r);
        y = _mm256_fmadd_ps(y, r2, _mm256_add_ps(r, _mm256_set1_ps(1.0)));
        let n = _mm256_add_epi32(_mm256_cvtps_epi32(fx), _mm256_set1_epi32(127));
        let pow2n = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(n));
        let y = _mm256_andnot_ps(underflow, _mm256_mul_ps(y, pow2n));
        _mm256_blendv_ps(y, _mm256_set1_ps(f32::INFINITY), overflow)
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn hmax(v: __m256) -> f32 {
        let m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        let m = _mm_max_ss(m, _mm_shuffle_ps::<0b01>(m, m));
        _mm_cvtss_f32(m)
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps::<0b01>(s, s));
        _mm_cvtss_f32(s)
    }

    /// Lanes `0..n` of a partial block: loaded, or `fill` past `n`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn load_partial(src: &[f32], fill: f32) -> __m256 {
        let mut buf = [fill; 8];
        buf[..src.len()].copy_from_slice(src);
        _mm256_loadu_ps(buf.as_ptr())
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn store_partial(dst: &mut [f32], v: __m256) {
        let mut buf = [0f32; 8];
        _mm256_storeu_ps(buf.as_mut_ptr(), v);
        let n = dst.len();
        dst.copy_from_slice(&buf[..n]);
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn exp_slice(src: &[f32], dst: &mut [f32]) {
        let mut s = src.chunks_exact(8);
        let mut d = dst.chunks_exact_mut(8);
        for (s, d) in (&mut s).zip(&mut d) {
            _mm256_storeu_ps(d.as_mut_ptr(), exp8(_mm256_loadu_ps(s.as_ptr())));
        }
        let (s, d) = (s.remainder(), d.into_remainder());
        if !s.is_empty() {
            store_partial(d, exp8(load_partial(s, 0.0)));
        }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn softmax_masked_row(
        src: &[f32],
        mask: Option<&[f32]>,
        scale: f32,
        dst: &mut [f32],
    ) -> Option<(f32, f32)> {
        let n = src.len();
        let full = n - n % 8;
        let vscale = _mm256_set1_ps(scale);
        // Pass 1: scaled and masked scores, and their maximum.
        let mut vmax = _mm256_set1_ps(f32::NEG_INFINITY);
        let mut i = 0;
        while i < full {
            let mut x = _mm256_mul_ps(_mm256_loadu_ps(src.as_ptr().add(i)), vscale);
            if let Some(m) = mask {
                x = _mm256_add_ps(x, _mm256_loadu_ps(m.as_ptr().add(i)));
            }
            _mm256_storeu_ps(dst.as_mut_ptr().add(i), x);
            vmax = _mm256_max_ps(vmax, x);
            i += 8;
        }
        let mut max = hmax(vmax);
        for j in full..n {
            let x = src[j] * scale + mask.map_or(0.0, |m| m[j]);
            dst[j] = x;
            max = max.max(x);
        }
        if max == f32::NEG_INFINITY {
            dst.fill(0.0);
            return None;
        }
        // Pass 2: exp(x - max) and the sum.
        let vmax = _mm256_set1_ps(max);
        let mut vsum = _mm256_setzero_ps();
        let mut i = 0;
        while i < full {
            let p = dst.as_mut_ptr().add(i);
            let e = exp8(_mm256_sub_ps(_mm256_loadu_ps(p), vmax));
            _mm256_storeu_ps(p, e);
            vsum = _mm256_add_ps(vsum, e);
            i += 8;
        }
        if full < n {
            // Padding lanes are -inf: exp gives 0 and adds nothing.
            let e = exp8(_mm256_sub_ps(
                load_partial(&dst[full..], f32::NEG_INFINITY),
                vmax,
            ));
            store_partial(&mut dst[full..], e);
            vsum = _mm256_add_ps(vsum, e);
        }
        // Pass 3: normalize.
        let sum = hsum(vsum);
        let inv = 1.0 / sum;
        let vinv = _mm256_set1_ps(inv);
        let mut i = 0;
        while i < full {
            let p = dst.as_mut_ptr().add(i);
            _mm256_storeu_ps(p, _mm256_mul_ps(_mm256_loadu_ps(p), vinv));
            i += 8;
        }
        for d in &mut dst[full..] {
            *d *= inv;
        }
        Some((max, sum))
    }

    /// Eight lanes summed into one: lane `u` of the result is the sum of
    /// the lanes of `a[u]`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn reduce8(a: [__m256; 8]) -> __m256 {
        let t0 = _mm256_hadd_ps(a[0], a[1]);
        let t1 = _mm256_hadd_ps(a[2], a[3]);
        let t2 = _mm256_hadd_ps(a[4], a[5]);
        let t3 = _mm256_hadd_ps(a[6], a[7]);
        // Per 128-bit half: [a0, a1, a2, a3] and [a4, a5, a6, a7], partial.
        let u0 = _mm256_hadd_ps(t0, t1);
        let u1 = _mm256_hadd_ps(t2, t3);
        let lo = _mm256_permute2f128_ps::<0x20>(u0, u1);
        let hi = _mm256_permute2f128_ps::<0x31>(u0, u1);
        _mm256_add_ps(lo, hi)
    }

    /// `out[j] = q . k_j`: eight key rows at a time, each with an
    /// accumulator of its own, summed across lanes together (`reduce8`).
    /// `k.len() == out.len() * q.len()`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn row_scores<T: super::KvElem>(q: &[f32], k: &[T], out: &mut [f32]) {
        let d = q.len();
        let n = out.len();
        let dv = d - d % 8;
        let (pq, pk) = (q.as_ptr(), k.as_ptr());
        let mut j = 0;
        while j + 8 <= n {
            let mut acc = [_mm256_setzero_ps(); 8];
            let mut x = 0;
            while x < dv {
                let qv = _mm256_loadu_ps(pq.add(x));
                for (u, a) in acc.iter_mut().enumerate() {
                    *a = _mm256_fmadd_ps(qv, T::load8(pk.add((j + u) * d + x)), *a);
                }
                x += 8;
            }
            let mut sums = [0f32; 8];
            _mm256_storeu_ps(sums.as_mut_ptr(), reduce8(acc));
            for (u, s) in sums.iter_mut().enumerate() {
                for x in dv..d {
                    *s += q[x] * k[(j + u) * d + x].f32();
                }
            }
            out[j..j + 8].copy_from_slice(&sums);
            j += 8;
        }
        for (jj, o) in out.iter_mut().enumerate().skip(j) {
            let mut acc = _mm256_setzero_ps();
            let mut x = 0;
            while x < dv {
                acc = _mm256_fmadd_ps(_mm256_loadu_ps(pq.add(x)), T::load8(pk.add(jj * d + x)), acc);
                x += 8;
            }
            let mut s = hsum(acc);
            for x in dv..d {
                s += q[x] * k[jj * d + x].f32();
            }
            *o = s;
        }
    }

    /// `out += sum_j p[j] * v_j`: 64 columns at a time held in registers
    /// across all rows, then 8 at a time, then the last few.
    /// `v.len() == p.len() * out.len()`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn weighted_rows<T: super::KvElem>(p: &[f32], v: &[T], out: &mut [f32]) {
        let d = out.len();
        let pv = v.as_ptr();
        let mut c = 0;
        while c + 64 <= d {
            let mut acc = [_mm256_setzero_ps(); 8];
            for (u, a) in acc.iter_mut().enumerate() {
                *a = _mm256_loadu_ps(out.as_ptr().add(c + 8 * u));
            }
            for (j, &pj) in p.iter().enumerate() {
                let w = _mm256_set1_ps(pj);
                let row = pv.add(j * d + c);
                for (u, a) in acc.iter_mut().enumerate() {
                    *a = _mm256_fmadd_ps(w, T::load8(row.add(8 * u)), *a);
                }
            }
            for (u, a) in acc.iter().enumerate() {
                _mm256_storeu_ps(out.as_mut_ptr().add(c + 8 * u), *a);
            }
            c += 64;
        }
        while c + 8 <= d {
            let mut acc = _mm256_loadu_ps(out.as_ptr().add(c));
            for (j, &pj) in p.iter().enumerate() {
                acc = _mm256_fmadd_ps(_mm256_set1_ps(pj), T::load8(pv.add(j * d + c)), acc);
            }
            _mm256_storeu_ps(out.as_mut_ptr().add(c), acc);
            c += 8;
        }
        for x in c..d {
            out[x] += p
                .iter()
                .enumerate()
                .map(|(j, &pj)| pj * v[j * d + x].f32())
                .sum::<f32>();
        }
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn silu_mul8(g: __m256, u: __m256) -> __m256 {
        let neg_g = _mm256_sub_ps(_mm256_setzero_ps(), g);
        let denom = _mm256_add_ps(_mm256_set1_ps(1.0), exp8(neg_g));
        _mm256_mul_ps(_mm256_div_ps(g, denom), u)
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn silu_mul(gate: &[f32], up: &[f32], out: &mut [f32]) {
        let mut g = gate.chunks_exact(8);
        let mut u = up.chunks_exact(8);
        let mut o = out.chunks_exact_mut(8);
        for ((g, u), o) in (&mut g).zip(&mut u).zip(&mut o) {
            let y = silu_mul8(_mm256_loadu_ps(g.as_ptr()), _mm256_loadu_ps(u.as_ptr()));
            _mm256_storeu_ps(o.as_mut_ptr(), y);
        }
        let (g, u, o) = (g.remainder(), u.remainder(), o.into_remainder());
        if !g.is_empty() {
            store_partial(o, silu_mul8(load_partial(g, 0.0), load_partial(u, 0.0)));
        }
    }
}
