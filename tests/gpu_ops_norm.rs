//! LayerNorm, RMSNorm, LayerNorm-modulate and the gated residual against f64 references, for every
//! (input, output) dtype pair, odd row widths, poisoned outputs; plus size sanity and error paths.

mod common;
mod reference;

use rand::rngs::StdRng;
use reference as rf;
use wanrt::runtime::{ops, Tensor};
use wanrt::{DType, Error};

/// (rows, D): widths not multiples of 32 or of the block, a single element, a wide row (the scalar
/// kernels); widths that are multiples of 8 (the packed kernels: one pack, a partial last warp, the
/// 14B width, the widest packed row) and one just past the packed limit (scalar again).
const SIZES: [(usize, usize); 9] = [(1, 1), (3, 7), (5, 257), (67, 1536 + 3), (3, 8), (9, 1544), (4, 5120), (2, 8192), (2, 8200)];

/// Rows with a random offset and spread (so the mean matters and rows differ in scale).
fn rows_input(rng: &mut StdRng, rows: usize, d: usize) -> Vec<f32> {
    let mut x = Vec::with_capacity(rows * d);
    for _ in 0..rows {
        let offset = common::randn(rng, 1, 2.0)[0];
        let spread = (common::randn(rng, 1, 1.0)[0]).exp();
        x.extend(common::randn(rng, d, spread).into_iter().map(|v| v + offset));
    }
    x
}

#[test]
fn layer_norm_matches_reference() {
    let Some(dev) = common::gpu("layer_norm_matches_reference") else { return };
    let mut rng = common::rng("layer_norm_matches_reference");
    let eps = 1e-6f32;
    for (rows, d) in SIZES {
        for xt in rf::DTYPES {
            let (x, xq) = rf::upload(&dev, &[rows, d], xt, &rows_input(&mut rng, rows, d));
            // (weight, bias) present, in f32 or in x's dtype.
            for (has_w, has_b) in [(false, false), (true, true), (true, false), (false, true)] {
                for pt in [DType::F32, xt] {
                    if !(has_w || has_b) && pt != DType::F32 {
                        continue;
                    }
                    let (w, wq) = rf::upload(&dev, &[d], pt, &common::randn(&mut rng, d, 1.0));
                    let (b, bq) = rf::upload(&dev, &[d], pt, &common::randn(&mut rng, d, 0.5));
                    let (want, delta) = rf::layer_norm(&xq, d, has_w.then_some(&wq[..]), has_b.then_some(&bq[..]), eps as f64);
                    for ot in rf::DTYPES {
                        let out = rf::poisoned(&dev, &[rows, d], ot);
                        ops::layer_norm(&x, has_w.then_some(&w), has_b.then_some(&b), eps, &out).unwrap();
                        let what = format!("layer_norm {rows}x{d} {xt}->{ot} w={has_w} b={has_b} ({pt})");
                        rf::assert_within(&what, &out.to_f32_vec().unwrap(), &want, &rf::bounds(ot, &want, &delta));
                    }
                }
            }
        }
    }
}

#[test]
fn layer_norm_in_place() {
    let Some(dev) = common::gpu("layer_norm_in_place") else { return };
    let mut rng = common::rng("layer_norm_in_place");
    let (rows, d) = (9, 1000);
    let (x, xq) = rf::upload(&dev, &[rows, d], DType::BF16, &rows_input(&mut rng, rows, d));
    ops::layer_norm(&x, None, None, 1e-5, &x).unwrap();
    let (want, delta) = rf::layer_norm(&xq, d, None, None, 1e-5);
    rf::assert_within("layer_norm in place", &x.to_f32_vec().unwrap(), &want, &rf::bounds(DType::BF16, &want, &delta));
}

#[test]
fn layer_norm_video_sized() {
    // One DiT-1.3B activation at 480p: 32,760 tokens x 1536, bf16 in, f32 affine, bf16 out.
    let Some(dev) = common::gpu("layer_norm_video_sized") else { return };
    let mut rng = common::rng("layer_norm_video_sized");
    let (rows, d) = (32_760, 1536);
    let (x, xq) = rf::upload(&dev, &[1, rows, d], DType::BF16, &rows_input(&mut rng, rows, d));
    let (w, wq) = rf::upload(&dev, &[d], DType::F32, &common::randn(&mut rng, d, 1.0));
    let (b, bq) = rf::upload(&dev, &[d], DType::F32, &common::randn(&mut rng, d, 0.5));
    let out = rf::poisoned(&dev, &[1, rows, d], DType::BF16);
    ops::layer_norm(&x, Some(&w), Some(&b), 1e-6, &out).unwrap();
    let got = out.to_f32_vec().unwrap();
    // Every row must be written (poison); the values of every 61st row and the last are checked.
    assert!(got.iter().all(|v| !v.is_nan()), "layer_norm left unwritten (NaN) elements");
    for r in (0..rows).step_by(61).chain([rows - 1]) {
        let row = &xq[r * d..(r + 1) * d];
        let (want, delta) = rf::layer_norm(row, d, Some(&wq), Some(&bq), 1e-6);
        rf::assert_within(&format!("layer_norm row {r}"), &got[r * d..(r + 1) * d], &want, &rf::bounds(DType::BF16, &want, &delta));
    }
}

#[test]
fn rms_norm_matches_reference() {
    let Some(dev) = common::gpu("rms_norm_matches_reference") else { return };
    let mut rng = common::rng("rms_norm_matches_reference");
    let eps = 1e-6f32;
    for (rows, d) in SIZES {
        for xt in rf::DTYPES {
            let xs: Vec<f32> = common::randn(&mut rng, rows * d, 2.0);
            let (x, xq) = rf::upload(&dev, &[rows, d], xt, &xs);
            for wt in [None, Some(DType::F32), Some(xt)] {
                let (w, wq) = rf::upload(&dev, &[d], wt.unwrap_or(DType::F32), &common::randn(&mut rng, d, 1.0));
                let (want, delta) = rf::rms_norm(&xq, d, wt.map(|_| &wq[..]), eps as f64);
                for ot in rf::DTYPES {
                    let out = rf::poisoned(&dev, &[rows, d], ot);
                    ops::rms_norm(&x, wt.map(|_| &w), eps, &out).unwrap();
                    let what = format!("rms_norm {rows}x{d} {xt}->{ot} weight {wt:?}");
                    rf::assert_within(&what, &out.to_f32_vec().unwrap(), &want, &rf::bounds(ot, &want, &delta));
                }
            }
        }
    }
}

#[test]
fn rms_norm_rows_beyond_the_grid() {
    // More rows than the launch grid has blocks: the kernel must stride over rows.
    let Some(dev) = common::gpu("rms_norm_rows_beyond_the_grid") else { return };
    let mut rng = common::rng("rms_norm_rows_beyond_the_grid");
    let (rows, d) = (1_100_003, 7);
    let (x, xq) = rf::upload(&dev, &[rows, d], DType::F16, &common::randn(&mut rng, rows * d, 1.0));
    let out = rf::poisoned(&dev, &[rows, d], DType::F32);
    ops::rms_norm(&x, None, 1e-6, &out).unwrap();
    let (want, delta) = rf::rms_norm(&xq, d, None, 1e-6);
    rf::assert_within("rms_norm 1.1M rows", &out.to_f32_vec().unwrap(), &want, &rf::bounds(DType::F32, &want, &delta));
}

/// A [B, 6, D] f32 modulation tensor (host values and device tensor).
fn modulation(dev: &std::sync::Arc<wanrt::runtime::Device>, rng: &mut StdRng, b: usize, d: usize) -> (Tensor, Vec<f32>) {
    rf::upload(dev, &[b, 6, d], DType::F32, &common::randn(rng, b * 6 * d, 0.5))
}

/// Chunk `k` of sample `bi` of a host [B, 6, D] modulation tensor.
fn chunk(m: &[f32], d: usize, bi: usize, k: usize) -> &[f32] {
    &m[(bi * 6 + k) * d..][..d]
}

#[test]
fn layer_norm_modulate_matches_reference() {
    let Some(dev) = common::gpu("layer_norm_modulate_matches_reference") else { return };
    let mut rng = common::rng("layer_norm_modulate_matches_reference");
    let eps = 1e-6f32;
    for (n, d) in [(1, 1), (37, 7), (5, 257), (19, 1536 + 3), (3, 8), (21, 1536), (2, 5120)] {
        let b = 2;
        let (m, mq) = modulation(&dev, &mut rng, b, d);
        // Slices of the [B, 6, D] tensor (shift = chunk 0, scale = chunk 1), as a DiT block passes them.
        let (shift, scale) = (m.narrow(1, 0, 1).unwrap(), m.narrow(1, 1, 1).unwrap());
        // And broadcast [1, D] vectors.
        let (shift1, shift1q) = rf::upload(&dev, &[1, d], DType::F32, &common::randn(&mut rng, d, 0.5));
        let (scale1, scale1q) = rf::upload(&dev, &[1, d], DType::F32, &common::randn(&mut rng, d, 0.5));
        for xt in rf::DTYPES {
            let (x, xq) = rf::upload(&dev, &[b, n, d], xt, &rows_input(&mut rng, b * n, d));
            for broadcast in [false, true] {
                let mut want = Vec::new();
                let mut delta = Vec::new();
                for bi in 0..b {
                    let (sc, sh) = if broadcast { (&scale1q[..], &shift1q[..]) } else { (chunk(&mq, d, bi, 1), chunk(&mq, d, bi, 0)) };
                    let rows = &xq[bi * n * d..(bi + 1) * n * d];
                    let (norm, nd) = rf::layer_norm(rows, d, None, None, eps as f64);
                    for (i, (&y, &e)) in norm.iter().zip(&nd).enumerate() {
                        let (s, t) = (sc[i % d] as f64, sh[i % d] as f64);
                        let v = y * (1.0 + s) + t;
                        want.push(v);
                        delta.push(e * (1.0 + s).abs() + 2.0 * rf::E32 * ((y * (1.0 + s)).abs() + t.abs()) + rf::E32 * y.abs() * s.abs());
                    }
                }
                for ot in rf::DTYPES {
                    let out = rf::poisoned(&dev, &[b, n, d], ot);
                    if broadcast {
                        ops::layer_norm_modulate(&x, &scale1, &shift1, eps, &out).unwrap();
                    } else {
                        ops::layer_norm_modulate(&x, &scale, &shift, eps, &out).unwrap();
                    }
                    let what = format!("layer_norm_modulate {b}x{n}x{d} {xt}->{ot} broadcast={broadcast}");
                    rf::assert_within(&what, &out.to_f32_vec().unwrap(), &want, &rf::bounds(ot, &want, &delta));
                }
            }
        }
    }
}

#[test]
fn gated_residual_matches_reference() {
    let Some(dev) = common::gpu("gated_residual_matches_reference") else { return };
    let mut rng = common::rng("gated_residual_matches_reference");
    for (n, d) in [(1, 1), (37, 7), (5, 257), (19, 1536 + 3), (3, 8), (21, 1536), (2, 5120)] {
        let b = 3;
        let (m, mq) = modulation(&dev, &mut rng, b, d);
        let gate = m.narrow(1, 2, 1).unwrap();
        for xt in rf::DTYPES {
            let (x, xq) = rf::upload(&dev, &[b, n, d], xt, &common::randn(&mut rng, b * n * d, 1.0));
            let (y, yq) = rf::upload(&dev, &[b, n, d], xt, &common::randn(&mut rng, b * n * d, 1.0));
            let mut want = Vec::new();
            let mut delta = Vec::new();
            for i in 0..b * n * d {
                let g = chunk(&mq, d, i / (n * d), 2)[i % d] as f64;
                let (xv, yv) = (xq[i] as f64, yq[i] as f64);
                want.push(xv + yv * g);
                delta.push(rf::E32 * (xv.abs() + 2.0 * (yv * g).abs()));
            }
            for ot in rf::DTYPES {
                let out = rf::poisoned(&dev, &[b, n, d], ot);
                ops::gated_residual(&x, &y, &gate, &out).unwrap();
                let what = format!("gated_residual {b}x{n}x{d} {xt}->{ot}");
                rf::assert_within(&what, &out.to_f32_vec().unwrap(), &want, &rf::bounds(ot, &want, &delta));
            }
            // In place: the residual stream updated where it lies.
            ops::gated_residual(&x, &y, &gate, &x).unwrap();
            let what = format!("gated_residual in place {b}x{n}x{d} {xt}");
            rf::assert_within(&what, &x.to_f32_vec().unwrap(), &want, &rf::bounds(xt, &want, &delta));
        }
    }
}

#[test]
fn norm_errors_are_reported() {
    let Some(dev) = common::gpu("norm_errors_are_reported") else { return };
    let x = Tensor::zeros(&dev, &[4, 8], DType::BF16).unwrap();
    let out = Tensor::zeros(&dev, &[4, 8], DType::BF16).unwrap();
    let w8 = Tensor::zeros(&dev, &[8], DType::F32).unwrap();
    let w8h = Tensor::zeros(&dev, &[8], DType::F16).unwrap();
    let w7 = Tensor::zeros(&dev, &[7], DType::F32).unwrap();
    let out_bad = Tensor::zeros(&dev, &[4, 9], DType::BF16).unwrap();
    let x_strided = Tensor::zeros(&dev, &[4, 16], DType::BF16).unwrap().narrow(1, 0, 8).unwrap();
    let scalar = Tensor::zeros(&dev, &[], DType::BF16).unwrap();

    let shape = |r: wanrt::Result<()>| matches!(r, Err(Error::Shape { .. }));
    let dtype = |r: wanrt::Result<()>| matches!(r, Err(Error::DType { .. }));
    assert!(shape(ops::layer_norm(&x, None, None, 1e-6, &out_bad)));
    assert!(shape(ops::layer_norm(&x, Some(&w7), None, 1e-6, &out)));
    assert!(dtype(ops::layer_norm(&x, Some(&w8h), None, 1e-6, &out)), "f16 weight for bf16 x");
    assert!(dtype(ops::layer_norm(&x, Some(&w8), Some(&Tensor::zeros(&dev, &[8], DType::BF16).unwrap()), 1e-6, &out)), "bias dtype != weight dtype");
    assert!(shape(ops::layer_norm(&x_strided, None, None, 1e-6, &out)), "non-contiguous x");
    assert!(shape(ops::layer_norm(&scalar, None, None, 1e-6, &scalar)), "rank 0");
    assert!(shape(ops::rms_norm(&x, None, 1e-6, &out_bad)));
    assert!(shape(ops::rms_norm(&x, Some(&w7), 1e-6, &out)));
    assert!(dtype(ops::rms_norm(&x, Some(&w8h), 1e-6, &out)));
    assert!(shape(ops::rms_norm(&x_strided, None, 1e-6, &out)));

    let x3 = Tensor::zeros(&dev, &[2, 4, 8], DType::BF16).unwrap();
    let o3 = Tensor::zeros(&dev, &[2, 4, 8], DType::BF16).unwrap();
    let m = Tensor::zeros(&dev, &[2, 6, 8], DType::F32).unwrap();
    let v = m.narrow(1, 0, 1).unwrap();
    let v_bad_b = Tensor::zeros(&dev, &[3, 8], DType::F32).unwrap();
    let v_bad_d = Tensor::zeros(&dev, &[2, 9], DType::F32).unwrap();
    let v_bf16 = Tensor::zeros(&dev, &[2, 8], DType::BF16).unwrap();
    let m_wide = Tensor::zeros(&dev, &[2, 6, 8, 2], DType::F32).unwrap();
    assert!(ops::layer_norm_modulate(&x3, &v, &v, 1e-6, &o3).is_ok());
    assert!(shape(ops::layer_norm_modulate(&x, &v, &v, 1e-6, &out)), "x must be [B, N, D]");
    assert!(shape(ops::layer_norm_modulate(&x3, &v_bad_b, &v, 1e-6, &o3)));
    assert!(shape(ops::layer_norm_modulate(&x3, &v, &v_bad_d, 1e-6, &o3)));
    assert!(dtype(ops::layer_norm_modulate(&x3, &v_bf16, &v, 1e-6, &o3)));
    assert!(shape(ops::layer_norm_modulate(&x3, &m_wide.narrow(3, 0, 1).unwrap(), &v, 1e-6, &o3)));
    assert!(shape(ops::layer_norm_modulate(&x3, &v, &v, 1e-6, &out)));
    let y_f16 = Tensor::zeros(&dev, &[2, 4, 8], DType::F16).unwrap();
    assert!(ops::gated_residual(&x3, &x3, &v, &o3).is_ok());
    assert!(dtype(ops::gated_residual(&x3, &y_f16, &v, &o3)), "y dtype != x dtype");
    assert!(shape(ops::gated_residual(&x3, &o3.narrow(2, 0, 4).unwrap(), &v, &o3)));
    assert!(shape(ops::gated_residual(&x3, &x3, &v_bad_d, &o3)));
    dev.synchronize().unwrap();
}

#[test]
fn gated_residual_packed_equals_scalar() {
    // An aligned [B, N, D] view takes the packed kernel, one misaligned by an element the scalar one;
    // the per-element math is the same, so the bits must be.
    let Some(dev) = common::gpu("gated_residual_packed_equals_scalar") else { return };
    let mut rng = common::rng("gated_residual_packed_equals_scalar");
    let (b, n, d) = (2, 37, 1536);
    let numel = b * n * d;
    let (m, _) = modulation(&dev, &mut rng, b, d);
    let gate = m.narrow(1, 2, 1).unwrap();
    let (xv, yv) = (common::randn(&mut rng, numel, 1.0), common::randn(&mut rng, numel, 1.0));
    for xt in rf::DTYPES {
        let run = |off: usize| {
            let view = |v: &[f32], dt: DType| {
                let mut all = vec![f32::NAN; numel + 1];
                all[off..off + numel].copy_from_slice(v);
                let t = Tensor::from_f32(&dev, &[numel + 1], dt, &all).unwrap();
                t.narrow(0, off, numel).unwrap().reshape(&[b, n, d]).unwrap()
            };
            let (x, y, out) = (view(&xv, xt), view(&yv, xt), view(&vec![f32::NAN; numel], xt));
            ops::gated_residual(&x, &y, &gate, &out).unwrap();
            out.to_f32_vec().unwrap()
        };
        let (packed, scalar) = (run(0), run(1));
        assert!(packed.iter().all(|v| !v.is_nan()), "{xt}: an element was not written");
        assert!(packed.iter().zip(&scalar).all(|(p, s)| p.to_bits() == s.to_bits()), "{xt}: packed and scalar differ");
    }
}
