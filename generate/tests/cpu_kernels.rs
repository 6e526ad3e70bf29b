//! The CPU kernels of the patched mistral.rs
//! (patches/mistralrs-core/src/docent_kernels.rs): the vectorized `exp`,
//! the masked softmax and `silu(gate) * up` against f64 references, and the
//! blocked CPU attention (prompts and decoded tokens) against the same
//! attention written with plain candle ops, mistral.rs's own formula:
//! repeated key/value heads, scores scaled, the mask added, softmax, times v.

use candle_core::{DType, Device, Tensor, D};
use mistralrs_core::docent_kernels::{cpu_attention, exp, silu_mul, softmax_masked_row};

/// A seeded sequence of floats in [-1, 1) (xorshift), so failures repeat.
fn noise(seed: u64, n: usize) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// `noise(seed, ..)` shaped as `dims`, times `amp`, on the CPU.
fn noise_tensor(seed: u64, dims: (usize, usize, usize, usize), amp: f64) -> Tensor {
    let (b, h, n, d) = dims;
    Tensor::from_vec(noise(seed, b * h * n * d), dims, &Device::Cpu)
        .and_then(|t| t * amp)
        .expect("tensor")
}

#[test]
fn exp_is_within_a_few_ulp_of_f64_and_zero_below_the_normal_range() {
    // Every 1/64 from -87 to 88.3, an odd count for the partial block.
    let xs: Vec<f32> = (0..(175 * 64 + 21)).map(|i| -87.0 + i as f32 / 64.0).collect();
    let mut got = vec![0f32; xs.len()];
    exp(&xs, &mut got);
    let mut worst = 0f64;
    for (&x, &y) in xs.iter().zip(&got) {
        let want = f64::from(x).exp();
        let rel = (f64::from(y) - want).abs() / want;
        worst = worst.max(rel);
    }
    // f32 has a relative spacing of 1.2e-7 at most; 4e-7 is a few ulp.
    assert!(worst < 4e-7, "worst relative error {worst:e}");

    let low = [f32::NEG_INFINITY, -1e30, -200.0, -90.0, -87.5];
    let mut out = [1f32; 5];
    exp(&low, &mut out);
    assert_eq!(out, [0.0; 5], "exp below ln(2^-126) must be exactly 0");
    let mut one = [0f32; 1];
    exp(&[0.0], &mut one);
    assert_eq!(one[0], 1.0);
    let mut high = [0f32; 2];
    exp(&[89.0, f32::INFINITY], &mut high);
    assert_eq!(high, [f32::INFINITY; 2], "overflow must be inf");
}

fn softmax_reference(src: &[f32], mask: Option<&[f32]>, scale: f32) -> Vec<f64> {
    let xs: Vec<f64> = src
        .iter()
        .enumerate()
        .map(|(i, &s)| f64::from(s) * f64::from(scale) + mask.map_or(0.0, |m| f64::from(m[i])))
        .collect();
    let max = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let es: Vec<f64> = xs.iter().map(|x| (x - max).exp()).collect();
    let sum: f64 = es.iter().sum();
    es.iter().map(|e| e / sum).collect()
}

#[test]
fn masked_softmax_matches_f64_for_every_length_and_causal_row() {
    for n in (1..=40).chain([63, 64, 65, 973]) {
        let src: Vec<f32> = noise(n as u64, n).iter().map(|x| x * 30.0).collect();
        // A causal row: the first `open` positions visible, the rest -inf.
        for open in [1, n.div_ceil(2), n] {
            let mask: Vec<f32> = (0..n).map(|j| if j < open { 0.0 } else { f32::NEG_INFINITY }).collect();
            for m in [None, Some(mask.as_slice())] {
                let mut got = vec![f32::NAN; n];
                softmax_masked_row(&src, m, 0.125, &mut got);
                let want = softmax_reference(&src, m, 0.125);
                for (j, (&g, &w)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        (f64::from(g) - w).abs() < 1e-6,
                        "n {n}, open {open}, mask {}: position {j} got {g}, want {w}",
                        m.is_some()
                    );
                    if m.is_some() && j >= open {
                        assert_eq!(g, 0.0, "masked position {j} must be exactly 0");
                    }
                }
                let total: f64 = got.iter().map(|&g| f64::from(g)).sum();
                assert!((total - 1.0).abs() < 1e-5, "n {n}: row sums to {total}");
            }
        }
    }
    // A row with every position masked gives zeros, not NaN.
    let mut got = [f32::NAN; 9];
    softmax_masked_row(&[1.0; 9], Some(&[f32::NEG_INFINITY; 9]), 1.0, &mut got);
    assert_eq!(got, [0.0; 9]);
}

#[test]
fn silu_mul_matches_f64() {
    for n in [1, 7, 8, 9, 1536] {
        let g: Vec<f32> = noise(7 + n as u64, n).iter().map(|x| x * 12.0).collect();
        let u = noise(99 + n as u64, n);
        let mut out = vec![f32::NAN; n];
        silu_mul(&g, &u, &mut out);
        for i in 0..n {
            let (gf, uf) = (f64::from(g[i]), f64::from(u[i]));
            let want = gf / (1.0 + (-gf).exp()) * uf;
            assert!(
                (f64::from(out[i]) - want).abs() <= 1e-6 * (1.0 + want.abs()),
                "n {n}, i {i}: got {}, want {want}",
                out[i]
            );
        }
    }
    // Far outside the exp range: silu(g) is g for large g, 0 for very negative g.
    let g = [100.0f32, -100.0, 1e30, -1e30];
    let mut out = [f32::NAN; 4];
    silu_mul(&g, &[1.0; 4], &mut out);
    assert_eq!(out[0], 100.0);
    assert!(out[1].abs() < 1e-30 && out[3] == 0.0, "{out:?}");
    assert_eq!(out[2], 1e30);
}

/// mistral.rs's attention for a prompt, in plain candle ops.
fn attention_reference(q: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>, scale: f64, groups: usize) -> Tensor {
    let (b, kv_heads, kv_len, d) = k.dims4().expect("k dims");
    let repeat = |x: &Tensor| {
        Tensor::cat(&vec![x; groups], 2)
            .and_then(|t| t.reshape((b, kv_heads * groups, kv_len, d)))
            .expect("repeat_kv")
    };
    let (k, v) = (repeat(k), repeat(v));
    let mut att = (q.matmul(&k.t().expect("t")).expect("qk") * scale).expect("scale");
    if let Some(m) = mask {
        att = att.broadcast_add(m).expect("mask");
    }
    let max = att.max_keepdim(D::Minus1).expect("max");
    let e = att.broadcast_sub(&max).and_then(|t| t.exp()).expect("exp");
    let p = e
        .broadcast_div(&e.sum_keepdim(D::Minus1).expect("sum"))
        .expect("softmax");
    p.matmul(&v).expect("pv")
}

fn causal_mask(seq: usize, past: usize, dev: &Device) -> Tensor {
    let kv_len = past + seq;
    let m: Vec<f32> = (0..seq)
        .flat_map(|i| (0..kv_len).map(move |j| if j <= past + i { 0.0 } else { f32::NEG_INFINITY }))
        .collect();
    Tensor::from_vec(m, (seq, kv_len), dev).expect("mask")
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .and_then(|d| d.abs())
        .and_then(|d| d.flatten_all())
        .and_then(|d| d.max(0))
        .and_then(|d| d.to_scalar::<f32>())
        .expect("diff")
}

/// `cpu_attention` gives q's shape and is within 1e-4 of
/// `attention_reference` on contiguous f32 copies of `k` and `v`.
fn assert_attention_matches(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: Option<&Tensor>,
    scale: f64,
    groups: usize,
    what: &str,
) {
    let got = cpu_attention(q, k, v, mask, scale as f32, groups)
        .expect("cpu attention")
        .expect("f32 on the CPU is handled");
    let wide = |t: &Tensor| t.to_dtype(DType::F32).and_then(|t| t.contiguous()).expect("f32 copy");
    let (kc, vc) = (wide(k), wide(v));
    let want = attention_reference(q, &kc, &vc, mask, scale, groups);
    assert_eq!(got.dims(), q.dims(), "{what}: output shape");
    let diff = max_abs_diff(&got, &want);
    assert!(diff < 1e-4, "{what}: max difference {diff}");
}

#[test]
fn cpu_attention_matches_mistralrs_formula() {
    let dev = Device::Cpu;
    // SmolLM2-135M's heads: 9 query heads over 3 key/value heads of 64.
    let (heads, kv_heads, d) = (9, 3, 64);
    let scale = 1.0 / (d as f64).sqrt();
    // 300 rows = two full blocks of 128 and a partial one; a past of 5 is a
    // prompt that continues a cached prefix; one row with no mask is a
    // decoded token. Up to 4 rows take the direct path (no matmuls): masked
    // rows after a past (the first of 4 rows with no past sees one
    // position), a context long enough to run in parallel; 5 rows are the
    // first that go through the blocked matmuls again.
    let cases = [
        (1, 300, 0, true),
        (1, 300, 5, true),
        (2, 37, 0, true),
        (1, 50, 0, false),
        (1, 1, 200, false),
        (2, 1, 9, false),
        (1, 3, 40, true),
        (2, 4, 0, true),
        (1, 1, 1500, false),
        (1, 4, 1500, true),
        (2, 2, 700, true),
        (1, 5, 10, true),
    ];
    for (b, seq, past, masked) in cases {
        let kv_len = past + seq;
        let t = |seed: u64, h: usize, n: usize| noise_tensor(seed, (b, h, n, d), 3.0);
        let q = t(1, heads, seq);
        // Keys and values as the KV cache hands them over: the first kv_len
        // positions of a larger buffer, read in place.
        let k = t(2, kv_heads, kv_len + 16).narrow(2, 0, kv_len).expect("k view");
        let v = t(3, kv_heads, kv_len + 16).narrow(2, 0, kv_len).expect("v view");
        let mask = masked.then(|| causal_mask(seq, past, &dev));
        let what = format!("b {b}, seq {seq}, past {past}");
        assert_attention_matches(&q, &k, &v, mask.as_ref(), scale, heads / kv_heads, &what);
    }
}

/// Decoding (up to 4 query rows) computes each row without matmuls, eight
/// key positions and 64 head values at a time: head sizes with remainders
/// of both, and contexts of a few positions more or less than a multiple of
/// eight.
#[test]
fn cpu_attention_for_decoding_handles_any_head_size_and_context() {
    let dev = Device::Cpu;
    let (heads, kv_heads) = (4, 2);
    for d in [3, 8, 20, 64, 80, 136] {
        for (seq, past) in [(1, 0), (1, 7), (1, 16), (2, 9), (4, 21), (3, 130)] {
            let kv_len = past + seq;
            let t = |seed: u64, h: usize, n: usize| noise_tensor(seed, (1, h, n, d), 2.0);
            let q = t(11, heads, seq);
            let k = t(12, kv_heads, kv_len + 3).narrow(2, 0, kv_len).expect("k view");
            let v = t(13, kv_heads, kv_len + 3).narrow(2, 0, kv_len).expect("v view");
            let scale = 1.0 / (d as f64).sqrt();
            for masked in [false, true] {
                let mask = masked.then(|| causal_mask(seq, past, &dev));
                let what = format!("d {d}, seq {seq}, past {past}, masked {masked}");
                assert_attention_matches(&q, &k, &v, mask.as_ref(), scale, heads / kv_heads, &what);
            }
        }
    }
}

/// A long context is split into key ranges for the threads, each with its
/// own softmax, merged afterwards: masks that close a whole range for some
/// rows (open only at the start, only at the end), that close positions
/// inside a range, and finite biases instead of 0/-inf; and rows whose
/// every position is masked, which give zeros.
#[test]
fn cpu_attention_for_decoding_merges_key_ranges() {
    let dev = Device::Cpu;
    let (heads, kv_heads, d) = (9, 3, 64);
    let scale = 1.0 / (d as f64).sqrt();
    for kv_len in [40, 1500, 3001] {
        let t = |seed: u64, h: usize, n: usize| noise_tensor(seed, (1, h, n, d), 3.0);
        let q = t(21, heads, 4);
        let k = t(22, kv_heads, kv_len);
        let v = t(23, kv_heads, kv_len);
        let (start, end) = (kv_len / 15, kv_len * 3 / 5);
        let m: Vec<f32> = (0..4)
            .flat_map(|r| {
                (0..kv_len).map(move |j| match r {
                    0 if j >= start => f32::NEG_INFINITY,
                    1 if j < end => f32::NEG_INFINITY,
                    2 if j % 3 == 1 => f32::NEG_INFINITY,
                    3 => -((j % 7) as f32),
                    _ => 0.0,
                })
            })
            .collect();
        let mask = Tensor::from_vec(m, (4, kv_len), &dev).expect("mask");
        let what = format!("kv_len {kv_len}, partial masks");
        assert_attention_matches(&q, &k, &v, Some(&mask), scale, heads / kv_heads, &what);

        let closed = Tensor::full(f32::NEG_INFINITY, (1, kv_len), &dev).expect("mask");
        let got = cpu_attention(&q.narrow(2, 0, 1).expect("row"), &k, &v, Some(&closed), scale as f32, 3)
            .expect("cpu attention")
            .expect("handled");
        let values = got.flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("values");
        assert_eq!(values.len(), heads * d, "kv_len {kv_len}: output shape");
        assert!(
            values.iter().all(|&x| x == 0.0),
            "kv_len {kv_len}: a row with every position masked gives zeros"
        );
    }
}

/// The KV cache in f16 (docent's default on the CPU): keys and values
/// widened as they are read, on the decoding path (split or not) and on
/// the prompt path, against the same attention on their f32 values.
#[test]
fn cpu_attention_reads_an_f16_cache() {
    let dev = Device::Cpu;
    let (heads, kv_heads, d) = (9, 3, 64);
    let scale = 1.0 / (d as f64).sqrt();
    for (seq, past) in [(1, 0), (1, 37), (1, 1500), (3, 40), (4, 700), (300, 5)] {
        let kv_len = past + seq;
        let t = |seed: u64, h: usize, n: usize| noise_tensor(seed, (1, h, n, d), 3.0);
        let q = t(31, heads, seq);
        let half = |seed: u64| {
            t(seed, kv_heads, kv_len + 5)
                .to_dtype(DType::F16)
                .and_then(|t| t.narrow(2, 0, kv_len))
                .expect("f16 view")
        };
        let (k, v) = (half(32), half(33));
        assert_eq!(k.dtype(), DType::F16);
        let mask = (seq > 1).then(|| causal_mask(seq, past, &dev));
        let what = format!("f16 cache, seq {seq}, past {past}");
        assert_attention_matches(&q, &k, &v, mask.as_ref(), scale, heads / kv_heads, &what);
    }
}

/// docent keeps the KV cache in f16 on the CPU for a model computing in
/// f32 (f32 with `DOCENT_CPU_KERNELS=off`), and leaves other dtypes alone.
#[test]
fn the_kv_cache_is_f16_on_the_cpu() {
    use mistralrs_core::docent_kernels::{enabled, kv_cache_dtype};
    let want = if enabled() { DType::F16 } else { DType::F32 };
    assert_eq!(kv_cache_dtype(DType::F32, &Device::Cpu), want);
    assert_eq!(kv_cache_dtype(DType::BF16, &Device::Cpu), DType::BF16);
    assert_eq!(kv_cache_dtype(DType::F16, &Device::Cpu), DType::F16);
}

#[test]
fn cpu_attention_declines_what_it_does_not_handle() {
    let dev = Device::Cpu;
    let q = Tensor::zeros((1, 4, 8, 16), DType::F32, &dev).expect("q");
    let k = Tensor::zeros((1, 2, 8, 16), DType::F32, &dev).expect("k");
    // A 4-d mask is left to mistral.rs's own path.
    let mask4 = Tensor::zeros((1, 1, 8, 8), DType::F32, &dev).expect("mask");
    assert!(cpu_attention(&q, &k, &k, Some(&mask4), 0.25, 2).expect("ok").is_none());
    // Head counts that do not divide into groups.
    assert!(cpu_attention(&q, &k, &k, None, 0.25, 3).expect("ok").is_none());
    // Half precision.
    let h = |t: &Tensor| t.to_dtype(DType::F16).expect("f16");
    assert!(cpu_attention(&h(&q), &h(&k), &h(&k), None, 0.25, 2)
        .expect("ok")
        .is_none());
}

/// mistral.rs's `Auto` dtype on the CPU (GGUF models always load with it):
/// F32 in the patched build, so attention and the KV cache stay in the
/// precision the CPU computes in, instead of bf16 through converting paths.
#[test]
fn auto_dtype_on_the_cpu_is_f32() {
    use mistralrs_core::{ModelDType, TryIntoDType};
    let dtype = ModelDType::Auto.try_into_dtype(&[&Device::Cpu]).expect("auto dtype");
    assert_eq!(dtype, DType::F32);
}
