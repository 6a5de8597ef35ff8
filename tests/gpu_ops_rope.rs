//! Rotary embedding: the host tables against values produced by diffusers 0.42 / torch 2.11 (CPU
//! test), the rope kernel and the fused RMSNorm+RoPE against f64 references for every dtype pair,
//! the fused kernel bit-identical to the two launches; error paths.

mod common;
mod reference;

use reference as rf;
use wanrt::runtime::{ops, Tensor};
use wanrt::{DType, Error};

/// Σ bits(v_i)·(i+1) mod 2^64 over the f32 bit patterns: the checksum the Python side printed.
fn bit_hash(v: &[f32]) -> u64 {
    v.iter().enumerate().fold(0u64, |h, (i, x)| h.wrapping_add((x.to_bits() as u64).wrapping_mul(i as u64 + 1)))
}

#[test]
fn rope_tables_match_diffusers() {
    // Hashes of `WanRotaryPosEmbed(128, (1, 2, 2), 1024)(zeros(1, 16, F, 2H, 2W))` (freqs_cos,
    // freqs_sin) computed with diffusers 0.42.1 and torch 2.11 on CPU: every value bit-exact.
    for (f, h, w, hc, hs) in [
        (21, 30, 52, 0x5c76f1aea8e2d496u64, 0x142d447a038fea14u64),
        (1, 1, 1, 0x7ffe0000000, 0x0),
        (3, 5, 7, 0x17bf1a5957e2738, 0x12775e6b4b93fd9),
    ] {
        let (cos, sin) = ops::rope_tables(f, h, w, 128).unwrap();
        assert_eq!(cos.len(), f * h * w * 128);
        assert_eq!(bit_hash(&cos), hc, "cos hash for grid {f}x{h}x{w}");
        assert_eq!(bit_hash(&sin), hs, "sin hash for grid {f}x{h}x{w}");
    }
    // Spot values of the last token of the 21x30x52 grid (frame 20, row 29, column 51).
    let (cos, sin) = ops::rope_tables(21, 30, 52, 128).unwrap();
    let row = 20 * 30 * 52 + 29 * 52 + 51;
    // Python printed the f32 values as f64 (exactly).
    let at = |t: &[f32], c: usize| t[row * 128 + c] as f64;
    assert_eq!(at(&cos, 43), 0.9999953508377075);
    assert_eq!(at(&sin, 43), 0.0030398175586014986);
    assert_eq!(at(&cos, 127), 0.9999687075614929);
    assert_eq!(at(&sin, 127), 0.007907547987997532);
    assert_eq!(at(&cos, 0), 0.4080820679664612);
    assert_eq!(at(&sin, 1), 0.9129452705383301);
    assert!(ops::rope_tables(1, 1, 1, 7).is_err(), "odd head dim");
    assert!(ops::rope_tables(1, 1, 1, 4).is_err(), "head dim below 6");
}

#[test]
fn rope_matches_reference() {
    let Some(dev) = common::gpu("rope_matches_reference") else { return };
    let mut rng = common::rng("rope_matches_reference");
    // (B, grid (F, H, W), heads, head_dim): a DiT-like head dim and a smaller one with another split.
    for (b, (gf, gh, gw), heads, dh) in [(2, (3, 4, 5), 3, 128), (1, (2, 3, 7), 5, 64), (1, (1, 1, 1), 1, 6)] {
        let n = gf * gh * gw;
        let (cos_h, sin_h) = ops::rope_tables(gf, gh, gw, dh).unwrap();
        let cos = Tensor::from_f32(&dev, &[n, dh], DType::F32, &cos_h).unwrap();
        let sin = Tensor::from_f32(&dev, &[n, dh], DType::F32, &sin_h).unwrap();
        let shape = [b, n, heads, dh];
        for xt in rf::DTYPES {
            let (x, xq) = rf::upload(&dev, &shape, xt, &common::randn(&mut rng, b * n * heads * dh, 2.0));
            let (want, delta) = rf::rope(&xq, n, heads * dh, dh, &cos_h, &sin_h);
            for ot in rf::DTYPES {
                let out = rf::poisoned(&dev, &shape, ot);
                ops::rope_3d(&x, &cos, &sin, &out).unwrap();
                let what = format!("rope {shape:?} {xt}->{ot}");
                rf::assert_within(&what, &out.to_f32_vec().unwrap(), &want, &rf::bounds(ot, &want, &delta));
            }
            ops::rope_3d(&x, &cos, &sin, &x).unwrap();
            rf::assert_within(&format!("rope in place {shape:?} {xt}"), &x.to_f32_vec().unwrap(), &want, &rf::bounds(xt, &want, &delta));
        }
    }
}

#[test]
fn rms_norm_rope_matches_reference_and_the_two_launches() {
    let Some(dev) = common::gpu("rms_norm_rope_matches_reference_and_the_two_launches") else { return };
    let mut rng = common::rng("rms_norm_rope_matches_reference_and_the_two_launches");
    for (b, (gf, gh, gw), heads, dh) in [(2, (3, 4, 5), 3, 128), (1, (2, 3, 7), 5, 64), (1, (5, 1, 1), 1, 6)] {
        let n = gf * gh * gw;
        let d = heads * dh;
        let (cos_h, sin_h) = ops::rope_tables(gf, gh, gw, dh).unwrap();
        let cos = Tensor::from_f32(&dev, &[n, dh], DType::F32, &cos_h).unwrap();
        let sin = Tensor::from_f32(&dev, &[n, dh], DType::F32, &sin_h).unwrap();
        let shape = [b, n, heads, dh];
        for xt in rf::DTYPES {
            let (x, xq) = rf::upload(&dev, &shape, xt, &common::randn(&mut rng, b * n * d, 3.0));
            for wt in [None, Some(DType::F32), Some(xt)] {
                let (w, wq) = rf::upload(&dev, &[d], wt.unwrap_or(DType::F32), &common::randn(&mut rng, d, 1.0));
                let (normed, nd) = rf::rms_norm(&xq, d, wt.map(|_| &wq[..]), 1e-6);
                // The normalized values are rounded to x's dtype before the rotation; the device's f32
                // value may round to the neighbour of the reference's: one ulp (≤ 2·eps·|y|) + δ.
                let yq: Vec<f32> = normed.iter().map(|&y| rf::round_to(xt, y as f32)).collect();
                let (want, rd) = rf::rope(&yq, n, d, dh, &cos_h, &sin_h);
                let y_err: Vec<f64> = normed.iter().zip(&nd).map(|(&y, &e)| 2.0 * common::eps(xt) * y.abs() + e).collect();
                let mut delta = rd.clone();
                for e in (0..want.len()).step_by(2) {
                    let c = e % dh;
                    let tok = (e / d) % n;
                    let (co, si) = (cos_h[tok * dh + c].abs() as f64, sin_h[tok * dh + c + 1].abs() as f64);
                    delta[e] += y_err[e] * co + y_err[e + 1] * si;
                    delta[e + 1] += y_err[e] * si + y_err[e + 1] * co;
                }
                for ot in rf::DTYPES {
                    let out = rf::poisoned(&dev, &shape, ot);
                    ops::rms_norm_rope(&x, wt.map(|_| &w), &cos, &sin, 1e-6, &out).unwrap();
                    let got = out.to_f32_vec().unwrap();
                    let what = format!("rms_norm_rope {shape:?} {xt}->{ot} weight {wt:?}");
                    rf::assert_within(&what, &got, &want, &rf::bounds(ot, &want, &delta));
                    // Same bits as rms_norm (into x's dtype) followed by rope.
                    let tmp = rf::poisoned(&dev, &shape, xt);
                    let out2 = rf::poisoned(&dev, &shape, ot);
                    ops::rms_norm(&x.reshape(&[b, n, d]).unwrap(), wt.map(|_| &w), 1e-6, &tmp.reshape(&[b, n, d]).unwrap()).unwrap();
                    ops::rope_3d(&tmp, &cos, &sin, &out2).unwrap();
                    assert_eq!(out.to_bytes().unwrap(), out2.to_bytes().unwrap(), "{what}: fused != rms_norm then rope");
                }
            }
        }
    }
}

#[test]
fn rope_errors_are_reported() {
    let Some(dev) = common::gpu("rope_errors_are_reported") else { return };
    let x = Tensor::zeros(&dev, &[1, 6, 2, 8], DType::BF16).unwrap();
    let cos = Tensor::zeros(&dev, &[6, 8], DType::F32).unwrap();
    let shape = |r: wanrt::Result<()>| matches!(r, Err(Error::Shape { .. }));
    assert!(ops::rope_3d(&x, &cos, &cos, &x).is_ok());
    assert!(shape(ops::rope_3d(&x.reshape(&[6, 2, 8]).unwrap(), &cos, &cos, &x)), "rank 3");
    assert!(shape(ops::rope_3d(&x, &Tensor::zeros(&dev, &[5, 8], DType::F32).unwrap(), &cos, &x)), "table rows != N");
    assert!(matches!(ops::rope_3d(&x, &Tensor::zeros(&dev, &[6, 8], DType::BF16).unwrap(), &cos, &x), Err(Error::DType { .. })));
    assert!(shape(ops::rope_3d(&Tensor::zeros(&dev, &[1, 6, 2, 7], DType::BF16).unwrap(), &cos, &cos, &x)), "odd head dim");
    assert!(shape(ops::rope_3d(&x, &cos, &cos, &Tensor::zeros(&dev, &[1, 6, 2, 9], DType::BF16).unwrap())));
    assert!(shape(ops::rope_3d(&Tensor::zeros(&dev, &[1, 6, 4, 8], DType::BF16).unwrap().narrow(2, 0, 2).unwrap(), &cos, &cos, &x)));
    assert!(shape(ops::rms_norm_rope(&x, Some(&Tensor::zeros(&dev, &[8], DType::F32).unwrap()), &cos, &cos, 1e-6, &x)), "weight [H·dh]");
    assert!(ops::rms_norm_rope(&x, Some(&Tensor::zeros(&dev, &[16], DType::F32).unwrap()), &cos, &cos, 1e-6, &x).is_ok());
    dev.synchronize().unwrap();
}
