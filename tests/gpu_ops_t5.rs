//! T5's stepwise-rounded ops against CPU mirrors of transformers' bf16 evaluation:
//! `ops::gelu_new` (NewGELUActivation, each elementwise op rounded to the dtype) and
//! `ops::rms_norm_t5` (T5LayerNorm, rounded before and after the weight). Fresh random inputs, odd
//! sizes, NaN-poisoned outputs. The mirrors perform the same f32 steps and roundings, so nearly every
//! element must match exactly; the rest differ only where an f32 last bit (tanhf's 2 ulp, a reduction
//! order) flips an intermediate rounding, by at most 2 ulps of the output dtype. A once-rounded
//! implementation (`gelu`, `rms_norm`) fails the exact-match share in bf16 (checked below).

mod common;

use wanrt::runtime::ops;
use wanrt::{DType, Tensor};

fn round(dt: DType, x: f32) -> f32 {
    match dt {
        DType::F32 => x,
        DType::BF16 => half::bf16::from_f32(x).to_f32(),
        DType::F16 => half::f16::from_f32(x).to_f32(),
    }
}

fn ulp(dt: DType, x: f32) -> f32 {
    let e = match dt {
        DType::F32 => f32::EPSILON,
        DType::BF16 => 1.0 / 128.0,
        DType::F16 => 1.0 / 1024.0,
    };
    (x.abs() * e).max(match dt {
        DType::F32 => f32::MIN_POSITIVE,
        DType::BF16 => 1e-38,
        DType::F16 => 6.0e-8,
    })
}

fn gelu_new_ref(dt: DType, x: f32) -> f32 {
    let r = |v: f32| round(dt, v);
    let x3 = r(x * x * x);
    let inner = r(0.797_884_6_f32 * r(x + r(0.044715 * x3)));
    let t = r(1.0 + r(inner.tanh()));
    r(r(0.5 * x) * t)
}

/// (exact share, all within k ulps) of `got` against `want`, k = 2 in bf16/f16 and 8 in f32 (where no
/// rounding to a shorter dtype hides the f32 differences: tanhf's 2 ulp, the reduction order).
fn agreement(dt: DType, got: &[f32], want: &[f32]) -> (f64, bool) {
    let k = if dt == DType::F32 { 8.0 } else { 2.0 };
    let exact = got.iter().zip(want).filter(|(g, w)| g.to_bits() == w.to_bits()).count();
    let close = got.iter().zip(want).all(|(g, w)| (g - w).abs() <= k * ulp(dt, *w));
    (exact as f64 / want.len() as f64, close)
}

/// The exact-match share is asserted where it means something: short dtypes and enough elements.
fn share_applies(dt: DType, n: usize) -> bool {
    dt != DType::F32 && n >= 1000
}

fn upload(dev: &std::sync::Arc<wanrt::Device>, shape: &[usize], dt: DType, v: &[f32]) -> (Tensor, Vec<f32>) {
    let q: Vec<f32> = v.iter().map(|&x| round(dt, x)).collect();
    (Tensor::from_f32(dev, shape, dt, &q).unwrap(), q)
}

fn poisoned(dev: &std::sync::Arc<wanrt::Device>, shape: &[usize], dt: DType) -> Tensor {
    let t = Tensor::empty(dev, shape, dt).unwrap();
    t.fill_nan().unwrap();
    t
}

#[test]
fn gelu_new_rounds_every_step() {
    let Some(dev) = common::gpu("gelu_new_rounds_every_step") else { return };
    let mut rng = common::rng("gelu_new");
    for n in [1, 7, 1000, 65_537] {
        for dt in [DType::BF16, DType::F16, DType::F32] {
            let (x, xq) = upload(&dev, &[n], dt, &common::randn(&mut rng, n, 3.0));
            let out = poisoned(&dev, &[n], dt);
            ops::gelu_new(&x, &out).unwrap();
            let got = out.to_f32_vec().unwrap();
            let want: Vec<f32> = xq.iter().map(|&v| gelu_new_ref(dt, v)).collect();
            let (exact, mut close) = agreement(dt, &got, &want);
            if dt == DType::F32 {
                // In f32 nothing rounds the steps away: 1 + tanh cancels for large negative x, so
                // tanhf's 2 ulp become a large relative error of a tiny result. Bound it absolutely,
                // as tests/gpu_ops_elementwise.rs bounds GELU: a few f32 roundings of |x| and |y|.
                close = got.iter().zip(&want).zip(&xq).all(|((g, w), x)| (g - w).abs() <= 8.0 * f32::EPSILON * (x.abs() + w.abs()) + f32::MIN_POSITIVE);
            }
            assert!(close && (exact >= 0.99 || !share_applies(dt, n)), "gelu_new n={n} {dt}: {exact:.4} exact, all within bound: {close}");
            if dt == DType::BF16 && n > 1000 {
                // The test can tell: the once-rounded GELU does not pass it.
                let once = poisoned(&dev, &[n], dt);
                ops::gelu(&x, &once, ops::GeluApprox::Tanh).unwrap();
                let (exact_once, _) = agreement(dt, &once.to_f32_vec().unwrap(), &want);
                assert!(exact_once < 0.99, "gelu (once-rounded) matched the stepwise mirror {exact_once:.4}: the test cannot tell them apart");
            }
        }
    }
}

#[test]
fn rms_norm_t5_rounds_before_and_after_the_weight() {
    let Some(dev) = common::gpu("rms_norm_t5_rounds_before_and_after_the_weight") else { return };
    let mut rng = common::rng("rms_norm_t5");
    let eps = 1e-6f32;
    for (rows, d) in [(1, 1), (3, 7), (5, 257), (67, 1539)] {
        for dt in [DType::BF16, DType::F16, DType::F32] {
            let (x, xq) = upload(&dev, &[rows, d], dt, &common::randn(&mut rng, rows * d, 2.0));
            let (w, wq) = upload(&dev, &[d], dt, &common::randn(&mut rng, d, 1.0));
            let out = poisoned(&dev, &[rows, d], dt);
            ops::rms_norm_t5(&x, Some(&w), eps, &out).unwrap();
            let got = out.to_f32_vec().unwrap();
            let mut want = Vec::with_capacity(rows * d);
            for row in xq.chunks(d) {
                let ms = row.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>() / d as f64;
                let r = (1.0 / (ms + eps as f64).sqrt()) as f32;
                want.extend(row.iter().zip(&wq).map(|(&v, &wv)| round(dt, round(dt, v * r) * wv)));
            }
            let (exact, close) = agreement(dt, &got, &want);
            assert!(close && (exact >= 0.97 || !share_applies(dt, rows * d)), "rms_norm_t5 {rows}x{d} {dt}: {exact:.4} exact, all within bound: {close}");
        }
    }
    let x = Tensor::empty(&dev, &[2, 8], DType::BF16).unwrap();
    let w = Tensor::empty(&dev, &[7], DType::BF16).unwrap();
    assert!(ops::rms_norm_t5(&x, Some(&w), eps, &x).is_err(), "a weight of the wrong width is an error");
}
