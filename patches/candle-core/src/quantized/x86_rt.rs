//! docent patch: x86-64 kernels chosen at run time.
//!
//! Upstream candle only has a scalar `vec_dot` for Q4_1 (the format of
//! docent's default model) and picks its other SIMD kernels at compile time.
//! These kernels are compiled with `#[target_feature]` and selected with
//! `is_x86_feature_detected!`, so a portable (x86-64 baseline) build still
//! gets them on a CPU that has AVX2 and FMA, and a CPU with AVX-512 VNNI
//! gets `vpdpbusd` for the byte dot products. The arithmetic follows
//! `ggml_vec_dot_q4_1_q8_1` in llama.cpp:
//! `sum_blocks(dx * dy * sum(qx * qy) + mx * sy)`.
//!
//! [`matmul_q4_1`] is the whole quantized matmul for Q4_1 weights:
//! - the activations' block scales are converted from f16 once per matmul
//!   (not once per weight column), packed four rows at a time;
//! - with four or more rows (reading a prompt), each task owns a few weight
//!   columns and walks the rows four at a time, so each weight block is
//!   unpacked once for four rows and stays in L1; one parallel dispatch per
//!   matmul instead of one per row.

use super::k_quants::{BlockQ4_1, BlockQ8_1};
use core::arch::x86_64::*;
use rayon::prelude::*;

#[inline]
pub(crate) fn has_avx2_fma() -> bool {
    // std caches the CPUID result; this is a load and a bit test.
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c")
}

#[inline]
fn has_vnni() -> bool {
    is_x86_feature_detected!("avx512vnni") && is_x86_feature_detected!("avx512vl")
}

/// Rows of the activations handled together.
const ROWS: usize = 4;
/// Weight columns per parallel task when reading a prompt.
const COLS_PER_TASK: usize = 8;

/// Destination shared by tasks that write disjoint elements.
struct Dst(*mut f32);
// SAFETY: every task writes a disjoint set of elements, and the buffer
// outlives the parallel loop (it is borrowed for the whole call).
unsafe impl Send for Dst {}
unsafe impl Sync for Dst {}
impl Dst {
    /// # Safety
    /// `idx` must be in bounds and written by one task only.
    #[inline]
    unsafe fn write(&self, idx: usize, v: f32) {
        *self.0.add(idx) = v;
    }
}

/// `dst (m x n) = lhs (m x k, as Q8_1 blocks) * rhs^T (n x k, Q4_1 blocks)`.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C ([`has_avx2_fma`]).
/// `lhs.len() == m * k / 32`, `rhs.len() == n * k / 32`, `dst.len() >= m * n`
/// and `k` a multiple of 32 (checked, panics otherwise: never UB).
pub(crate) unsafe fn matmul_q4_1(
    (m, k, n): (usize, usize, usize),
    lhs: &[BlockQ8_1],
    rhs: &[BlockQ4_1],
    dst: &mut [f32],
) {
    let kb = k / 32;
    assert!(k % 32 == 0 && lhs.len() == m * kb && rhs.len() == n * kb && dst.len() >= m * n);
    if m == 0 || n == 0 {
        return;
    }
    let vnni = has_vnni();
    let groups = m / ROWS;
    // Scales of each 4-row group, per block: [d0, d1, d2, d3, s0, s1, s2, s3].
    let mut packed = vec![[0f32; 8]; groups * kb];
    for g in 0..groups {
        for b in 0..kb {
            let p = &mut packed[g * kb + b];
            for r in 0..ROWS {
                let y = &lhs[(g * ROWS + r) * kb + b];
                p[r] = y.d.to_f32();
                p[ROWS + r] = y.s.to_f32();
            }
        }
    }
    // Scales of the rows outside whole groups: [d, s] per block.
    let rest = groups * ROWS;
    let single: Vec<[f32; 2]> = lhs[rest * kb..].iter().map(|y| [y.d.to_f32(), y.s.to_f32()]).collect();
    let out = Dst(dst.as_mut_ptr());
    let out = &out;
    let packed = &packed;
    let single = &single;

    let task = |cols: std::ops::Range<usize>| {
        for g in 0..groups {
            let ys: [&[BlockQ8_1]; ROWS] = std::array::from_fn(|r| &lhs[(g * ROWS + r) * kb..(g * ROWS + r + 1) * kb]);
            let sc = &packed[g * kb..(g + 1) * kb];
            for c in cols.clone() {
                let x = &rhs[c * kb..(c + 1) * kb];
                // SAFETY: features checked by the caller; all slices hold kb blocks.
                let v = unsafe {
                    if vnni {
                        rows4_vnni(x, ys, sc)
                    } else {
                        rows4_avx2(x, ys, sc)
                    }
                };
                for (r, v) in v.into_iter().enumerate() {
                    // SAFETY: row < m, c < n; columns are disjoint between tasks.
                    unsafe { out.write((g * ROWS + r) * n + c, v) };
                }
            }
        }
        for r in rest..m {
            let y = &lhs[r * kb..(r + 1) * kb];
            let sc = &single[(r - rest) * kb..(r - rest + 1) * kb];
            for c in cols.clone() {
                let x = &rhs[c * kb..(c + 1) * kb];
                // SAFETY: as above.
                let v = unsafe {
                    if vnni {
                        row1_vnni(x, y, sc)
                    } else {
                        row1_avx2(x, y, sc)
                    }
                };
                unsafe { out.write(r * n + c, v) };
            }
        }
    };

    if m < ROWS {
        // Decoding: spread the columns, at least 64 per task.
        let per = n.div_ceil(rayon::current_num_threads().max(1) * 4).max(64);
        (0..n.div_ceil(per))
            .into_par_iter()
            .for_each(|t| task(t * per..((t + 1) * per).min(n)));
    } else {
        (0..n.div_ceil(COLS_PER_TASK))
            .into_par_iter()
            .for_each(|t| task(t * COLS_PER_TASK..((t + 1) * COLS_PER_TASK).min(n)));
    }
}

/// 32 unsigned nibbles of a block as 32 bytes: low nibbles first, then high.
#[inline(always)]
unsafe fn nibbles(qs: &[u8; 16]) -> __m256i {
    let tmp = _mm_loadu_si128(qs.as_ptr() as *const __m128i);
    let bytes = _mm256_insertf128_si256::<1>(_mm256_castsi128_si256(tmp), _mm_srli_epi16(tmp, 4));
    _mm256_and_si256(_mm256_set1_epi8(0xF), bytes)
}

#[inline(always)]
unsafe fn load_qy(y: &BlockQ8_1) -> __m256i {
    _mm256_loadu_si256(y.qs.as_ptr() as *const __m256i)
}

#[inline(always)]
unsafe fn hsum(x: __m256) -> f32 {
    let res = _mm_add_ps(_mm256_extractf128_ps(x, 1), _mm256_castps256_ps128(x));
    let res = _mm_add_ps(res, _mm_movehl_ps(res, res));
    let res = _mm_add_ss(res, _mm_movehdup_ps(res));
    _mm_cvtss_f32(res)
}

/// Unsigned bytes `ux` times signed bytes `sy`, summed in groups of four
/// (8 i32 lanes), as floats: AVX2 (`vpmaddubsw` + `vpmaddwd`).
#[inline(always)]
unsafe fn dot_avx2(ux: __m256i, sy: __m256i) -> __m256 {
    let pairs = _mm256_maddubs_epi16(ux, sy);
    _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_set1_epi16(1), pairs))
}

/// The same with AVX-512 VNNI (`vpdpbusd`, 256-bit form).
#[inline(always)]
unsafe fn dot_vnni(ux: __m256i, sy: __m256i) -> __m256 {
    _mm256_cvtepi32_ps(_mm256_dpbusd_epi32(_mm256_setzero_si256(), ux, sy))
}

macro_rules! kernels {
    ($rows4:ident, $row1:ident, $dot:ident, $features:literal) => {
        /// One weight column against a group of four rows.
        ///
        /// # Safety
        /// CPU features as named; `ys[r]` and `sc` hold at least `x.len()` blocks.
        #[target_feature(enable = $features)]
        unsafe fn $rows4(x: &[BlockQ4_1], ys: [&[BlockQ8_1]; ROWS], sc: &[[f32; 8]]) -> [f32; ROWS] {
            let n = x.len();
            assert!(sc.len() >= n && ys.iter().all(|y| y.len() >= n));
            let (mut a0, mut a1, mut a2, mut a3) =
                (_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps());
            // High half: sum of mx * s_r per row (the low half is unused).
            let mut ms = _mm256_setzero_ps();
            for i in 0..n {
                let xb = x.get_unchecked(i);
                let qx = nibbles(&xb.qs);
                let dm = _mm256_set_m128(_mm_set1_ps(xb.m.to_f32()), _mm_set1_ps(xb.d.to_f32()));
                // [dx*d0 .. dx*d3, mx*s0 .. mx*s3]
                let s = _mm256_mul_ps(_mm256_loadu_ps(sc.get_unchecked(i).as_ptr()), dm);
                ms = _mm256_add_ps(ms, s);
                let p0 = $dot(qx, load_qy(ys[0].get_unchecked(i)));
                let p1 = $dot(qx, load_qy(ys[1].get_unchecked(i)));
                let p2 = $dot(qx, load_qy(ys[2].get_unchecked(i)));
                let p3 = $dot(qx, load_qy(ys[3].get_unchecked(i)));
                a0 = _mm256_fmadd_ps(_mm256_permutevar8x32_ps(s, _mm256_set1_epi32(0)), p0, a0);
                a1 = _mm256_fmadd_ps(_mm256_permutevar8x32_ps(s, _mm256_set1_epi32(1)), p1, a1);
                a2 = _mm256_fmadd_ps(_mm256_permutevar8x32_ps(s, _mm256_set1_epi32(2)), p2, a2);
                a3 = _mm256_fmadd_ps(_mm256_permutevar8x32_ps(s, _mm256_set1_epi32(3)), p3, a3);
            }
            let mut m = [0f32; 8];
            _mm256_storeu_ps(m.as_mut_ptr(), ms);
            [hsum(a0) + m[4], hsum(a1) + m[5], hsum(a2) + m[6], hsum(a3) + m[7]]
        }

        /// One weight column against one row (`sc`: [d, s] per block).
        ///
        /// # Safety
        /// CPU features as named; `y` and `sc` hold at least `x.len()` blocks.
        #[target_feature(enable = $features)]
        unsafe fn $row1(x: &[BlockQ4_1], y: &[BlockQ8_1], sc: &[[f32; 2]]) -> f32 {
            let n = x.len();
            assert!(sc.len() >= n && y.len() >= n);
            // Two accumulators: consecutive blocks do not wait on each other.
            let (mut a0, mut a1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            let mut summs = 0f32;
            let mut i = 0;
            while i + 1 < n {
                let (x0, x1) = (x.get_unchecked(i), x.get_unchecked(i + 1));
                let (s0, s1) = (sc.get_unchecked(i), sc.get_unchecked(i + 1));
                summs += x0.m.to_f32() * s0[1] + x1.m.to_f32() * s1[1];
                let p0 = $dot(nibbles(&x0.qs), load_qy(y.get_unchecked(i)));
                let p1 = $dot(nibbles(&x1.qs), load_qy(y.get_unchecked(i + 1)));
                a0 = _mm256_fmadd_ps(_mm256_set1_ps(x0.d.to_f32() * s0[0]), p0, a0);
                a1 = _mm256_fmadd_ps(_mm256_set1_ps(x1.d.to_f32() * s1[0]), p1, a1);
                i += 2;
            }
            if i < n {
                let (x0, s0) = (x.get_unchecked(i), sc.get_unchecked(i));
                summs += x0.m.to_f32() * s0[1];
                let p0 = $dot(nibbles(&x0.qs), load_qy(y.get_unchecked(i)));
                a0 = _mm256_fmadd_ps(_mm256_set1_ps(x0.d.to_f32() * s0[0]), p0, a0);
            }
            hsum(_mm256_add_ps(a0, a1)) + summs
        }
    };
}

kernels!(rows4_avx2, row1_avx2, dot_avx2, "avx2,fma,f16c");
kernels!(rows4_vnni, row1_vnni, dot_vnni, "avx2,fma,f16c,avx512vnni,avx512vl");

/// Dot product of a Q4_1 row with a Q8_1 row (`GgmlType::vec_dot`).
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C ([`has_avx2_fma`]).
pub(crate) unsafe fn vec_dot_q4_1_q8_1(xs: &[BlockQ4_1], ys: &[BlockQ8_1]) -> f32 {
    const STEP: usize = 64;
    let n = xs.len().min(ys.len());
    let vnni = has_vnni();
    let mut sc = [[0f32; 2]; STEP];
    let mut sum = 0f32;
    for start in (0..n).step_by(STEP) {
        let end = (start + STEP).min(n);
        for (s, y) in sc.iter_mut().zip(&ys[start..end]) {
            *s = [y.d.to_f32(), y.s.to_f32()];
        }
        let (x, y, s) = (&xs[start..end], &ys[start..end], &sc[..end - start]);
        sum += if vnni { row1_vnni(x, y, s) } else { row1_avx2(x, y, s) };
    }
    sum
}
