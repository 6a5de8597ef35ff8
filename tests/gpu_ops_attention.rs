//! The portable attention kernel against an f64 reference: head dims 64/80/128, every dtype, ragged
//! and cross shapes, optional relative-position bias (per sample or broadcast), large logits, a
//! 32,760 x 32,760 self-attention; outputs poisoned; error paths.
//!
//! Metric for bf16/f16: max |out - ref| <= 2 · max |naive - ref| + eps(dtype) · max |ref|,
//! where "naive" is a CPU emulation of an unfused same-dtype attention (S and softmax in f32, P
//! rounded to the dtype, P·V accumulated in f32, output rounded: `reference::attention_naive`). The
//! last term is one rounding of the output, which any result in that dtype carries: it keeps the bound
//! meaningful where the naive error vanishes (Nk = 1, where both are exact).
//!
//! For f32 the naive computation has no deliberate rounding step: its error is of the same kind and
//! size as the kernel's, and the ratio of two noisy maxima is no stable criterion (it ranged 0.5 to
//! 2.3 over these shapes on an H100). f32 is checked elementwise against a worst-case forward error
//! bound of the kernel's f32 arithmetic instead (`reference::attention_f32_bound`).

mod common;
mod reference;

use rand::rngs::StdRng;
use reference as rf;
use wanrt::runtime::{ops, Device, Tensor};
use wanrt::{DType, Error};

struct Case {
    b: usize,
    nq: usize,
    nk: usize,
    h: usize,
    d: usize,
    q_scale: f32,
    /// None, Some(true) = [B, H, Nq, Nk], Some(false) = [1, H, Nq, Nk].
    bias: Option<bool>,
}

/// The query rows checked against the CPU reference: all of short sequences; the first, the tile
/// edges around 64, a stride sample and the last of long ones.
fn checked_rows(nq: usize) -> Vec<usize> {
    if nq <= 80 {
        return (0..nq).collect();
    }
    let mut rows: Vec<usize> = [0, 1, 62, 63, 64, 65, 127, 128].into_iter().chain((0..nq).step_by(nq / 12 + 1)).chain([nq - 2, nq - 1]).collect();
    rows.retain(|&r| r < nq);
    rows.sort_unstable();
    rows.dedup();
    rows
}

fn run_case(dev: &std::sync::Arc<Device>, rng: &mut StdRng, dt: DType, c: &Case) {
    let Case { b, nq, nk, h, d, q_scale, bias } = *c;
    let (q, qq) = rf::upload(dev, &[b, nq, h, d], dt, &common::randn(rng, b * nq * h * d, q_scale));
    let (k, kq) = rf::upload(dev, &[b, nk, h, d], dt, &common::randn(rng, b * nk * h * d, 1.0));
    let (v, vq) = rf::upload(dev, &[b, nk, h, d], dt, &common::randn(rng, b * nk * h * d, 1.0));
    let bias_t = bias.map(|per_batch| {
        let bb = if per_batch { b } else { 1 };
        rf::upload(dev, &[bb, h, nq, nk], DType::F32, &common::randn(rng, bb * h * nq * nk, 2.0))
    });
    let out = rf::poisoned(dev, &[b, nq, h, d], dt);
    let scale = 1.0 / (d as f32).sqrt();
    ops::attention::attention_portable(&q, &k, &v, bias_t.as_ref().map(|t| &t.0), scale, &out).unwrap();
    let got = out.to_f32_vec().unwrap();
    let what = format!("attention {dt} B={b} Nq={nq} Nk={nk} H={h} d={d} q_scale={q_scale} bias={bias:?}");
    assert!(got.iter().all(|x| x.is_finite()), "{what}: non-finite output (unwritten or overflowed)");

    let rows = checked_rows(nq);
    let bias_ref = bias_t.as_ref().map(|t| (&t.1[..], bias == Some(true)));
    let dims = (b, nq, nk, h, d);
    let want = rf::attention(&qq, &kq, &vq, bias_ref, dims, scale as f64, &rows);
    let naive = rf::attention_naive(&qq, &kq, &vq, bias_ref, dims, scale, &rows, dt);
    let mut ours = Vec::with_capacity(want.len());
    for bi in 0..b {
        for &r in &rows {
            ours.extend_from_slice(&got[(bi * nq + r) * h * d..][..h * d]);
        }
    }
    let max_err = |x: &[f64]| x.iter().zip(&want).map(|(a, w)| (a - w).abs()).fold(0f64, f64::max);
    let ours64: Vec<f64> = ours.iter().map(|&x| x as f64).collect();
    let (e_ours, e_naive) = (max_err(&ours64), max_err(&naive));
    if dt == DType::F32 {
        let bound = rf::attention_f32_bound(&qq, &kq, &vq, bias_ref, dims, scale as f64, &rows);
        eprintln!("{what}: max err {e_ours:.3e}, naive {e_naive:.3e}, largest bound {:.3e}", bound.iter().fold(0f64, |a, &b| a.max(b)));
        rf::assert_within(&what, &ours, &want, &bound);
        return;
    }
    let max_ref = want.iter().fold(0f64, |a, w| a.max(w.abs()));
    let bound = 2.0 * e_naive + common::eps(dt) * max_ref;
    eprintln!("{what}: max err {e_ours:.3e}, naive {e_naive:.3e}, bound {bound:.3e}");
    assert!(e_ours <= bound, "{what}: max error {e_ours:.3e} exceeds {bound:.3e} (naive same-dtype error {e_naive:.3e})");
}

#[test]
fn attention_matches_reference() {
    let Some(dev) = common::gpu("attention_matches_reference") else { return };
    let mut rng = common::rng("attention_matches_reference");
    let shapes = [(1, 1), (33, 33), (257, 257), (1000, 1000), (300, 77), (65, 513)];
    for dt in rf::DTYPES {
        for d in ops::attention::HEAD_DIMS {
            for (nq, nk) in shapes {
                run_case(&dev, &mut rng, dt, &Case { b: 2, nq, nk, h: 3, d, q_scale: 1.0, bias: None });
            }
            // Large logits (scores with std ~8): the online max must rescale correctly.
            run_case(&dev, &mut rng, dt, &Case { b: 1, nq: 129, nk: 700, h: 2, d, q_scale: 8.0, bias: None });
        }
    }
}

#[test]
fn attention_with_bias() {
    // UMT5-like: d 64, relative-position bias shared over the batch, or one per sample.
    let Some(dev) = common::gpu("attention_with_bias") else { return };
    let mut rng = common::rng("attention_with_bias");
    for dt in rf::DTYPES {
        for per_batch in [false, true] {
            for (nq, nk) in [(77, 77), (1, 5), (130, 66)] {
                run_case(&dev, &mut rng, dt, &Case { b: 2, nq, nk, h: 3, d: 64, q_scale: 1.0, bias: Some(per_batch) });
            }
        }
    }
}

#[test]
fn attention_video_sized() {
    // DiT self-attention at 480p (32,760 tokens, 2 of the heads) and cross-attention over 512 text
    // tokens: O(N) memory, 64-bit offsets, many key tiles.
    let Some(dev) = common::gpu("attention_video_sized") else { return };
    let mut rng = common::rng("attention_video_sized");
    run_case(&dev, &mut rng, DType::BF16, &Case { b: 1, nq: 32_760, nk: 32_760, h: 2, d: 128, q_scale: 1.0, bias: None });
    run_case(&dev, &mut rng, DType::BF16, &Case { b: 1, nq: 32_760, nk: 512, h: 2, d: 128, q_scale: 1.0, bias: None });
}

#[test]
fn attention_errors_are_reported() {
    let Some(dev) = common::gpu("attention_errors_are_reported") else { return };
    let t = |shape: &[usize], dt: DType| Tensor::zeros(&dev, shape, dt).unwrap();
    let q = t(&[2, 5, 3, 64], DType::BF16);
    let k = t(&[2, 7, 3, 64], DType::BF16);
    let out = t(&[2, 5, 3, 64], DType::BF16);
    let shape = |r: wanrt::Result<()>| matches!(r, Err(Error::Shape { .. }));
    let dtype = |r: wanrt::Result<()>| matches!(r, Err(Error::DType { .. }));
    assert!(ops::attention(&q, &k, &k, None, 0.125, &out).is_ok());
    assert!(ops::attention(&q, &k, &k, Some(&t(&[1, 3, 5, 7], DType::F32)), 0.125, &out).is_ok());
    let q96 = t(&[2, 5, 3, 96], DType::BF16);
    assert!(shape(ops::attention(&q96, &t(&[2, 7, 3, 96], DType::BF16), &t(&[2, 7, 3, 96], DType::BF16), None, 0.1, &q96)), "head dim 96");
    assert!(shape(ops::attention(&q.reshape(&[10, 3, 64]).unwrap(), &k, &k, None, 0.125, &out)), "rank 3 q");
    assert!(shape(ops::attention(&q, &t(&[2, 7, 2, 64], DType::BF16), &k, None, 0.125, &out)), "k heads");
    assert!(shape(ops::attention(&q, &t(&[2, 0, 3, 64], DType::BF16), &t(&[2, 0, 3, 64], DType::BF16), None, 0.125, &out)), "Nk = 0");
    assert!(shape(ops::attention(&q, &k, &t(&[2, 6, 3, 64], DType::BF16), None, 0.125, &out)), "v length");
    assert!(dtype(ops::attention(&q, &t(&[2, 7, 3, 64], DType::F16), &k, None, 0.125, &out)), "k dtype");
    assert!(dtype(ops::attention(&q, &k, &k, None, 0.125, &t(&[2, 5, 3, 64], DType::F32))), "out dtype");
    assert!(shape(ops::attention(&q, &k, &k, None, 0.125, &t(&[2, 6, 3, 64], DType::BF16))), "out shape");
    assert!(shape(ops::attention(&q, &k, &k, Some(&t(&[2, 3, 5, 6], DType::F32)), 0.125, &out)), "bias Nk");
    assert!(shape(ops::attention(&q, &k, &k, Some(&t(&[3, 3, 5, 7], DType::F32)), 0.125, &out)), "bias batch");
    assert!(dtype(ops::attention(&q, &k, &k, Some(&t(&[1, 3, 5, 7], DType::BF16)), 0.125, &out)), "bias dtype");
    // The portable kernel needs contiguous tensors (the mma path reads strided views).
    let strided = t(&[2, 5, 6, 64], DType::BF16).narrow(2, 0, 3).unwrap();
    assert!(shape(ops::attention::attention_portable(&strided, &k, &k, None, 0.125, &out)), "non-contiguous q");
    dev.synchronize().unwrap();
}
