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
//!   matmul instead of one per row;
//! - on a CPU with AMX-INT8 (Intel Xeon since Sapphire Rapids), 16 or more
//!   rows go through [`matmul_q4_1_amx`]: tiles of 16 tokens x 16 weight
//!   columns, one `tdpbsud` (signed activations x unsigned nibbles) per block
//!   of 32, the block scales applied to the 16 x 16 sums in AVX-512. AMX
//!   instructions are written as inline assembly (their intrinsics are not
//!   stable Rust); Linux must grant the process the tile state first
//!   (`arch_prctl`), and `DOCENT_AMX=off` turns the path off for A/B runs;
//! - on a CPU with AVX-512 VNNI, [`matmul_q4_1_tiled`] runs over the weights
//!   laid out once for `vpdpbusd` ([`Q4_1Tiles`], cached by `QTensor`, so
//!   decoding takes it too; AMX keeps 16 rows or more): one 512-bit
//!   `vpdpbusd` multiplies 4 elements of 16 weight columns by 4 elements of a
//!   token (a broadcast load), 8 tokens per register tile, a block's nibbles
//!   unpacked once per tile (`DOCENT_VNNI_TILES=off` turns it off).

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

/// The kernel [`matmul_q4_1`] takes for many rows on this CPU.
pub(crate) fn kernel_name() -> &'static str {
    if !has_avx2_fma() {
        "scalar"
    } else if has_amx() {
        "amx"
    } else if has_avx512_vnni() {
        "avx512-vnni-tiles"
    } else if has_vnni() {
        "avx512-vnni"
    } else {
        "avx2"
    }
}

/// From this many rows (tokens) on, a CPU with AMX-INT8 takes the tile path.
const AMX_MIN_ROWS: usize = 16;
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
    if m >= AMX_MIN_ROWS && kb > 0 && has_amx() {
        // SAFETY: AMX-INT8 and AVX-512F detected, tile data granted; sizes
        // checked above, m, n and kb not 0.
        unsafe { matmul_q4_1_amx((m, k, n), lhs, rhs, dst) };
        return;
    }
    let vnni = has_vnni();
    if m >= VNNI_MIN_ROWS && kb > 0 && has_avx512_vnni() {
        // SAFETY: AVX-512F, BW, VL and VNNI detected; sizes checked above.
        unsafe { matmul_q4_1_tiled((m, k, n), lhs, &Q4_1Tiles::new(rhs, n, kb), dst) };
        return;
    }
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

/// A Q4_1 block's scale and min as `[d, m, 0, 0]`: one 32-bit load and one
/// vector conversion. (A scalar `f16::to_f32` compiles to `vpinsrw` into
/// whatever register is free, often an accumulator, which chains every block
/// to the previous block's sums.)
#[inline(always)]
unsafe fn dm(x: &BlockQ4_1) -> __m128 {
    _mm_cvtph_ps(_mm_cvtsi32_si128(std::ptr::read_unaligned(x as *const BlockQ4_1 as *const i32)))
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
            let spread = _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1);
            for i in 0..n {
                let xb = x.get_unchecked(i);
                let qx = nibbles(&xb.qs);
                let dm = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(dm(xb)), spread);
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
            // Four chains, so consecutive blocks do not wait on each other;
            // lane 0 of `p` is dx * dy, lane 1 mx * sy (summed in `ms`).
            let mut acc = [_mm256_setzero_ps(); 4];
            let mut ms = [_mm_setzero_ps(); 4];
            let mut i = 0;
            while i < n {
                let lanes = (n - i).min(4);
                for j in 0..lanes {
                    let xb = x.get_unchecked(i + j);
                    let s = _mm_castpd_ps(_mm_load_sd(sc.as_ptr().add(i + j) as *const f64));
                    let p = _mm_mul_ps(dm(xb), s);
                    ms[j] = _mm_add_ps(ms[j], p);
                    let d = $dot(nibbles(&xb.qs), load_qy(y.get_unchecked(i + j)));
                    acc[j] = _mm256_fmadd_ps(_mm256_broadcastss_ps(p), d, acc[j]);
                }
                i += lanes;
            }
            let a = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
            let m = _mm_add_ps(_mm_add_ps(ms[0], ms[1]), _mm_add_ps(ms[2], ms[3]));
            hsum(a) + _mm_cvtss_f32(_mm_movehdup_ps(m))
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

/// `BlockQ8_1::from_float` for `m` rows of `k` values (the activations of a
/// Q4_1 matmul): the same blocks, bit for bit (scale `amax / 127`, values
/// rounded half away from zero, `s` as the f16 product candle computes), in
/// AVX2 instead of a scalar loop with a `roundf` call per value, and rows in
/// parallel when there are many.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C ([`has_avx2_fma`]).
pub(crate) unsafe fn quantize_q8_1(xs: &[f32], k: usize, ys: &mut [BlockQ8_1]) {
    let kb = k / 32;
    assert!(k % 32 == 0 && xs.len() == ys.len() * 32);
    if kb == 0 {
        return;
    }
    let rows = ys.len() / kb;
    // SAFETY (both arms): features checked by the caller; each row of ys
    // has kb blocks and its row of xs kb * 32 values.
    if rows >= 2 * ROWS {
        ys.par_chunks_mut(kb)
            .zip(xs.par_chunks(k))
            .with_min_len(8)
            .for_each(|(y, x)| unsafe { quantize_row_q8_1(x, y) });
    } else {
        unsafe { quantize_row_q8_1(xs, ys) };
    }
}

/// One or more rows (blocks are independent); see [`quantize_q8_1`].
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn quantize_row_q8_1(xs: &[f32], ys: &mut [BlockQ8_1]) {
    assert!(xs.len() >= ys.len() * 32);
    let abs = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
    let sign = _mm256_castsi256_ps(_mm256_set1_epi32(i32::MIN));
    // nextafter(0.5, 0): t + copysign(this, t), truncated, rounds half away
    // from zero exactly as f32::round does.
    let half = _mm256_set1_ps(0.499_999_97);
    let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (i, y) in ys.iter_mut().enumerate() {
        let p = xs.as_ptr().add(i * 32);
        let v = [_mm256_loadu_ps(p), _mm256_loadu_ps(p.add(8)), _mm256_loadu_ps(p.add(16)), _mm256_loadu_ps(p.add(24))];
        let m = _mm256_max_ps(
            _mm256_max_ps(_mm256_and_ps(v[0], abs), _mm256_and_ps(v[1], abs)),
            _mm256_max_ps(_mm256_and_ps(v[2], abs), _mm256_and_ps(v[3], abs)),
        );
        let m4 = _mm_max_ps(_mm256_extractf128_ps(m, 1), _mm256_castps256_ps128(m));
        let m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        let m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        let amax = _mm_cvtss_f32(m4);
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        y.d = half::f16::from_f32(d);
        let idv = _mm256_set1_ps(id);
        let q = v.map(|v| {
            let t = _mm256_mul_ps(v, idv);
            let r = _mm256_add_ps(t, _mm256_or_ps(_mm256_and_ps(t, sign), half));
            _mm256_cvttps_epi32(r)
        });
        let s = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
        let s4 = _mm_add_epi32(_mm256_extracti128_si256(s, 1), _mm256_castsi256_si128(s));
        let s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0b01_00_11_10));
        let s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0b10_11_00_01));
        let sum = _mm_cvtsi128_si32(s4);
        let b = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
        _mm256_storeu_si256(y.qs.as_mut_ptr() as *mut __m256i, _mm256_permutevar8x32_epi32(b, order));
        y.s = half::f16::from_f32(sum as f32) * y.d;
    }
}

// ---------------------------------------------------------------- AMX ----

/// AMX-INT8 is usable: the CPU has it and Linux granted this process the
/// tile data state (`arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`).
pub(crate) fn has_amx() -> bool {
    static AMX: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AMX.get_or_init(|| {
        if std::env::var_os("DOCENT_AMX").is_some_and(|v| v == "off") {
            return false;
        }
        let l7 = __cpuid_count(7, 0);
        let cpu = (l7.edx >> 24) & 1 == 1 && (l7.edx >> 25) & 1 == 1; // AMX-TILE, AMX-INT8
        cpu && is_x86_feature_detected!("avx512f") && request_tile_data()
    })
}

#[cfg(target_os = "linux")]
fn request_tile_data() -> bool {
    const SYS_ARCH_PRCTL: i64 = 158;
    const ARCH_REQ_XCOMP_PERM: i64 = 0x1023;
    const XFEATURE_XTILEDATA: i64 = 18;
    let ret: i64;
    // SAFETY: a plain system call; it only changes this process's
    // permitted xsave features. The kernel clobbers rcx and r11.
    unsafe {
        std::arch::asm!("syscall",
            inlateout("rax") SYS_ARCH_PRCTL => ret,
            in("rdi") ARCH_REQ_XCOMP_PERM, in("rsi") XFEATURE_XTILEDATA,
            lateout("rcx") _, lateout("r11") _, options(nostack));
    }
    ret == 0
}

#[cfg(not(target_os = "linux"))]
fn request_tile_data() -> bool {
    false
}

/// The 64-byte operand of `ldtilecfg` (palette 1).
#[repr(C, align(64))]
struct TileCfg {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    colsb: [u16; 16],
    rows: [u8; 16],
}

impl TileCfg {
    /// Two sets of three tiles, so one block's tile work can run while the
    /// previous block's sums are scaled: tmm0 and tmm3 = C (16 tokens x 16
    /// columns, i32), tmm1 and tmm4 = A (16 tokens x 32 signed bytes),
    /// tmm2 and tmm5 = B (8 rows of 16 columns x 4 unsigned bytes).
    fn two_sets() -> Self {
        let mut cfg = TileCfg { palette: 1, start_row: 0, reserved: [0; 14], colsb: [0; 16], rows: [0; 16] };
        for base in [0, 3] {
            (cfg.colsb[base], cfg.rows[base]) = (64, 16);
            (cfg.colsb[base + 1], cfg.rows[base + 1]) = (32, 16);
            (cfg.colsb[base + 2], cfg.rows[base + 2]) = (64, 8);
        }
        cfg
    }
}

const TILE: usize = 16;

/// One feature tile's weights for AMX, per block: B in the layout `tdpbsud`
/// reads (row kk holds, for each of 16 features, elements 4kk..4kk+3 as
/// unsigned nibble values), and the features' scales `d` and mins `m`.
struct PreppedB {
    b: Vec<[u8; 512]>,
    d: Vec<[f32; TILE]>,
    m: Vec<[f32; TILE]>,
}

fn prep_b(rhs: &[BlockQ4_1], kb: usize, c0: usize, n: usize, p: &mut PreppedB) {
    const LOW: u128 = 0x0F0F_0F0F_0F0F_0F0F_0F0F_0F0F_0F0F_0F0F;
    p.b.resize(kb, [0u8; 512]);
    p.d.resize(kb, [0f32; TILE]);
    p.m.resize(kb, [0f32; TILE]);
    let cols = TILE.min(n - c0);
    for blk in 0..kb {
        let (bb, dd, mm) = (&mut p.b[blk], &mut p.d[blk], &mut p.m[blk]);
        if cols < TILE {
            bb.fill(0);
            dd.fill(0.0);
            mm.fill(0.0);
        }
        for f in 0..cols {
            let x = &rhs[(c0 + f) * kb + blk];
            dd[f] = x.d.to_f32();
            mm[f] = x.m.to_f32();
            // Elements 0..16 are the low nibbles, 16..32 the high ones;
            // B's row kk holds elements 4kk..4kk+4 of each feature.
            let q = u128::from_le_bytes(x.qs);
            let halves = [q & LOW, (q >> 4) & LOW];
            for (h, v) in halves.iter().enumerate() {
                for w in 0..4 {
                    let kk = h * 4 + w;
                    let word = (*v >> (32 * w)) as u32;
                    bb[kk * 64 + f * 4..kk * 64 + f * 4 + 4].copy_from_slice(&word.to_le_bytes());
                }
            }
        }
    }
}

/// `matmul_q4_1` with AMX tiles: 16 tokens x 16 features per tile, one
/// `tdpbsud` per block of 32, block scales applied in AVX-512.
///
/// # Safety
/// [`has_amx`] returned true; called by [`matmul_q4_1`] after its size
/// checks, with `m`, `n` and `k / 32` not 0 (slices are still indexed with
/// bounds checks).
unsafe fn matmul_q4_1_amx((m, k, n): (usize, usize, usize), lhs: &[BlockQ8_1], rhs: &[BlockQ4_1], dst: &mut [f32]) {
    let kb = k / 32;
    debug_assert!(m > 0 && n > 0 && kb > 0 && lhs.len() == m * kb && rhs.len() == n * kb && dst.len() >= m * n);
    // Token scales per block, f32: [d, s].
    let ys: Vec<[f32; 2]> = lhs.iter().map(|y| [y.d.to_f32(), y.s.to_f32()]).collect();
    // The last partial tile of tokens, padded with zero rows.
    let full = m / TILE;
    let tail_rows = m - full * TILE;
    let mut tail = Vec::new();
    let mut tail_ys = Vec::new();
    if tail_rows > 0 {
        tail = lhs[full * TILE * kb..].to_vec();
        tail_ys = ys[full * TILE * kb..].to_vec();
        let zero = BlockQ8_1 { d: half::f16::ZERO, s: half::f16::ZERO, qs: [0; 32] };
        tail.resize(TILE * kb, zero);
        tail_ys.resize(TILE * kb, [0.0, 0.0]);
    }
    let out = Dst(dst.as_mut_ptr());
    let (out, ys, tail, tail_ys) = (&out, &ys, &tail, &tail_ys);
    let ftiles = n.div_ceil(TILE);
    (0..ftiles).into_par_iter().for_each_init(
        || PreppedB { b: Vec::new(), d: Vec::new(), m: Vec::new() },
        |p, ft| {
            prep_b(rhs, kb, ft * TILE, n, p);
            let cols = TILE.min(n - ft * TILE);
            let cfg = TileCfg::two_sets();
            // SAFETY: AMX is available and granted (caller); the config is
            // valid. Tile state is per thread: each task configures its own.
            unsafe { std::arch::asm!("ldtilecfg [{}]", in(reg) &cfg as *const TileCfg, options(nostack, readonly)) };
            for tt in 0..full + usize::from(tail_rows > 0) {
                let (a, s, rows) = if tt < full {
                    (&lhs[tt * TILE * kb..(tt + 1) * TILE * kb], &ys[tt * TILE * kb..(tt + 1) * TILE * kb], TILE)
                } else {
                    (&tail[..], &tail_ys[..], tail_rows)
                };
                // SAFETY: as above; a and s hold 16 rows of kb blocks.
                let acc = unsafe { amx_tile(a, s, kb, p) };
                for r in 0..rows {
                    let row = tt * TILE + r;
                    for (c, v) in acc[r][..cols].iter().enumerate() {
                        // SAFETY: row < m, column < n; feature tiles are disjoint.
                        unsafe { out.write(row * n + ft * TILE + c, *v) };
                    }
                }
            }
            // SAFETY: releases this thread's tile state.
            unsafe { std::arch::asm!("tilerelease", options(nostack, nomem)) };
        },
    );
}

/// One block of 16 tokens (`a`: their first row's 32 quantized values, rows
/// `stride` bytes apart) against a column tile's block (`b`, 512 bytes),
/// into `buf` (16 x 16 i32), on tile set `set` (0: tmm0-2, 1: tmm3-5).
///
/// # Safety
/// Tiles configured by [`TileCfg::two_sets`]; `a`, `b` and `buf` valid for
/// the rows read and written.
#[inline(always)]
unsafe fn amx_block(set: usize, a: *const u8, stride: usize, b: *const u8, buf: *mut [i32; TILE]) {
    if set == 0 {
        std::arch::asm!(
            "tilezero tmm0",
            "tileloadd tmm1, [{a} + {sa}*1]",
            "tileloadd tmm2, [{b} + {sb}*1]",
            "tdpbsud tmm0, tmm1, tmm2",
            "tilestored [{c} + {sb}*1], tmm0",
            a = in(reg) a, sa = in(reg) stride, b = in(reg) b, sb = in(reg) 64usize, c = in(reg) buf,
            options(nostack));
    } else {
        std::arch::asm!(
            "tilezero tmm3",
            "tileloadd tmm4, [{a} + {sa}*1]",
            "tileloadd tmm5, [{b} + {sb}*1]",
            "tdpbsud tmm3, tmm4, tmm5",
            "tilestored [{c} + {sb}*1], tmm3",
            a = in(reg) a, sa = in(reg) stride, b = in(reg) b, sb = in(reg) 64usize, c = in(reg) buf,
            options(nostack));
    }
}

/// 16 tokens (`a`: 16 rows of kb Q8_1 blocks, `s`: their [d, s]) against the
/// prepared feature tile; returns the 16 x 16 outputs:
/// `sum_blocks(dx * dy * (qx . qy) + mx * sy)`, as in [`matmul_q4_1`].
///
/// # Safety
/// AVX-512F, and tiles configured by [`TileCfg::two_sets`] on this thread.
#[target_feature(enable = "avx512f")]
unsafe fn amx_tile(a: &[BlockQ8_1], s: &[[f32; 2]], kb: usize, p: &PreppedB) -> [[f32; TILE]; TILE] {
    assert!(a.len() >= TILE * kb && s.len() >= TILE * kb && p.b.len() >= kb);
    let mut acc = [_mm512_setzero_ps(); TILE];
    let mut buf = [[[0i32; TILE]; TILE]; 2];
    const BLOCK: usize = std::mem::size_of::<BlockQ8_1>();
    let stride = kb * BLOCK;
    let base = (a.as_ptr() as *const u8).add(4); // qs after d and s
    amx_block(0, base, stride, p.b[0].as_ptr(), buf[0].as_mut_ptr());
    for blk in 0..kb {
        // The next block's tile work first, on the other tile set.
        if blk + 1 < kb {
            let nb = blk + 1;
            amx_block(nb & 1, base.add(nb * BLOCK), stride, p.b[nb].as_ptr(), buf[nb & 1].as_mut_ptr());
        }
        let buf = &buf[blk & 1];
        let dx = _mm512_loadu_ps(p.d[blk].as_ptr());
        let mx = _mm512_loadu_ps(p.m[blk].as_ptr());
        for r in 0..TILE {
            let ys = s.get_unchecked(r * kb + blk);
            let c = _mm512_cvtepi32_ps(_mm512_loadu_si512(buf[r].as_ptr() as *const _));
            let sc = _mm512_mul_ps(_mm512_set1_ps(ys[0]), dx);
            acc[r] = _mm512_fmadd_ps(c, sc, acc[r]);
            acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(ys[1]), mx, acc[r]);
        }
    }
    let mut out = [[0f32; TILE]; TILE];
    for r in 0..TILE {
        _mm512_storeu_ps(out[r].as_mut_ptr(), acc[r]);
    }
    out
}

// ------------------------------------------------------- AVX-512 VNNI ----

/// From this many rows (tokens) on, a CPU with AVX-512 VNNI but no AMX
/// lays a matmul's weights out for [`matmul_q4_1_tiled`] on the fly; fewer
/// rows take the four-row and one-row kernels unless the weights' layout is
/// cached ([`Q4_1Tiles`], kept by `QTensor`).
const VNNI_MIN_ROWS: usize = 16;
/// Tokens per register tile of [`vnni_tile`]: 8 weight registers, 8 i32
/// and 8 f32 accumulators and the scales fit the 32 zmm registers.
const VNNI_ROWS: usize = 8;

/// One block of 32 elements of 16 features (one tile), laid out for
/// `vpdpbusd`: lane `f` of register `j` holds bytes `4j..4j + 4` of feature
/// `f`'s nibbles, that is elements `4j..4j + 4` in the low nibbles and
/// `16 + 4j..16 + 4j + 4` in the high ones; then the features' scales and
/// mins. 320 bytes, the size of 16 Q4_1 blocks.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct TiledBlock {
    q: [[u8; 64]; 4],
    d: [half::f16; TILE],
    m: [half::f16; TILE],
}
const _: () = assert!(std::mem::size_of::<TiledBlock>() == 320);

/// Q4_1 weights (`n` features of `kb` blocks) laid out for the AVX-512 VNNI
/// kernel: tile after tile of 16 features, each tile's blocks in order, the
/// last tile padded with zero features. The same size as the weights.
pub(crate) struct Q4_1Tiles {
    n: usize,
    kb: usize,
    blocks: Vec<TiledBlock>,
}

impl Q4_1Tiles {
    /// Lays out `rhs` (`n` features of `kb` Q4_1 blocks, feature after
    /// feature). On the caller's thread: it runs inside `OnceLock::get_or_init`
    /// (a rayon worker waiting there could steal a task that asks the same
    /// lock again), and once per tensor.
    pub(crate) fn new(rhs: &[BlockQ4_1], n: usize, kb: usize) -> Self {
        assert!(rhs.len() == n * kb);
        let zero = TiledBlock { q: [[0; 64]; 4], d: [half::f16::ZERO; TILE], m: [half::f16::ZERO; TILE] };
        let mut blocks = vec![zero; n.div_ceil(TILE) * kb];
        if kb > 0 {
            blocks.chunks_mut(kb).enumerate().for_each(|(ft, tile)| {
                for f in 0..TILE.min(n - ft * TILE) {
                    let x = &rhs[(ft * TILE + f) * kb..(ft * TILE + f + 1) * kb];
                    for (t, x) in tile.iter_mut().zip(x) {
                        for j in 0..4 {
                            t.q[j][f * 4..f * 4 + 4].copy_from_slice(&x.qs[4 * j..4 * j + 4]);
                        }
                        t.d[f] = x.d;
                        t.m[f] = x.m;
                    }
                }
            });
        }
        Self { n, kb, blocks }
    }

    /// Whether this layout is of a matrix of `n` features of `kb` blocks.
    pub(crate) fn fits(&self, n: usize, kb: usize) -> bool {
        self.n == n && self.kb == kb
    }
}

/// The AVX-512 VNNI path is usable (`DOCENT_VNNI_TILES=off` turns it off
/// for A/B runs: many rows then take the four-row kernel, one row the
/// one-row kernel).
pub(crate) fn has_avx512_vnni() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| {
        std::env::var_os("DOCENT_VNNI_TILES").is_none_or(|v| v != "off")
            && has_vnni()
            && is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
    })
}

/// A matmul of `m` rows with cached [`Q4_1Tiles`] should take
/// [`matmul_q4_1_tiled`]: the CPU has AVX-512 VNNI (and AVX2, FMA, F16C),
/// and the rows are too few for AMX or AMX is not there.
pub(crate) fn use_tiles(m: usize) -> bool {
    has_avx2_fma() && has_avx512_vnni() && !(m >= AMX_MIN_ROWS && has_amx())
}

/// `matmul_q4_1` for weights laid out as [`Q4_1Tiles`], any number of rows:
/// each 512-bit `vpdpbusd` multiplies 4 elements of 16 features by 4
/// elements of one token (a broadcast 32-bit load), 8 tokens share each
/// weight register, and the nibbles of a block are unpacked once per 8
/// tokens.
///
/// # Safety
/// [`has_avx512_vnni`] returned true. `lhs.len() == m * k / 32`,
/// `tiles` fits `n` and `k / 32`, `dst.len() >= m * n` (checked, panics
/// otherwise).
pub(crate) unsafe fn matmul_q4_1_tiled(
    (m, k, n): (usize, usize, usize),
    lhs: &[BlockQ8_1],
    tiles: &Q4_1Tiles,
    dst: &mut [f32],
) {
    let kb = k / 32;
    assert!(k % 32 == 0 && lhs.len() == m * kb && tiles.fits(n, kb) && dst.len() >= m * n);
    if m == 0 || n == 0 {
        return;
    }
    // Token scales per block, f32: [d, s].
    let ys: Vec<[f32; 2]> = lhs.iter().map(|y| [y.d.to_f32(), y.s.to_f32()]).collect();
    let out = Dst(dst.as_mut_ptr());
    let (out, ys) = (&out, &ys);
    let task = |ft: usize| {
        let t = &tiles.blocks[ft * kb..(ft + 1) * kb];
        let cols = TILE.min(n - ft * TILE);
        let mut r0 = 0;
        while r0 < m {
            let rows = VNNI_ROWS.min(m - r0);
            let (a, s) = (&lhs[r0 * kb..(r0 + rows) * kb], &ys[r0 * kb..(r0 + rows) * kb]);
            let mut acc = [[0f32; TILE]; VNNI_ROWS];
            // SAFETY: CPU features checked by the caller; a and s hold
            // `rows` rows of kb blocks, t holds kb blocks.
            unsafe {
                match rows {
                    8 => vnni_tile::<8>(a, s, t, &mut acc),
                    7 => vnni_tile::<7>(a, s, t, &mut acc),
                    6 => vnni_tile::<6>(a, s, t, &mut acc),
                    5 => vnni_tile::<5>(a, s, t, &mut acc),
                    4 => vnni_tile::<4>(a, s, t, &mut acc),
                    3 => vnni_tile::<3>(a, s, t, &mut acc),
                    2 => vnni_tile::<2>(a, s, t, &mut acc),
                    _ => vnni_tile::<1>(a, s, t, &mut acc),
                }
            }
            for (r, acc) in acc[..rows].iter().enumerate() {
                for (c, v) in acc[..cols].iter().enumerate() {
                    // SAFETY: row < m, column < n; feature tiles are disjoint.
                    unsafe { out.write((r0 + r) * n + ft * TILE + c, *v) };
                }
            }
            r0 += rows;
        }
    };
    let ntiles = n.div_ceil(TILE);
    // Few rows (decoding): a task of a few tiles costs microseconds, so
    // spread them over at most two tasks per thread.
    let min_len = if m < VNNI_ROWS { ntiles.div_ceil(2 * rayon::current_num_threads().max(1)) } else { 1 };
    (0..ntiles).into_par_iter().with_min_len(min_len).for_each(task);
}

/// `R` tokens (`a`: R rows of kb Q8_1 blocks, `s`: their [d, s]) against
/// one tile's kb blocks `t`, into `out[..R]`:
/// `sum_blocks(dx * dy * (qx . qy) + mx * sy)`, as in [`matmul_q4_1`].
///
/// # Safety
/// AVX-512F, BW, VL and VNNI.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn vnni_tile<const R: usize>(
    a: &[BlockQ8_1],
    s: &[[f32; 2]],
    t: &[TiledBlock],
    out: &mut [[f32; TILE]; VNNI_ROWS],
) {
    let kb = t.len();
    assert!(R <= VNNI_ROWS && a.len() >= R * kb && s.len() >= R * kb);
    let low = _mm512_set1_epi8(0x0F);
    let mut acc = [_mm512_setzero_ps(); R];
    for (blk, tb) in t.iter().enumerate() {
        let q: [__m512i; 4] = std::array::from_fn(|j| _mm512_load_si512(tb.q[j].as_ptr() as *const _));
        // Register j: elements 4j..4j+4 (j < 4) or 16 + 4(j-4).. (j >= 4),
        // which are bytes 4j.. of a Q8_1 block's values in both cases.
        let w: [__m512i; 8] = std::array::from_fn(|j| {
            if j < 4 {
                _mm512_and_si512(q[j], low)
            } else {
                _mm512_and_si512(_mm512_srli_epi16(q[j - 4], 4), low)
            }
        });
        let dx = _mm512_cvtph_ps(_mm256_load_si256(tb.d.as_ptr() as *const _));
        let mx = _mm512_cvtph_ps(_mm256_load_si256(tb.m.as_ptr() as *const _));
        for r in 0..R {
            let q = a.get_unchecked(r * kb + blk).qs.as_ptr() as *const i32;
            let mut c = _mm512_setzero_si512();
            for (j, w) in w.iter().enumerate() {
                c = _mm512_dpbusd_epi32(c, *w, _mm512_set1_epi32(std::ptr::read_unaligned(q.add(j))));
            }
            let ys = s.get_unchecked(r * kb + blk);
            acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(c), _mm512_mul_ps(_mm512_set1_ps(ys[0]), dx), acc[r]);
            acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(ys[1]), mx, acc[r]);
        }
    }
    for r in 0..R {
        _mm512_storeu_ps(out[r].as_mut_ptr(), acc[r]);
    }
}
