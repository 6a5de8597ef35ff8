//! UMT5's attention pieces against CPU references: `relative_bias_softmax` (bias gather, mask, the
//! eager roundings, f32 softmax) and the eager GEMMs `attention_scores` / `attention_apply`, in every
//! dtype, odd sizes (Nq ≠ Nk, not multiples of anything), outputs poisoned with NaN first.

mod common;

use wanrt::runtime::ops::relative_bias::{bucket_table, relative_bias_softmax};
use wanrt::runtime::ops::{attention_apply, attention_scores};
use wanrt::runtime::tensor::bytes_to_f32;
use wanrt::{DType, Tensor};

fn round(v: f64, dt: DType) -> f64 {
    common::quantize(&[v as f32], dt)[0] as f64
}

fn most_negative(dt: DType) -> f32 {
    match dt {
        DType::F32 => f32::MIN,
        DType::BF16 => half::bf16::MIN.to_f32(),
        DType::F16 => half::f16::MIN.to_f32(),
    }
}

#[test]
fn relative_bias_softmax_matches_the_cpu_reference() {
    let Some(dev) = common::gpu("relative_bias_softmax_matches_the_cpu_reference") else { return };
    let mut rng = common::rng("relative_bias_softmax");
    for (dt, b, h, nq, nk, in_place) in
        [(DType::BF16, 2, 3, 5, 7, false), (DType::F32, 1, 2, 33, 17, true), (DType::F16, 3, 5, 1, 9, false), (DType::BF16, 1, 4, 300, 300, true)]
    {
        let buckets = 32;
        let table_v = common::quantize(&common::randn(&mut rng, buckets * h, 1.0), dt);
        let table = Tensor::from_f32(&dev, &[buckets, h], dt, &table_v).unwrap();
        let bucket_v = bucket_table(nq, nk, buckets, 128);
        let bucket = Tensor::from_f32(&dev, &[nq + nk - 1], DType::F32, &bucket_v).unwrap();
        // Padding keys get the dtype's most negative value; key 0 stays real so no row is all masked.
        let mask_v: Vec<f32> = common::randn(&mut rng, b * nk, 1.0)
            .iter()
            .enumerate()
            .map(|(i, &x)| if x > 0.5 && i % nk != 0 { most_negative(dt) } else { 0.0 })
            .collect();
        let mask = Tensor::from_f32(&dev, &[b, nk], DType::F32, &mask_v).unwrap();
        let scores_v = common::quantize(&common::randn(&mut rng, b * h * nq * nk, 3.0), dt);
        let scores = Tensor::from_f32(&dev, &[b, h, nq, nk], dt, &scores_v).unwrap();
        let out = if in_place { scores.clone() } else { Tensor::empty(&dev, &[b, h, nq, nk], dt).unwrap() };
        if !in_place {
            out.fill_nan().unwrap();
        }
        relative_bias_softmax(&scores, &table, &bucket, &mask, &out).unwrap();
        let got = bytes_to_f32(&out.to_bytes().unwrap(), dt);
        let mut want = Vec::with_capacity(got.len());
        for bi in 0..b {
            for hi in 0..h {
                for i in 0..nq {
                    let row = ((bi * h + hi) * nq + i) * nk;
                    let t: Vec<f64> = (0..nk)
                        .map(|j| {
                            let bk = bucket_v[j + nq - 1 - i] as usize;
                            let bias = round(table_v[bk * h + hi] as f64 + mask_v[bi * nk + j] as f64, dt);
                            round(scores_v[row + j] as f64 + bias, dt)
                        })
                        .collect();
                    let m = t.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let sum: f64 = t.iter().map(|&x| (x - m).exp()).sum();
                    want.extend(t.iter().map(|&x| (x - m).exp() / sum));
                }
            }
        }
        // f32 exp/sum/divide (a few f32 ulps), then one rounding to the dtype.
        common::assert_close(&format!("{dt} B{b} H{h} {nq}x{nk}"), &got, &want, 1e-30, common::eps(dt) + 1e-5);
    }
    // Shapes that do not fit are errors, not launches.
    let t = Tensor::empty(&dev, &[32, 2], DType::BF16).unwrap();
    let bucket = Tensor::empty(&dev, &[9], DType::F32).unwrap();
    let mask = Tensor::empty(&dev, &[1, 5], DType::F32).unwrap();
    let s = Tensor::empty(&dev, &[1, 3, 5, 5], DType::BF16).unwrap();
    assert!(relative_bias_softmax(&s, &t, &bucket, &mask, &s).is_err(), "heads disagree with the table");
    let t3 = Tensor::empty(&dev, &[32, 3], DType::F32).unwrap();
    assert!(relative_bias_softmax(&s, &t3, &bucket, &mask, &s).is_err(), "table dtype differs from the scores'");
}

#[test]
fn eager_attention_gemms_match_the_cpu_reference() {
    let Some(dev) = common::gpu("eager_attention_gemms_match_the_cpu_reference") else { return };
    let mut rng = common::rng("eager_attention");
    for (dt, b, nq, nk, h, d, scale) in [(DType::BF16, 2, 7, 13, 3, 64, 1.0f32), (DType::F32, 1, 33, 5, 2, 80, 0.125), (DType::F16, 1, 1, 9, 5, 64, 1.0)] {
        let q_v = common::quantize(&common::randn(&mut rng, b * nq * h * d, 1.0), dt);
        let k_v = common::quantize(&common::randn(&mut rng, b * nk * h * d, 1.0), dt);
        let v_v = common::quantize(&common::randn(&mut rng, b * nk * h * d, 1.0), dt);
        let q = Tensor::from_f32(&dev, &[b, nq, h, d], dt, &q_v).unwrap();
        let k = Tensor::from_f32(&dev, &[b, nk, h, d], dt, &k_v).unwrap();
        let v = Tensor::from_f32(&dev, &[b, nk, h, d], dt, &v_v).unwrap();
        let scores = Tensor::empty(&dev, &[b, h, nq, nk], dt).unwrap();
        scores.fill_nan().unwrap();
        attention_scores(&q, &k, scale, &scores).unwrap();
        let got = bytes_to_f32(&scores.to_bytes().unwrap(), dt);
        let (mut want, mut mag) = (Vec::new(), Vec::new());
        for bi in 0..b {
            for hi in 0..h {
                for i in 0..nq {
                    for j in 0..nk {
                        let (mut s, mut a) = (0f64, 0f64);
                        for c in 0..d {
                            let x = q_v[((bi * nq + i) * h + hi) * d + c] as f64 * k_v[((bi * nk + j) * h + hi) * d + c] as f64;
                            s += x;
                            a += x.abs();
                        }
                        want.push(s * scale as f64);
                        mag.push(a * scale as f64);
                    }
                }
            }
        }
        // One rounding of the result, plus f32 accumulation over d terms bounded by d·2⁻²⁴·Σ|q·k|.
        check(&format!("scores {dt}"), &got, &want, &mag, common::eps(dt), d);

        // p·v with p rows of a softmax (positive, summing to 1), in the dtype.
        let p_v: Vec<f32> = common::quantize(&common::randn(&mut rng, b * h * nq * nk, 1.0).iter().map(|x| x.abs() / nk as f32).collect::<Vec<_>>(), dt);
        let p = Tensor::from_f32(&dev, &[b, h, nq, nk], dt, &p_v).unwrap();
        let out = Tensor::empty(&dev, &[b, nq, h, d], dt).unwrap();
        out.fill_nan().unwrap();
        attention_apply(&p, &v, &out).unwrap();
        let got = bytes_to_f32(&out.to_bytes().unwrap(), dt);
        let (mut want, mut mag) = (Vec::new(), Vec::new());
        for bi in 0..b {
            for i in 0..nq {
                for hi in 0..h {
                    for c in 0..d {
                        let (mut s, mut a) = (0f64, 0f64);
                        for j in 0..nk {
                            let x = p_v[((bi * h + hi) * nq + i) * nk + j] as f64 * v_v[((bi * nk + j) * h + hi) * d + c] as f64;
                            s += x;
                            a += x.abs();
                        }
                        want.push(s);
                        mag.push(a);
                    }
                }
            }
        }
        check(&format!("apply {dt}"), &got, &want, &mag, common::eps(dt), nk);
    }
    let q = Tensor::empty(&dev, &[1, 4, 2, 64], DType::BF16).unwrap();
    let k = Tensor::empty(&dev, &[1, 4, 3, 64], DType::BF16).unwrap();
    let s = Tensor::empty(&dev, &[1, 2, 4, 4], DType::BF16).unwrap();
    assert!(attention_scores(&q, &k, 1.0, &s).is_err(), "heads of q and k differ");
}

fn check(what: &str, got: &[f32], want: &[f64], mag: &[f64], eps: f64, terms: usize) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, ((&g, &w), &m)) in got.iter().zip(want).zip(mag).enumerate() {
        let tol = eps * w.abs() + terms as f64 * 2f64.powi(-24) * m + 1e-30;
        assert!((g as f64 - w).abs() <= tol, "{what}: element {i}: got {g} want {w} (tolerance {tol:.3e})");
    }
}
