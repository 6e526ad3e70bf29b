//! The Q4_1 matmul kernels of the patched candle-core (patches/candle-core):
//! a quantized matmul must match the same weights dequantized and multiplied
//! in f32, for one row (decoding) and for many rows (reading a prompt, the
//! four-rows-at-a-time path plus a remainder).

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
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
