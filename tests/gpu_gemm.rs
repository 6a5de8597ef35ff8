//! cuBLASLt GEMM launchers against a CPU f64 reference.

mod common;

use wanrt::runtime::ops;
use wanrt::{DType, Tensor};

/// Error bound for a length-k dot product in `dt`, relative to the f64 reference: inputs are
/// quantized before the reference, so what remains is f32 accumulation (k·u32·Σ|xy|), the output
/// rounding (u_dt·|y|) and, with a bias, one more rounding of the product before the bias is added:
/// cuBLASLt's bias epilogue with a 16-bit output (measured on an H100; torch's F.linear takes the same
/// path) rounds x·wᵀ to the output dtype first, so its error grows with |x·wᵀ| = |y − b|, not |y|.
/// Twice the sum, as the design notes prescribe.
fn tolerance(dt: DType, k: usize, abs_sum: f64, bias: bool) -> (f64, f64) {
    let acc = k as f64 * common::eps(DType::F32) * abs_sum;
    let pre_bias = if dt == DType::F32 || !bias { 0.0 } else { common::eps(dt) * abs_sum };
    (2.0 * (acc + pre_bias) + 1e-30, 2.0 * common::eps(dt))
}

fn check_linear(dev: &std::sync::Arc<wanrt::runtime::gpu::Device>, rng: &mut rand::rngs::StdRng, dt: DType, m: usize, k: usize, n: usize, bias: bool) {
    let x = common::quantize(&common::randn(rng, m * k, 1.0), dt);
    let w = common::quantize(&common::randn(rng, n * k, 1.0 / (k as f32).sqrt()), dt);
    let b = common::quantize(&common::randn(rng, n, 0.5), dt);
    let tx = Tensor::from_f32(dev, &[m, k], dt, &x).unwrap();
    let tw = Tensor::from_f32(dev, &[n, k], dt, &w).unwrap();
    let tb = Tensor::from_f32(dev, &[n], dt, &b).unwrap();
    let out = Tensor::empty(dev, &[m, n], dt).unwrap();
    out.fill_nan().unwrap();
    ops::linear(&tx, &tw, bias.then_some(&tb), &out).unwrap();
    let got = out.to_f32_vec().unwrap();
    let mut want = vec![0f64; m * n];
    let mut worst_sum = 0f64;
    for i in 0..m {
        for j in 0..n {
            let mut s = if bias { b[j] as f64 } else { 0.0 };
            let mut a = s.abs();
            for p in 0..k {
                let prod = x[i * k + p] as f64 * w[j * k + p] as f64;
                s += prod;
                a += prod.abs();
            }
            worst_sum = worst_sum.max(a);
            want[i * n + j] = s;
        }
    }
    let (atol, rtol) = tolerance(dt, k, worst_sum, bias);
    common::assert_close(&format!("linear {dt} m{m} k{k} n{n} bias{bias}"), &got, &want, atol, rtol);
}

#[test]
fn linear_matches_reference_odd_sizes() {
    let Some(dev) = common::gpu("linear_matches_reference_odd_sizes") else { return };
    let mut rng = common::rng("linear");
    for dt in [DType::BF16, DType::F16, DType::F32] {
        for &(m, k, n) in &[(1, 8, 8), (37, 72, 53), (130, 264, 96), (257, 136, 72)] {
            for bias in [false, true] {
                check_linear(&dev, &mut rng, dt, m, k, n, bias);
            }
        }
    }
}

#[test]
fn batched_gemm_both_layouts_and_accumulate() {
    let Some(dev) = common::gpu("batched_gemm_both_layouts_and_accumulate") else { return };
    let mut rng = common::rng("gemm");
    let (batch, m, k, n) = (3, 45, 64, 29);
    for dt in [DType::BF16, DType::F32] {
        for b_t in [false, true] {
            for shared_b in [false, true] {
                let a = common::quantize(&common::randn(&mut rng, batch * m * k, 1.0), dt);
                let bsz = if shared_b { n * k } else { batch * n * k };
                let b = common::quantize(&common::randn(&mut rng, bsz, 0.2), dt);
                let c0 = common::quantize(&common::randn(&mut rng, batch * m * n, 1.0), dt);
                let ta = Tensor::from_f32(&dev, &[batch, m, k], dt, &a).unwrap();
                let bshape: Vec<usize> = match (shared_b, b_t) {
                    (true, true) => vec![n, k],
                    (true, false) => vec![k, n],
                    (false, true) => vec![batch, n, k],
                    (false, false) => vec![batch, k, n],
                };
                let tb = Tensor::from_f32(&dev, &bshape, dt, &b).unwrap();
                let out = Tensor::from_f32(&dev, &[batch, m, n], dt, &c0).unwrap();
                ops::gemm(&ta, &tb, b_t, 0.5, true, &out).unwrap();
                let got = out.to_f32_vec().unwrap();
                let mut want = vec![0f64; batch * m * n];
                for bi in 0..batch {
                    let boff = if shared_b { 0 } else { bi * n * k };
                    for i in 0..m {
                        for j in 0..n {
                            let mut s = 0f64;
                            for p in 0..k {
                                let bv = if b_t { b[boff + j * k + p] } else { b[boff + p * n + j] };
                                s += a[bi * m * k + i * k + p] as f64 * bv as f64;
                            }
                            want[bi * m * n + i * n + j] = 0.5 * s + c0[bi * m * n + i * n + j] as f64;
                        }
                    }
                }
                let (atol, rtol) = tolerance(dt, k, 0.2 * k as f64 * 2.0, false);
                common::assert_close(&format!("gemm {dt} bT{b_t} shared{shared_b}"), &got, &want, atol, rtol);
            }
        }
    }
}

#[test]
fn gemm_shape_errors() {
    let Some(dev) = common::gpu("gemm_shape_errors") else { return };
    let x = Tensor::empty(&dev, &[4, 8], DType::BF16).unwrap();
    let w = Tensor::empty(&dev, &[6, 9], DType::BF16).unwrap();
    let out = Tensor::empty(&dev, &[4, 6], DType::BF16).unwrap();
    let e = ops::linear(&x, &w, None, &out).unwrap_err();
    assert!(e.to_string().contains("input"), "{e}");
    let w = Tensor::empty(&dev, &[6, 8], DType::F32).unwrap();
    assert!(ops::linear(&x, &w, None, &out).is_err());
    let w = Tensor::empty(&dev, &[6, 8], DType::BF16).unwrap();
    let bias = Tensor::empty(&dev, &[5], DType::BF16).unwrap();
    assert!(ops::linear(&x, &w, Some(&bias), &out).is_err());
    let bad_out = Tensor::empty(&dev, &[4, 7], DType::BF16).unwrap();
    assert!(ops::linear(&x, &w, None, &bad_out).is_err());
}

/// `linear_stack`: G Linears of one input in one batched GEMM, each with its own bias (the bias batch
/// stride), against the f64 reference; odd sizes, NaN-poisoned output.
#[test]
fn linear_stack_matches_reference() {
    let Some(dev) = common::gpu("linear_stack_matches_reference") else { return };
    let mut rng = common::rng("linear_stack");
    for dt in [DType::BF16, DType::F16, DType::F32] {
        for &(g, m, k, n) in &[(3, 37, 72, 56), (3, 130, 256, 128), (2, 1, 64, 40), (4, 257, 136, 72)] {
            for bias in [false, true] {
                let x = common::quantize(&common::randn(&mut rng, m * k, 1.0), dt);
                let w = common::quantize(&common::randn(&mut rng, g * n * k, 1.0 / (k as f32).sqrt()), dt);
                let b = common::quantize(&common::randn(&mut rng, g * n, 0.5), dt);
                let tx = Tensor::from_f32(&dev, &[m, k], dt, &x).unwrap();
                let tw = Tensor::from_f32(&dev, &[g, n, k], dt, &w).unwrap();
                let tb = Tensor::from_f32(&dev, &[g, n], dt, &b).unwrap();
                let out = Tensor::empty(&dev, &[g, m, n], dt).unwrap();
                out.fill_nan().unwrap();
                ops::linear_stack(&tx, &tw, bias.then_some(&tb), &out).unwrap();
                let got = out.to_f32_vec().unwrap();
                let mut want = vec![0f64; g * m * n];
                let mut worst = 0f64;
                for gi in 0..g {
                    for i in 0..m {
                        for j in 0..n {
                            let mut s = if bias { b[gi * n + j] as f64 } else { 0.0 };
                            let mut a = s.abs();
                            for p in 0..k {
                                let prod = x[i * k + p] as f64 * w[(gi * n + j) * k + p] as f64;
                                s += prod;
                                a += prod.abs();
                            }
                            worst = worst.max(a);
                            want[(gi * m + i) * n + j] = s;
                        }
                    }
                }
                let (atol, rtol) = tolerance(dt, k, worst, bias);
                common::assert_close(&format!("linear_stack {dt} g{g} m{m} k{k} n{n} bias{bias}"), &got, &want, atol, rtol);
            }
        }
    }
    // Shapes are checked.
    let x = Tensor::empty(&dev, &[4, 8], DType::BF16).unwrap();
    let w = Tensor::empty(&dev, &[3, 6, 8], DType::BF16).unwrap();
    let out = Tensor::empty(&dev, &[3, 4, 6], DType::BF16).unwrap();
    assert!(ops::linear_stack(&x, &w, None, &out).is_ok());
    let bad_bias = Tensor::empty(&dev, &[6], DType::BF16).unwrap();
    assert!(ops::linear_stack(&x, &w, Some(&bad_bias), &out).unwrap_err().to_string().contains("bias"));
    let flat_w = Tensor::empty(&dev, &[18, 8], DType::BF16).unwrap();
    assert!(ops::linear_stack(&x, &flat_w, None, &out).is_err());
    let bad_out = Tensor::empty(&dev, &[4, 18], DType::BF16).unwrap();
    assert!(ops::linear_stack(&x, &w, None, &bad_out).is_err());
    dev.synchronize().unwrap();
}

/// `BlasLt::matmul` over tensors: a GEMM on the copy stream gets a workspace of its own (two streams
/// never share one) and computes what the compute stream does; a descriptor spanning past a tensor, a
/// wrong dtype or a bias the epilogue does not take is refused before anything is queued.
#[test]
fn blas_matmul_checks_tensors_and_keeps_a_workspace_per_stream() {
    use wanrt::runtime::gpu::{GemmDesc, GemmEpilogue};
    let Some(dev) = common::gpu("blas_matmul_checks_tensors_and_keeps_a_workspace_per_stream") else { return };
    let mut rng = common::rng("blas_matmul");
    let (m, k, n) = (64, 96, 80);
    let dt = DType::BF16;
    let a = Tensor::from_f32(&dev, &[m, k], dt, &common::randn(&mut rng, m * k, 1.0)).unwrap();
    let w = Tensor::from_f32(&dev, &[n, k], dt, &common::randn(&mut rng, n * k, 0.1)).unwrap();
    let (d0, d1) = (Tensor::empty(&dev, &[m, n], dt).unwrap(), Tensor::empty(&dev, &[m, n], dt).unwrap());
    let desc = GemmDesc {
        m: m as u64,
        n: n as u64,
        k: k as u64,
        batch: 1,
        dtype: dt,
        out_dtype: dt,
        b_transposed: true,
        lda: k as u64,
        ldb: k as u64,
        ldd: n as u64,
        stride_a: 0,
        stride_b: 0,
        stride_d: 0,
        stride_bias: 0,
        epilogue: GemmEpilogue::None,
        alpha: 1.0,
        accumulate: false,
    };
    let blas = dev.blas().unwrap();
    let one = blas.workspace_bytes();
    blas.matmul(&desc, &a, &w, None, &d0, dev.compute()).unwrap();
    // The copy stream must see the inputs written on the compute stream.
    dev.copy().wait(&dev.compute().record().unwrap()).unwrap();
    blas.matmul(&desc, &a, &w, None, &d1, dev.copy()).unwrap();
    dev.copy().synchronize().unwrap();
    assert_eq!(blas.workspace_bytes(), 2 * one, "the copy stream has a workspace of its own");
    assert_eq!(d0.to_bytes().unwrap(), d1.to_bytes().unwrap());
    // Refusals.
    let long = GemmDesc { m: m as u64 + 1, ..desc };
    assert!(blas.matmul(&long, &a, &w, None, &d0, dev.compute()).is_err(), "a spans m rows only");
    let strided = GemmDesc { lda: k as u64 + 8, ..desc };
    assert!(blas.matmul(&strided, &a, &w, None, &d0, dev.compute()).is_err(), "lda past the end of a");
    let f32_out = Tensor::empty(&dev, &[m, n], DType::F32).unwrap();
    assert!(blas.matmul(&desc, &a, &w, None, &f32_out, dev.compute()).is_err(), "dtype");
    assert!(blas.matmul(&desc, &a, &w, Some(&w), &d0, dev.compute()).is_err(), "bias without the epilogue");
    dev.synchronize().unwrap();
}
