//! The Q4_1 matmul kernels of the patched candle-core (patches/candle-core):
//! a quantized matmul must match the same weights dequantized and multiplied
//! in f32, for one row (decoding) and for many rows (reading a prompt, the
//! four-rows-at-a-time path plus a remainder, and for 16 rows and more the
//! tile path of a CPU with AMX-INT8 or AVX-512 VNNI); and stacking weights
//! row-wise by bytes, which the patched mistral.rs relies on to fuse
//! projections.

use std::borrow::Cow;
use std::sync::Arc;

use candle_core::quantized::k_quants::{matmul, BlockQ4_1, BlockQ8_1, GgmlType};
use candle_core::quantized::{GgmlDType, QMatMul, QStorage, QTensor};
use candle_core::{Device, Module, Tensor};

fn max_rel_err(got: &Tensor, want: &Tensor) -> f32 {
    let got = got.flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("got");
    let want = want.flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("want");
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
    got.iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs() / scale)
        .fold(0f32, f32::max)
}

/// `n x k` random weights, and the same quantized to Q4_1 blocks by candle.
fn random_q4_1(n: usize, k: usize) -> (Vec<f32>, Vec<BlockQ4_1>) {
    let w: Vec<f32> = Tensor::randn(0f32, 1.0, (n * k,), &Device::Cpu)
        .and_then(|t| t.to_vec1())
        .expect("weights");
    let mut blocks = vec![BlockQ4_1::zeros(); n * k / 32];
    BlockQ4_1::from_float(&w, &mut blocks);
    (w, blocks)
}

/// A quantized matmul of `dtype` weights (576 = SmolLM2-135M's hidden size,
/// 18 blocks of 32; 100 output rows) against the same weights dequantized
/// and multiplied in f32, for each row count in `ms`: only the activations'
/// rounding separates the two, within `tol` of the largest output.
fn assert_matches_dequantized(dtype: GgmlDType, ms: &[usize], tol: f32) {
    let dev = Device::Cpu;
    let (k, n) = (576, 100);
    let w = Tensor::randn(0f32, 1.0, (n, k), &dev).expect("weights");
    let q = QTensor::quantize(&w, dtype).expect("quantize");
    let w_deq = q.dequantize(&dev).expect("dequantize");
    let mm = QMatMul::from_qtensor(q).expect("qmatmul");
    for &m in ms {
        let x = Tensor::randn(0f32, 1.0, (m, k), &dev).expect("input");
        let got = mm.forward(&x).expect("quantized matmul");
        let want = x.matmul(&w_deq.t().expect("t")).expect("f32 matmul");
        assert_eq!(got.dims(), &[m, n]);
        let err = max_rel_err(&got, &want);
        assert!(err < tol, "{dtype:?}, m = {m}: max error {err} of the largest output");
    }
}

#[test]
fn q4_1_matmul_matches_dequantized_f32() {
    assert_matches_dequantized(GgmlDType::Q4_1, &[1, 3, 4, 7, 16, 33, 100], 0.02);
}

/// The Q8_0 dot product (SmolLM2's output head) for one row and a few: 18
/// blocks, four groups of four and a remainder of two.
#[test]
fn q8_0_matmul_matches_dequantized_f32() {
    assert_matches_dequantized(GgmlDType::Q8_0, &[1, 3], 0.01);
}

/// The matmul quantizes its activations to Q8_1 in SIMD; the blocks must be
/// candle's own (`BlockQ8_1::from_float`) bit for bit, ties included (values
/// half way between two steps round away from zero). One row through
/// `k_quants::matmul` takes the same one-row kernel as `vec_dot`, so the
/// outputs must be equal. (`QMatMul` may take the tiled AVX-512 VNNI path,
/// whose sums run in another order; the next test covers it.)
#[test]
fn activations_are_quantized_exactly_as_candle_does() {
    let dev = Device::Cpu;
    let (k, n) = (576, 40);
    let kb = k / 32;
    let (_, w_blocks) = random_q4_1(n, k);
    let random: Vec<f32> = Tensor::randn(0f32, 1.0, (k,), &dev)
        .and_then(|t| t.to_vec1())
        .expect("input");
    // Block by block: an amax of 127 makes the scale exactly 1, so x.5
    // values are ties; then zeros, tiny values and wide ranges.
    let ties: Vec<f32> = (0..k)
        .map(|i| match i % 32 {
            0 => 127.0,
            j => (j as f32 - 16.0) + 0.5,
        })
        .collect();
    let mixed: Vec<f32> = (0..k)
        .map(|i| match (i / 32) % 4 {
            0 => 0.0,
            1 => random[i] * 1e-30,
            // Wide, but not so wide that a block's f16 sum `s` overflows
            // (at 1e4 it can: inf from two blocks then sums to NaN).
            2 => random[i] * 1e2,
            _ => random[i],
        })
        .collect();
    for (name, x) in [("random", &random), ("ties", &ties), ("mixed", &mixed)] {
        let mut y_blocks = vec![BlockQ8_1::zeros(); kb];
        BlockQ8_1::from_float(x, &mut y_blocks);
        let want: Vec<f32> = (0..n)
            .map(|c| BlockQ4_1::vec_dot(k, &w_blocks[c * kb..(c + 1) * kb], &y_blocks))
            .collect();
        let mut got = vec![0f32; n];
        matmul((1, k, n), x, &w_blocks, &mut got).expect("matmul");
        assert_eq!(got, want, "{name}");
    }
}

/// `QMatMul` on Q4_1 weights keeps, on a CPU with AVX-512 VNNI, a copy of
/// the weights laid out for `vpdpbusd` and takes it for any number of rows
/// (register tiles of 8 tokens x 16 columns). It must give what the plain
/// quantized matmul (`k_quants::matmul`, no cached layout) gives: the same
/// quantized activations, so only the order of the float sums differs. On
/// other CPUs both are the same path and the check still holds.
#[test]
fn cached_weight_layout_matches_the_plain_matmul() {
    let dev = Device::Cpu;
    eprintln!(
        "Q4_1 kernel for many rows on this CPU: {}",
        candle_core::quantized::q4_1_prompt_kernel()
    );
    // 100 and 37 columns: full tiles of 16 and a partial one (4, 5).
    for (k, n) in [(576, 100), (1536, 37)] {
        let (w, w_blocks) = random_q4_1(n, k);
        let q = QTensor::quantize(&Tensor::from_vec(w, (n, k), &dev).expect("w"), GgmlDType::Q4_1).expect("quantize");
        let mm = QMatMul::from_qtensor(q).expect("qmatmul");
        // Rows: decoding one sequence or a few, partial and whole register
        // tiles, and a prompt (twice: the layout is made once, then reused).
        for m in [1, 2, 3, 5, 8, 9, 16, 17, 40, 1, 40] {
            let x: Vec<f32> = Tensor::randn(0f32, 1.0, (m * k,), &dev)
                .and_then(|t| t.to_vec1())
                .expect("input");
            let mut want = vec![0f32; m * n];
            matmul((m, k, n), &x, &w_blocks, &mut want).expect("plain matmul");
            let got = mm
                .forward(&Tensor::from_vec(x, (m, k), &dev).expect("x"))
                .and_then(|t| t.flatten_all())
                .and_then(|t| t.to_vec1::<f32>())
                .expect("QMatMul");
            let scale = want.iter().fold(0f32, |a, v| a.max(v.abs()));
            let err = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs() / scale)
                .fold(0f32, f32::max);
            assert!(
                err < 1e-5,
                "k = {k}, n = {n}, m = {m}: max error {err} of the largest output"
            );
        }
    }
}

/// Many rows at once (the four-row kernel; AMX tiles of 16 tokens x 16
/// columns with a partial last tile of each; or AVX-512 VNNI register tiles
/// of 8 tokens x 16 columns, with partial tiles of 1 to 7 tokens) give, row for row, what each
/// row gives alone (the one-row kernel that decoding uses): both quantize a
/// row's activations the same way, so only the order of the float sums over
/// blocks differs.
#[test]
fn many_rows_at_once_match_each_row_alone() {
    let dev = Device::Cpu;
    let kernel = candle_core::quantized::q4_1_prompt_kernel();
    eprintln!("Q4_1 kernel for many rows on this CPU: {kernel}");
    // 100 and 37 columns: full tiles of 16 and a partial one (4, 5). k =
    // 576 and 1536: SmolLM2-135M's hidden and MLP sizes (18 and 48 blocks).
    // Rows: one tile, a tile and a row, ..., eight tiles and five rows.
    for (k, n) in [(576, 100), (1536, 37)] {
        let w = Tensor::randn(0f32, 1.0, (n, k), &dev).expect("weights");
        let mm = QMatMul::from_qtensor(QTensor::quantize(&w, GgmlDType::Q4_1).expect("quantize")).expect("qmatmul");
        for m in [16, 17, 31, 48, 133] {
            let x = Tensor::randn(0f32, 1.0, (m, k), &dev).expect("input");
            let all = mm.forward(&x).expect("all rows");
            for r in 0..m {
                let row = x.narrow(0, r, 1).expect("row");
                let alone = mm.forward(&row).expect("one row");
                let got = all.narrow(0, r, 1).expect("narrow");
                let err = max_rel_err(&got, &alone);
                assert!(
                    err < 1e-5,
                    "{kernel}, k = {k}, m = {m}, row {r}: max error {err} of the largest output"
                );
            }
        }
    }
}

/// The patched mistral.rs (patches/mistralrs-core, `Projections`) fuses the
/// q, k and v weights (and gate and up) of a layer by concatenating their
/// bytes. That is sound only if GGML blocks never straddle two rows, so the
/// stacked weight's rows are the original rows and one matmul gives, column
/// for column, the numbers the separate matmuls give.
#[test]
fn stacking_weight_rows_is_concatenating_bytes() {
    let dev = Device::Cpu;
    let k = 576;
    for dtype in [GgmlDType::Q4_1, GgmlDType::Q8_0, GgmlDType::F32] {
        // q, k and v of SmolLM2-135M scaled down: 64, 32 and 32 rows.
        let parts: Vec<Arc<QTensor>> = [64, 32, 32]
            .iter()
            .map(|&rows| {
                let w = Tensor::randn(0f32, 1.0, (rows, k), &dev).expect("weights");
                Arc::new(QTensor::quantize(&w, dtype).expect("quantize"))
            })
            .collect();
        let mut bytes = Vec::new();
        for p in &parts {
            bytes.extend_from_slice(&p.data().expect("bytes"));
        }
        // Borrowed: candle 0.10's CPU `from_data` reads an owned Cow after
        // dropping it (the first block came back as garbage).
        let storage = QStorage::from_data(Cow::Borrowed(&bytes), &dev, dtype).expect("storage");
        let stacked = QTensor::new(storage, (128, k)).expect("stacked");
        let stacked = QMatMul::from_qtensor(stacked).expect("qmatmul");
        for m in [1, 5] {
            let x = Tensor::randn(0f32, 1.0, (m, k), &dev).expect("input");
            let fused = stacked.forward(&x).expect("fused matmul");
            let mut start = 0;
            for p in &parts {
                let rows = p.shape().dims2().expect("2-d").0;
                let mm = QMatMul::from_arc(Arc::clone(p)).expect("qmatmul");
                let want = mm.forward(&x).expect("separate matmul");
                let got = fused.narrow(1, start, rows).expect("narrow");
                let got = got.contiguous().expect("contiguous");
                let at = format!("{dtype:?}, m = {m}, rows {start}..{}", start + rows);
                if dtype == GgmlDType::F32 {
                    // Unquantized weights go through gemm, whose blocking
                    // (and so its summation order) follows the width.
                    let err = max_rel_err(&got, &want);
                    assert!(err < 1e-5, "{at}: max error {err}");
                } else {
                    assert_eq!(
                        got.to_vec2::<f32>().expect("got"),
                        want.to_vec2::<f32>().expect("want"),
                        "{at}"
                    );
                }
                start += rows;
            }
        }
    }
}
