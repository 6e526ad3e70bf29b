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
//!   rows) skips the matmuls: each query head's scores are taken eight key
//!   positions at a time and its weighted sum of value rows is held in
//!   registers, from the cache's buffer in place. This replaces mistral.rs's
//!   scalar per-position loop, whose cost grows with the context (at 1k
//!   cached tokens it took most of each token), and a gemm whose packing of
//!   the whole key/value head and padding of a few rows to its tile cost
//!   more than the products.
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
    *HAS.get_or_init(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
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
    assert_eq!(src.len(), dst.len(), "softmax: lengths differ");
    if let Some(m) = mask {
        assert_eq!(m.len(), src.len(), "softmax: mask length differs");
    }
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU has AVX2 and FMA (checked above); lengths are equal.
        unsafe { x86::softmax_masked_row(src, mask, scale, dst) };
        return;
    }
    let mut max = f32::NEG_INFINITY;
    for (i, (d, &s)) in dst.iter_mut().zip(src).enumerate() {
        *d = s * scale + mask.map_or(0.0, |m| m[i]);
        max = max.max(*d);
    }
    if max == f32::NEG_INFINITY {
        dst.fill(0.0);
        return;
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
    if q.dtype() != DType::F32
        || k.dtype() != DType::F32
        || v.dtype() != DType::F32
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
    let k = matmul_operand(k)?;
    let v = matmul_operand(v)?;
    if seq <= DIRECT_MAX_ROWS {
        return direct_attention(&q, &k, &v, mask, scale, n_kv_groups);
    }

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

/// `cpu_attention` for a few query rows: per query row, the dot products
/// with every open key position, the masked softmax, and the weighted sum
/// of the value rows, all read in place. `k` and `v` have rows of
/// `head_dim` contiguous values (`matmul_operand`); `q` is contiguous.
fn direct_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: Option<&[f32]>,
    scale: f32,
    n_kv_groups: usize,
) -> Result<Option<Tensor>> {
    let (b, heads, seq, d) = q.dims4()?;
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
    fn head_rows<'a>(
        data: &'a [f32],
        layout: &candle_core::Layout,
        (bi, h): (usize, usize),
        len: usize,
    ) -> Option<&'a [f32]> {
        let s = layout.stride();
        let first = layout.start_offset() + bi * s[0] + h * s[1];
        data.get(first..first + len)
    }
    let k_all = k_cpu.as_slice::<f32>()?;
    let v_all = v_cpu.as_slice::<f32>()?;
    if k_layout.stride()[2] != d || v_layout.stride()[2] != d {
        return Ok(None);
    }
    // Every (batch, query head) pair's key and value rows, checked once.
    let mut kv = Vec::with_capacity(b * heads);
    for bi in 0..b {
        for h in 0..heads {
            let kvh = h / n_kv_groups;
            match (
                head_rows(k_all, k_layout, (bi, kvh), kv_len * d),
                head_rows(v_all, v_layout, (bi, kvh), kv_len * d),
            ) {
                (Some(kr), Some(vr)) => kv.push((kr, vr)),
                _ => return Ok(None),
            }
        }
    }

    let mut out = vec![0f32; b * heads * seq * d];
    // One task per (batch, query head): its `seq` rows.
    let task = |i: usize, dst: &mut [f32]| {
        let (kr, vr) = kv[i];
        let mut scores = vec![0f32; kv_len];
        let mut probs = vec![0f32; kv_len];
        for r in 0..seq {
            let qr = &q_all[(i * seq + r) * d..(i * seq + r + 1) * d];
            let m = mask.map(|m| &m[r * kv_len..(r + 1) * kv_len]);
            let open = match m {
                Some(m) => m
                    .iter()
                    .rposition(|&x| x != f32::NEG_INFINITY)
                    .map_or(0, |p| p + 1),
                None => kv_len,
            };
            let o = &mut dst[r * d..(r + 1) * d];
            if open == 0 {
                // Every position masked: zeros, as the softmax gives.
                continue;
            }
            row_scores(qr, &kr[..open * d], &mut scores[..open]);
            softmax_masked_row(
                &scores[..open],
                m.map(|m| &m[..open]),
                scale,
                &mut probs[..open],
            );
            weighted_rows(&probs[..open], &vr[..open * d], o);
        }
    };
    if b * heads * seq * kv_len * d >= DIRECT_PARALLEL_MIN {
        out.par_chunks_mut(seq * d)
            .enumerate()
            .for_each(|(i, dst)| task(i, dst));
    } else {
        for (i, dst) in out.chunks_mut(seq * d).enumerate() {
            task(i, dst);
        }
    }
    drop((q_guard, k_guard, v_guard));
    Ok(Some(Tensor::from_vec(out, (b, heads, seq, d), q.device())?))
}

/// `out[j] = q . k_j` for the rows `k_j` of `k` (`q.len()` values each,
/// `out.len()` rows).
fn row_scores(q: &[f32], k: &[f32], out: &mut [f32]) {
    let d = q.len();
    assert_eq!(k.len(), out.len() * d, "row_scores: shapes differ");
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU has AVX2 and FMA (checked above); shapes checked.
        unsafe { x86::row_scores(q, k, out) };
        return;
    }
    for (o, kr) in out.iter_mut().zip(k.chunks_exact(d)) {
        *o = q.iter().zip(kr).map(|(a, b)| a * b).sum();
    }
}

/// `out = sum_j p[j] * v_j` over the rows `v_j` of `v` (`out.len()` values
/// each, `p.len()` rows).
fn weighted_rows(p: &[f32], v: &[f32], out: &mut [f32]) {
    let d = out.len();
    assert_eq!(v.len(), p.len() * d, "weighted_rows: shapes differ");
    #[cfg(target_arch = "x86_64")]
    if has_avx2_fma() {
        // SAFETY: the CPU has AVX2 and FMA (checked above); shapes checked.
        unsafe { x86::weighted_rows(p, v, out) };
        return;
    }
    out.fill(0.0);
    for (&pj, vr) in p.iter().zip(v.chunks_exact(d)) {
        for (o, &x) in out.iter_mut().zip(vr) {
            *o += pj * x;
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
    #[target_feature(enable = "avx2,fma")]
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
    #[target_feature(enable = "avx2,fma")]
    unsafe fn hmax(v: __m256) -> f32 {
        let m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        let m = _mm_max_ss(m, _mm_shuffle_ps::<0b01>(m, m));
        _mm_cvtss_f32(m)
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps::<0b01>(s, s));
        _mm_cvtss_f32(s)
    }

    /// Lanes `0..n` of a partial block: loaded, or `fill` past `n`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn load_partial(src: &[f32], fill: f32) -> __m256 {
        let mut buf = [fill; 8];
        buf[..src.len()].copy_from_slice(src);
        _mm256_loadu_ps(buf.as_ptr())
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn store_partial(dst: &mut [f32], v: __m256) {
        let mut buf = [0f32; 8];
        _mm256_storeu_ps(buf.as_mut_ptr(), v);
        let n = dst.len();
        dst.copy_from_slice(&buf[..n]);
    }

    #[target_feature(enable = "avx2,fma")]
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

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn softmax_masked_row(
        src: &[f32],
        mask: Option<&[f32]>,
        scale: f32,
        dst: &mut [f32],
    ) {
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
            return;
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
        let inv = 1.0 / hsum(vsum);
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
    }

    /// Eight lanes summed into one: lane `u` of the result is the sum of
    /// the lanes of `a[u]`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
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
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn row_scores(q: &[f32], k: &[f32], out: &mut [f32]) {
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
                    *a = _mm256_fmadd_ps(qv, _mm256_loadu_ps(pk.add((j + u) * d + x)), *a);
                }
                x += 8;
            }
            let mut sums = [0f32; 8];
            _mm256_storeu_ps(sums.as_mut_ptr(), reduce8(acc));
            for (u, s) in sums.iter_mut().enumerate() {
                for x in dv..d {
                    *s += q[x] * k[(j + u) * d + x];
                }
            }
            out[j..j + 8].copy_from_slice(&sums);
            j += 8;
        }
        for (jj, o) in out.iter_mut().enumerate().skip(j) {
            let mut acc = _mm256_setzero_ps();
            let mut x = 0;
            while x < dv {
                acc = _mm256_fmadd_ps(_mm256_loadu_ps(pq.add(x)), _mm256_loadu_ps(pk.add(jj * d + x)), acc);
                x += 8;
            }
            let mut s = hsum(acc);
            for x in dv..d {
                s += q[x] * k[jj * d + x];
            }
            *o = s;
        }
    }

    /// `out = sum_j p[j] * v_j`: 64 columns at a time held in registers
    /// across all rows, then 8 at a time, then the last few.
    /// `v.len() == p.len() * out.len()`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn weighted_rows(p: &[f32], v: &[f32], out: &mut [f32]) {
        let d = out.len();
        let pv = v.as_ptr();
        let mut c = 0;
        while c + 64 <= d {
            let mut acc = [_mm256_setzero_ps(); 8];
            for (j, &pj) in p.iter().enumerate() {
                let w = _mm256_set1_ps(pj);
                let row = pv.add(j * d + c);
                for (u, a) in acc.iter_mut().enumerate() {
                    *a = _mm256_fmadd_ps(w, _mm256_loadu_ps(row.add(8 * u)), *a);
                }
            }
            for (u, a) in acc.iter().enumerate() {
                _mm256_storeu_ps(out.as_mut_ptr().add(c + 8 * u), *a);
            }
            c += 64;
        }
        while c + 8 <= d {
            let mut acc = _mm256_setzero_ps();
            for (j, &pj) in p.iter().enumerate() {
                acc = _mm256_fmadd_ps(_mm256_set1_ps(pj), _mm256_loadu_ps(pv.add(j * d + c)), acc);
            }
            _mm256_storeu_ps(out.as_mut_ptr().add(c), acc);
            c += 8;
        }
        for x in c..d {
            out[x] = p.iter().enumerate().map(|(j, &pj)| pj * v[j * d + x]).sum();
        }
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn silu_mul8(g: __m256, u: __m256) -> __m256 {
        let neg_g = _mm256_sub_ps(_mm256_setzero_ps(), g);
        let denom = _mm256_add_ps(_mm256_set1_ps(1.0), exp8(neg_g));
        _mm256_mul_ps(_mm256_div_ps(g, denom), u)
    }

    #[target_feature(enable = "avx2,fma")]
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
