//! The Wan VAE's channels-last primitives against CPU references: `l2_norm` (WanRMS_norm, optional
//! bias and fused SiLU, every dtype pair, odd channel counts, in place), and the data movers
//! (`upsample_nearest2x`, `time_interleave`, `to_channels_last`, `from_channels_last` with its clamp),
//! which must be exact (conversions: one round-to-nearest-even). Outputs poisoned with NaN.

mod common;
mod reference;

use rand::rngs::StdRng;
use reference as rf;
use wanrt::runtime::ops;
use wanrt::runtime::Tensor;
use wanrt::DType;

/// f64 WanRMS_norm with (reference, δ). δ: the f32 sum of squares (a chain of `sum_chain(d)`
/// roundings of positive terms, halved by the square root; the scalar kernel's chain is ⌈d/32⌉ + 5 long,
/// the packed kernel's tree at most 1 + 3 + 2 + 5 = 11 ≤ sum_chain(d)) plus sqrt, max, division, the sqrt(C)
/// and gamma products (6 roundings), relative to |z|; the beta add rounds once more (relative to
/// |z| + |beta|); SiLU (slope ≤ 1.1) carries that and adds expf's 2 ulp, the add and the division
/// (≤ 8 roundings relative to |y|).
fn l2_norm_ref(x: &[f32], d: usize, g: &[f32], b: Option<&[f32]>, silu: bool) -> (Vec<f64>, Vec<f64>) {
    let rel = rf::E32 * (0.5 * rf::sum_chain(d) + 6.0);
    let (mut out, mut delta) = (Vec::new(), Vec::new());
    for row in x.chunks(d) {
        let norm = row.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt().max(1e-12);
        for (i, &v) in row.iter().enumerate() {
            let z = v as f64 / norm * (d as f64).sqrt() * g[i] as f64;
            let bv = b.map_or(0.0, |b| b[i] as f64);
            let y = z + bv;
            let dy = rel * z.abs() + if b.is_some() { rf::E32 * (z.abs() + bv.abs()) } else { 0.0 };
            if silu {
                let s = y / (1.0 + (-y).exp());
                out.push(s);
                delta.push(1.1 * dy + 8.0 * rf::E32 * y.abs());
            } else {
                out.push(y);
                delta.push(dy);
            }
        }
    }
    (out, delta)
}

/// Every dtype pair, f32 and `x`-dtype parameters, beta and SiLU on and off, into NaN-poisoned outputs.
fn check_l2_norm(dev: &std::sync::Arc<wanrt::runtime::Device>, rng: &mut StdRng, rows: usize, d: usize) {
    for xt in rf::DTYPES {
        let (x, xq) = rf::upload(dev, &[rows, d], xt, &common::randn(rng, rows * d, 1.5));
        for pt in [DType::F32, xt] {
            let (g, gq) = rf::upload(dev, &[d], pt, &common::randn(rng, d, 1.0));
            let (b, bq) = rf::upload(dev, &[d], pt, &common::randn(rng, d, 0.3));
            for (has_b, silu) in [(false, false), (false, true), (true, false), (true, true)] {
                let (want, delta) = l2_norm_ref(&xq, d, &gq, has_b.then_some(&bq[..]), silu);
                for ot in rf::DTYPES {
                    let out = rf::poisoned(dev, &[rows, d], ot);
                    ops::l2_norm(&x, &g, has_b.then_some(&b), silu, &out).unwrap();
                    let what = format!("l2_norm {rows}x{d} {xt}->{ot} params {pt} bias={has_b} silu={silu}");
                    rf::assert_within(&what, &out.to_f32_vec().unwrap(), &want, &rf::bounds(ot, &want, &delta));
                }
            }
        }
    }
}

#[test]
fn l2_norm_matches_reference() {
    let Some(dev) = common::gpu("l2_norm_matches_reference") else { return };
    let mut rng: StdRng = common::rng("l2_norm_matches_reference");
    // (rows, C): the tiny fixture's widths (4, 8, 16), odd ones, the real model's 96 and 384 and a
    // width past 384 (385: scalar).
    for (rows, d) in [(1, 1), (7, 4), (33, 3), (130, 96), (9, 384), (5, 385)] {
        check_l2_norm(&dev, &mut rng, rows, d);
    }
}

#[test]
fn l2_norm_packed_widths_match_reference() {
    // C % 8 == 0 (aligned tensors) takes the packed kernel, G lanes × P packs per row (ops::norm's
    // l2_norm_packs): 8 (G 1, P 1), 16 (1, 2), 24 (1, 3), 32 (1, 4), 40 (2, 3), 96 (4, 3), 128 (4, 4),
    // 192 (8, 3), 384 (16, 3), 1024 (32, 4); 100, 12 and 1032 (past 32 × 4 packs) the scalar one. Row
    // counts that are not multiples of the 32/G rows of a warp or the 8·32/G of a block.
    let Some(dev) = common::gpu("l2_norm_packed_widths_match_reference") else { return };
    let mut rng: StdRng = common::rng("l2_norm_packed_widths_match_reference");
    for d in [8, 16, 24, 32, 40, 96, 128, 192, 384, 1024, 100, 12, 1032] {
        for rows in [1, 3, 37, 1000] {
            check_l2_norm(&dev, &mut rng, rows, d);
        }
    }
}

#[test]
fn l2_norm_in_place_and_zero_rows() {
    let Some(dev) = common::gpu("l2_norm_in_place_and_zero_rows") else { return };
    let mut rng = common::rng("l2_norm_in_place_and_zero_rows");
    // (rows, C): scalar (19), packed with several rows per warp (96, 16) and one row per group of 16
    // lanes (384).
    for (rows, d) in [(11, 19), (37, 96), (1000, 16), (5, 384)] {
        for (xt, pt, has_b) in [(DType::BF16, DType::F32, false), (DType::BF16, DType::BF16, true), (DType::F32, DType::F32, true)] {
            let mut v = common::randn(&mut rng, rows * d, 1.0);
            v[..d].iter_mut().for_each(|e| *e = 0.0); // an all-zero row: the 1e-12 clamp gives zeros, not NaN
            let (x, xq) = rf::upload(&dev, &[rows, d], xt, &v);
            let (g, gq) = rf::upload(&dev, &[d], pt, &common::randn(&mut rng, d, 1.0));
            let (b, bq) = rf::upload(&dev, &[d], pt, &common::randn(&mut rng, d, 0.3));
            ops::l2_norm(&x, &g, has_b.then_some(&b), true, &x).unwrap();
            let (want, delta) = l2_norm_ref(&xq, d, &gq, has_b.then_some(&bq[..]), true);
            let what = format!("l2_norm in place {rows}x{d} {xt} params {pt} bias={has_b}");
            rf::assert_within(&what, &x.to_f32_vec().unwrap(), &want, &rf::bounds(xt, &want, &delta));
        }
    }
}

#[test]
fn l2_norm_packed_and_scalar_forms_agree() {
    // The same rows through aligned views (the packed kernel) and views misaligned by one element (the
    // scalar kernel, whatever WANRT_PACKED says). Both evaluate each element with the same f32
    // operations and differ only in the order of the sum of squares, so each is within δ (l2_norm_ref)
    // of the reference: f32 outputs within 2δ of each other, 16-bit outputs also one output rounding
    // apart at most (two f32 values that close may round to neighbouring values).
    let Some(dev) = common::gpu("l2_norm_packed_and_scalar_forms_agree") else { return };
    let mut rng = common::rng("l2_norm_packed_and_scalar_forms_agree");
    let view = |dt: DType, values: &[f32], off: usize, rows: usize, d: usize| {
        let mut all = vec![f32::NAN; values.len() + 1];
        all[off..off + values.len()].copy_from_slice(values);
        let t = Tensor::from_f32(&dev, &[values.len() + 1], dt, &all).unwrap();
        t.narrow(0, off, values.len()).unwrap().reshape(&[rows, d]).unwrap()
    };
    for (rows, d) in [(37, 8), (37, 16), (37, 24), (37, 40), (1000, 96), (37, 192), (37, 384), (3, 1024)] {
        for xt in rf::DTYPES {
            let xv = common::quantize(&common::randn(&mut rng, rows * d, 1.5), xt);
            for pt in [DType::F32, xt] {
                let (g, gq) = rf::upload(&dev, &[d], pt, &common::randn(&mut rng, d, 1.0));
                let (b, bq) = rf::upload(&dev, &[d], pt, &common::randn(&mut rng, d, 0.3));
                for (has_b, silu) in [(false, false), (true, true)] {
                    let (want, delta) = l2_norm_ref(&xv, d, &gq, has_b.then_some(&bq[..]), silu);
                    for ot in rf::DTYPES {
                        let run = |off: usize| {
                            let (x, out) = (view(xt, &xv, off, rows, d), view(ot, &vec![f32::NAN; rows * d], off, rows, d));
                            ops::l2_norm(&x, &g, has_b.then_some(&b), silu, &out).unwrap();
                            out.to_f32_vec().unwrap()
                        };
                        let (packed, scalar) = (run(0), run(1));
                        let what = format!("l2_norm {rows}x{d} {xt}->{ot} params {pt} bias={has_b} silu={silu}");
                        assert!(packed.iter().chain(&scalar).all(|v| !v.is_nan()), "{what}: an element was not written");
                        // Each output rounding moves a value by at most eps(ot)·|value| (none for f32).
                        let e = if ot == DType::F32 { 0.0 } else { common::eps(ot) };
                        for (i, (p, s)) in packed.iter().zip(&scalar).enumerate() {
                            let bound = 2.0 * delta[i] * (1.0 + e) + 2.0 * e * want[i].abs() + 2.0 * rf::underflow(ot);
                            let diff = (*p as f64 - *s as f64).abs();
                            assert!(diff <= bound, "{what}: element {i}: packed {p} scalar {s} (|diff| {diff:.3e} > {bound:.3e})");
                        }
                    }
                }
            }
        }
    }
}

fn values(rng: &mut StdRng, n: usize) -> Vec<f32> {
    common::randn(rng, n, 2.0)
}

#[test]
fn upsample_nearest2x_repeats_pixels() {
    let Some(dev) = common::gpu("upsample_nearest2x_repeats_pixels") else { return };
    let mut rng = common::rng("upsample_nearest2x_repeats_pixels");
    // Channels that are multiples of 8 take the packed kernel (upsample2x_v8), the others the scalar one.
    for (n, h, w, c) in [(1, 1, 1, 1), (3, 5, 7, 3), (2, 6, 9, 17), (1, 1, 1, 8), (2, 3, 5, 24), (1, 4, 7, 96)] {
        for dt in rf::DTYPES {
            let (x, xq) = rf::upload(&dev, &[n, h, w, c], dt, &values(&mut rng, n * h * w * c));
            let out = rf::poisoned(&dev, &[n, 2 * h, 2 * w, c], dt);
            ops::upsample_nearest2x(&x, &out).unwrap();
            let mut want = Vec::new();
            for i in 0..n {
                for oh in 0..2 * h {
                    for ow in 0..2 * w {
                        for ch in 0..c {
                            want.push(xq[((i * h + oh / 2) * w + ow / 2) * c + ch]);
                        }
                    }
                }
            }
            assert_eq!(out.to_f32_vec().unwrap(), want, "upsample {n}x{h}x{w}x{c} {dt}");
        }
    }
}

#[test]
fn time_interleave_splits_channels_into_frames() {
    let Some(dev) = common::gpu("time_interleave_splits_channels_into_frames") else { return };
    let mut rng = common::rng("time_interleave_splits_channels_into_frames");
    // c % 8 == 0 takes the packed kernel (time_interleave_v8).
    for (b, t, h, w, c) in [(1, 1, 1, 1, 1), (2, 3, 4, 5, 3), (1, 2, 3, 7, 16), (2, 3, 5, 2, 8), (1, 1, 3, 5, 96)] {
        for dt in rf::DTYPES {
            let (x, xq) = rf::upload(&dev, &[b, t, h, w, 2 * c], dt, &values(&mut rng, b * t * h * w * 2 * c));
            let out = rf::poisoned(&dev, &[b, 2 * t, h, w, c], dt);
            ops::time_interleave(&x, &out).unwrap();
            let mut want = Vec::new();
            for bi in 0..b {
                for of in 0..2 * t {
                    for p in 0..h * w {
                        for ch in 0..c {
                            want.push(xq[((bi * t + of / 2) * h * w + p) * 2 * c + (of % 2) * c + ch]);
                        }
                    }
                }
            }
            assert_eq!(out.to_f32_vec().unwrap(), want, "time_interleave {b}x{t}x{h}x{w}x{c} {dt}");
        }
    }
}

#[test]
fn layout_round_trip_with_conversion_and_clamp() {
    let Some(dev) = common::gpu("layout_round_trip_with_conversion_and_clamp") else { return };
    let mut rng = common::rng("layout_round_trip_with_conversion_and_clamp");
    for (b, c, t, h, w) in [(1, 1, 1, 1, 1), (2, 3, 5, 7, 9), (1, 16, 2, 3, 5)] {
        let n = b * c * t * h * w;
        for xt in rf::DTYPES {
            let (x, xq) = rf::upload(&dev, &[b, c, t, h, w], xt, &values(&mut rng, n));
            for ot in rf::DTYPES {
                let cl = rf::poisoned(&dev, &[b, t, h, w, c], ot);
                ops::to_channels_last(&x, &cl).unwrap();
                let mut want = Vec::new();
                for bi in 0..b {
                    for f in 0..t {
                        for p in 0..h * w {
                            for ch in 0..c {
                                want.push(rf::round_to(ot, xq[((bi * c + ch) * t + f) * h * w + p]));
                            }
                        }
                    }
                }
                assert_eq!(cl.to_f32_vec().unwrap(), want, "to_channels_last {:?} {xt}->{ot}", x.shape());
                // Back, into xt, clamped to [-1, 1] (as the decoder's output).
                let back = rf::poisoned(&dev, &[b, c, t, h, w], xt);
                ops::from_channels_last(&cl, Some((-1.0, 1.0)), &back).unwrap();
                let want_back: Vec<f32> = xq.iter().map(|&v| rf::round_to(xt, rf::round_to(ot, v).clamp(-1.0, 1.0))).collect();
                assert_eq!(back.to_f32_vec().unwrap(), want_back, "from_channels_last {:?} {ot}->{xt} clamped", cl.shape());
                ops::from_channels_last(&cl, None, &back).unwrap();
                let want_back: Vec<f32> = xq.iter().map(|&v| rf::round_to(xt, rf::round_to(ot, v))).collect();
                assert_eq!(back.to_f32_vec().unwrap(), want_back, "from_channels_last {:?} {ot}->{xt}", cl.shape());
            }
            // A window of frames (the encoder's chunks): frames start .. start + n only.
            for (start, n) in [(0, 1), (t - 1, 1), (t / 2, t - t / 2), (0, t)] {
                let cl = rf::poisoned(&dev, &[b, n, h, w, c], xt);
                ops::to_channels_last_frames(&x, start, &cl).unwrap();
                let mut want = Vec::new();
                for bi in 0..b {
                    for f in start..start + n {
                        for p in 0..h * w {
                            for ch in 0..c {
                                want.push(xq[((bi * c + ch) * t + f) * h * w + p]);
                            }
                        }
                    }
                }
                assert_eq!(cl.to_f32_vec().unwrap(), want, "to_channels_last_frames {:?} from {start}, {n} frames", x.shape());
            }
        }
    }
}

#[test]
fn clamp_propagates_nan_like_torch() {
    let Some(dev) = common::gpu("clamp_propagates_nan_like_torch") else { return };
    let x = Tensor::from_f32(&dev, &[1, 1, 1, 1, 4], DType::F32, &[f32::NAN, -3.0, 0.5, f32::INFINITY]).unwrap();
    let out = rf::poisoned(&dev, &[1, 4, 1, 1, 1], DType::BF16);
    out.fill_bytes(0).unwrap();
    ops::from_channels_last(&x, Some((-1.0, 1.0)), &out).unwrap();
    let v = out.to_f32_vec().unwrap();
    assert!(v[0].is_nan() && v[1..] == [-1.0, 0.5, 1.0], "{v:?}");
}

/// `copy_window` (the decoder's tiles): a window of a [B, T, H, W, C] source into a window of a
/// larger poisoned destination; the window equals the source's, everything else stays poisoned.
#[test]
fn copy_window_moves_exactly_the_window() {
    let Some(dev) = common::gpu("copy_window_moves_exactly_the_window") else { return };
    let mut rng = common::rng("copy_window_moves_exactly_the_window");
    // (B, T, H, W, C) of the source, window (y0, x0, h, w), destination (H2, W2) and its offset (y1, x1).
    for ((b, t, hh, ww, c), (y0, x0, h, w), (h2, w2), (y1, x1)) in [
        ((1, 1, 5, 7, 3), (1, 2, 3, 4), (4, 5), (1, 1)),
        ((2, 3, 9, 11, 17), (0, 3, 9, 5), (13, 6), (2, 0)),
        ((1, 2, 6, 6, 1), (5, 0, 1, 6), (1, 9), (0, 3)),
    ] {
        for dt in rf::DTYPES {
            let (x, xq) = rf::upload(&dev, &[b, t, hh, ww, c], dt, &values(&mut rng, b * t * hh * ww * c));
            let out = rf::poisoned(&dev, &[b, t, h2, w2, c], dt);
            let src = x.narrow(2, y0, h).unwrap().narrow(3, x0, w).unwrap();
            ops::copy_window(&src, &out.narrow(2, y1, h).unwrap().narrow(3, x1, w).unwrap()).unwrap();
            let got = out.to_f32_vec().unwrap();
            for f in 0..b * t {
                for y in 0..h2 {
                    for xx in 0..w2 {
                        for ch in 0..c {
                            let g = got[((f * h2 + y) * w2 + xx) * c + ch];
                            let inside = (y1..y1 + h).contains(&y) && (x1..x1 + w).contains(&xx);
                            if inside {
                                let want = xq[((f * hh + y - y1 + y0) * ww + xx - x1 + x0) * c + ch];
                                assert_eq!(g.to_bits(), want.to_bits(), "copy_window {dt} at f{f} y{y} x{xx} c{ch}");
                            } else {
                                assert!(g.is_nan(), "copy_window {dt}: wrote outside the window at f{f} y{y} x{xx} c{ch}");
                            }
                        }
                    }
                }
            }
        }
    }
    // Overlapping windows of one buffer, and a view that is not a window of channels-last frames.
    let a = Tensor::zeros(&dev, &[1, 1, 4, 4, 2], DType::F32).unwrap();
    let e = ops::copy_window(&a.narrow(3, 0, 2).unwrap(), &a.narrow(3, 1, 2).unwrap()).unwrap_err().to_string();
    assert!(e.contains("overlaps"), "{e}");
    let o = Tensor::zeros(&dev, &[1, 1, 4, 4, 1], DType::F32).unwrap();
    let e = ops::copy_window(&a.narrow(4, 0, 1).unwrap(), &o).unwrap_err().to_string();
    assert!(e.contains("not a window"), "{e}");
}

#[test]
fn vae_primitives_refuse_bad_arguments() {
    let Some(dev) = common::gpu("vae_primitives_refuse_bad_arguments") else { return };
    let t = |s: &[usize]| Tensor::zeros(&dev, s, DType::F32).unwrap();
    let e = ops::upsample_nearest2x(&t(&[1, 3, 4, 2]), &t(&[1, 6, 7, 2])).unwrap_err().to_string();
    assert!(e.contains("out") && e.contains("[1, 6, 8, 2]"), "{e}");
    let e = ops::time_interleave(&t(&[1, 2, 3, 4, 5]), &t(&[1, 4, 3, 4, 2])).unwrap_err().to_string();
    assert!(e.contains("even"), "{e}");
    let e = ops::to_channels_last(&t(&[1, 3, 2, 4, 5]), &t(&[1, 2, 4, 5, 2])).unwrap_err().to_string();
    assert!(e.contains("out"), "{e}");
    let e = ops::to_channels_last_frames(&t(&[1, 3, 4, 2, 2]), 2, &t(&[1, 3, 2, 2, 3])).unwrap_err().to_string();
    assert!(e.contains("out") && e.contains("2 + n ≤ 4"), "{e}");
    let x = t(&[2, 8]);
    let e = ops::l2_norm(&x, &t(&[7]), None, false, &x).unwrap_err().to_string();
    assert!(e.contains("gamma"), "{e}");
    let a = t(&[1, 1, 2, 2, 2]);
    let e = ops::upsample_nearest2x(&a, &a.reshape(&[1, 1, 2, 2, 2]).unwrap()).unwrap_err().to_string();
    assert!(e.contains("out"), "{e}");
}
