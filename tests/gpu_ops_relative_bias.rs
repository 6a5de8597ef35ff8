//! UMT5's attention pieces against CPU references: `relative_bias_softmax` (bias gather, mask, f32
//! softmax, unnormalized f32 probabilities and row sums), the eager GEMMs `attention_scores` /
//! `attention_apply` (rounded or f32 outputs) and `attention_normalize`, in every
//! dtype, odd sizes (Nq ≠ Nk, not multiples of anything), outputs poisoned with NaN first.

mod common;

use wanrt::runtime::ops::relative_bias::{bucket_table, relative_bias_softmax};
use wanrt::runtime::ops::{attention_apply, attention_normalize, attention_scores};
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
    for (dt, b, h, nq, nk) in [(DType::BF16, 2, 3, 5, 7), (DType::F32, 1, 2, 33, 17), (DType::F16, 3, 5, 1, 9), (DType::BF16, 1, 4, 300, 300)] {
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
        let scores_v = common::randn(&mut rng, b * h * nq * nk, 3.0);
        let scores = Tensor::from_f32(&dev, &[b, h, nq, nk], DType::F32, &scores_v).unwrap();
        let probs = Tensor::empty(&dev, &[b, h, nq, nk], DType::F32).unwrap();
        let rowsum = Tensor::empty(&dev, &[b, h, nq], DType::F32).unwrap();
        probs.fill_nan().unwrap();
        rowsum.fill_nan().unwrap();
        relative_bias_softmax(&scores, &table, &bucket, &mask, &probs, &rowsum).unwrap();
        let got_p = bytes_to_f32(&probs.to_bytes().unwrap(), DType::F32);
        let got_s = bytes_to_f32(&rowsum.to_bytes().unwrap(), DType::F32);
        let (mut want_p, mut want_s, mut tol_p) = (Vec::new(), Vec::new(), Vec::new());
        for bi in 0..b {
            for hi in 0..h {
                for i in 0..nq {
                    let row = ((bi * h + hi) * nq + i) * nk;
                    let t: Vec<f64> = (0..nk)
                        .map(|j| {
                            let bk = bucket_v[j + nq - 1 - i] as usize;
                            scores_v[row + j] as f64 + round(table_v[bk * h + hi] as f64 + mask_v[bi * nk + j] as f64, dt)
                        })
                        .collect();
                    let m = t.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    want_p.extend(t.iter().map(|&x| (x - m).exp()));
                    // The kernel forms t_j and m in f32 (half an ulp each) and t_j - m (half an ulp of
                    // the difference): exp's argument is off by up to (|t_j| + |m| + |t_j - m|) 2^-24,
                    // which is that relative error in the result, plus expf's own 2 ulps.
                    tol_p.extend(t.iter().map(|&x| (x - m).exp() * ((x.abs() + m.abs() + (x - m).abs()) * 2f64.powi(-24) + 2.0 * 2f64.powi(-23)) + 1e-37));
                    want_s.push(t.iter().map(|&x| (x - m).exp()).sum::<f64>());
                }
            }
        }
        // f32 exp (a few f32 ulps); the sums add Nk such terms in f32.
        let what = format!("probs {dt} B{b} H{h} {nq}x{nk}");
        for (i, ((&g, &w), &tol)) in got_p.iter().zip(&want_p).zip(&tol_p).enumerate() {
            assert!((g as f64 - w).abs() <= tol, "{what}: element {i}: got {g} want {w} (|err| {:.3e}, tolerance {tol:.3e})", (g as f64 - w).abs());
        }
        common::assert_close(&format!("rowsum {dt} B{b} H{h} {nq}x{nk}"), &got_s, &want_s, 1e-30, nk as f64 * 2f64.powi(-23));
    }
    // Shapes that do not fit are errors, not launches.
    let t = Tensor::empty(&dev, &[32, 2], DType::BF16).unwrap();
    let bucket = Tensor::empty(&dev, &[9], DType::F32).unwrap();
    let mask = Tensor::empty(&dev, &[1, 5], DType::F32).unwrap();
    let s = Tensor::empty(&dev, &[1, 3, 5, 5], DType::F32).unwrap();
    let p = Tensor::empty(&dev, &[1, 3, 5, 5], DType::F32).unwrap();
    let rs = Tensor::empty(&dev, &[1, 3, 5], DType::F32).unwrap();
    assert!(relative_bias_softmax(&s, &t, &bucket, &mask, &p, &rs).is_err(), "heads disagree with the table");
    let p16 = Tensor::empty(&dev, &[1, 3, 5, 5], DType::BF16).unwrap();
    let t3 = Tensor::empty(&dev, &[32, 3], DType::BF16).unwrap();
    assert!(relative_bias_softmax(&s, &t3, &bucket, &mask, &p16, &rs).is_err(), "probabilities must be f32");
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
        // Scores rounded to the dtype, or kept in f32 (then only the accumulation errs).
        let sdt = if nq % 2 == 1 { DType::F32 } else { dt };
        let scores = Tensor::empty(&dev, &[b, h, nq, nk], sdt).unwrap();
        scores.fill_nan().unwrap();
        attention_scores(&q, &k, scale, &scores).unwrap();
        let got = bytes_to_f32(&scores.to_bytes().unwrap(), sdt);
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
        check(&format!("scores {dt} -> {sdt}"), &got, &want, &mag, common::eps(sdt), d);

        // p·v with p rows of a softmax (positive, summing to 1), in the dtype.
        let p_v: Vec<f32> = common::quantize(&common::randn(&mut rng, b * h * nq * nk, 1.0).iter().map(|x| x.abs() / nk as f32).collect::<Vec<_>>(), dt);
        let p = Tensor::from_f32(&dev, &[b, h, nq, nk], dt, &p_v).unwrap();
        let out = Tensor::empty(&dev, &[b, nq, h, d], DType::F32).unwrap();
        out.fill_nan().unwrap();
        attention_apply(&p, &v, &out).unwrap();
        let got = bytes_to_f32(&out.to_bytes().unwrap(), DType::F32);
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
        check(&format!("apply {dt} -> f32"), &got, &want, &mag, common::eps(DType::F32), nk);
        // Rounded to the dtype directly.
        let out_dt = Tensor::empty(&dev, &[b, nq, h, d], dt).unwrap();
        out_dt.fill_nan().unwrap();
        attention_apply(&p, &v, &out_dt).unwrap();
        check(&format!("apply {dt}"), &bytes_to_f32(&out_dt.to_bytes().unwrap(), dt), &want, &mag, common::eps(dt), nk);

        // The deferred normalization divides each (sample, query, head) row by its sum, rounded once.
        let rs_v: Vec<f32> = (0..b * h * nq).map(|i| 0.5 + (i % 7) as f32).collect();
        let rowsum = Tensor::from_f32(&dev, &[b, h, nq], DType::F32, &rs_v).unwrap();
        let normed = Tensor::empty(&dev, &[b, nq, h, d], dt).unwrap();
        normed.fill_nan().unwrap();
        attention_normalize(&out, &rowsum, &normed).unwrap();
        let o32 = bytes_to_f32(&out.to_bytes().unwrap(), DType::F32);
        let mut want_n = Vec::new();
        for bi in 0..b {
            for i in 0..nq {
                for hi in 0..h {
                    for c in 0..d {
                        want_n.push(o32[((bi * nq + i) * h + hi) * d + c] as f64 / rs_v[(bi * h + hi) * nq + i] as f64);
                    }
                }
            }
        }
        common::assert_close(&format!("normalize {dt}"), &bytes_to_f32(&normed.to_bytes().unwrap(), dt), &want_n, subnormal_half_ulp(dt), common::eps(dt) + 1e-7);
    }
    let q = Tensor::empty(&dev, &[1, 4, 2, 64], DType::BF16).unwrap();
    let k = Tensor::empty(&dev, &[1, 4, 3, 64], DType::BF16).unwrap();
    let s = Tensor::empty(&dev, &[1, 2, 4, 4], DType::BF16).unwrap();
    assert!(attention_scores(&q, &k, 1.0, &s).is_err(), "heads of q and k differ");
}

/// Half the spacing of the dtype's subnormals: the absolute error of one rounding near zero.
fn subnormal_half_ulp(dt: DType) -> f64 {
    match dt {
        DType::F32 => 2f64.powi(-150),
        DType::BF16 => 2f64.powi(-134),
        DType::F16 => 2f64.powi(-25),
    }
}

fn check(what: &str, got: &[f32], want: &[f64], mag: &[f64], eps: f64, terms: usize) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, ((&g, &w), &m)) in got.iter().zip(want).zip(mag).enumerate() {
        let tol = eps * w.abs() + terms as f64 * 2f64.powi(-24) * m + 2f64.powi(-25);
        assert!((g as f64 - w).abs() <= tol, "{what}: element {i}: got {g} want {w} (tolerance {tol:.3e})");
    }
}
