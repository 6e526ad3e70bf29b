//! The Q4_1 matmul kernels of the patched candle-core (patches/candle-core):
//! a quantized matmul must match the same weights dequantized and multiplied
//! in f32, for one row (decoding) and for many rows (reading a prompt, the
//! four-rows-at-a-time path plus a remainder); and stacking weights row-wise
//! by bytes, which the patched mistral.rs relies on to fuse projections.

use std::borrow::Cow;
use std::sync::Arc;

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

#[test]
fn q4_1_matmul_matches_dequantized_f32() {
    let dev = Device::Cpu;
    // 576 = SmolLM2-135M's hidden size (18 blocks of 32); 100 output rows.
    let (k, n) = (576, 100);
    let w = Tensor::randn(0f32, 1.0, (n, k), &dev).expect("weights");
    let q = QTensor::quantize(&w, GgmlDType::Q4_1).expect("quantize");
    let w_deq = q.dequantize(&dev).expect("dequantize");
    let mm = QMatMul::from_qtensor(q).expect("qmatmul");
    for m in [1, 3, 4, 7, 33] {
        let x = Tensor::randn(0f32, 1.0, (m, k), &dev).expect("input");
        let got = mm.forward(&x).expect("quantized matmul");
        let want = x.matmul(&w_deq.t().expect("t")).expect("f32 matmul");
        assert_eq!(got.dims(), &[m, n]);
        // Only the activations' Q8_1 rounding separates the two.
        let err = max_rel_err(&got, &want);
        assert!(err < 0.02, "m = {m}: max error {err} of the largest output");
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
