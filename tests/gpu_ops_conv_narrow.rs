//! The narrow-output conv3d (`ops::conv::narrow`, kernels/conv3d_narrow.cu: Cout ≤ 8, 3×3 spatial taps)
//! against an f64 CPU reference on fresh random inputs with NaN-poisoned outputs, every dtype: Cout
//! 1, 3, 8 and the 8-wide entry's partial 5..7; Cin 3, 16, 32, 96 (16-byte loads, 16 channels a
//! stage), 8 and 24 (multiples of 8, not 16) and 100 (element loads), plus x misaligned by one element (element
//! loads at Cin 96); 1 and 2 frames with a cache of 0, 1 and 2 frames (the causal padding shrinking by
//! as many); widths and heights below one tile (16×32), not multiples of 8, and across several tiles; bias and residual on
//! and off, residual = out in place; time stride 2, kt 1 and 2, asymmetric padding; prev and out as
//! views next to NaN frames; 4, 5 and 6 frames (groups of four output frames per CTA, full and
//! partial), where four output frames per CTA must give the default's bits. Then the dispatcher (`ops::conv3d` takes this kernel for Cout ≤ 8 in every
//! dtype, not for Cout 9) and the refusals.
//!
//! Bound (tests/gpu_ops_conv.rs's): each output is a chain of at most K = kt·9·Cin f32 fused
//! multiply-adds, then the bias and residual additions: |δ| ≤ (K + 2)·u32·(Σ|x·w| + |bias| +
//! |residual|), then one rounding to the output dtype (`reference::tol`). Inputs are rounded to the
//! dtype first, so the reference sees exactly what the device reads.

mod common;
mod reference;

use std::sync::Arc;

use rand::rngs::StdRng;
use reference as rf;
use reference::conv3x3::{causal, out_dims, reference, upload_at, Case};
use wanrt::runtime::ops::conv::{self, narrow, Conv3dGeom, ConvArgs};
use wanrt::runtime::{Device, Tensor};
use wanrt::DType;

fn cases() -> Vec<Case> {
    let c = causal;
    vec![
        // Cout 3 at the decoder's Cin, one frame, no cache (the first chunk), a frame smaller than a tile.
        c(1, 1, 0, (5, 9), 96, 3, true, false),
        // Cin 3 and 100: element loads; Cout 1 and 8.
        c(2, 2, 0, (7, 11), 3, 1, true, true),
        c(1, 1, 2, (9, 10), 100, 8, true, true),
        // Cin 16, cache of 1 frame, Cout 8 over two 16-row tiles and two 32-column tiles.
        c(1, 2, 1, (18, 35), 16, 8, false, false),
        // Cout 3, cache of 2 frames: a 33 × 70 frame is 3 × 3 tiles of 16 × 32, the last ones partial.
        c(1, 2, 2, (33, 70), 96, 3, true, false),
        c(2, 1, 1, (40, 37), 16, 3, false, true),
        // Cin 32: two 16-channel stages per time tap, with a cache and both epilogue inputs.
        c(1, 2, 2, (20, 40), 32, 3, true, true),
        // Cin 100 at Cout 1 and 3 with a cache, widths 13 and 6.
        c(1, 2, 1, (6, 13), 100, 1, false, true),
        c(1, 1, 2, (3, 6), 100, 3, true, true),
        // The 8-wide entry's partial widths, 5..7 channels (zero weights past Cout, nothing stored there).
        c(1, 1, 0, (3, 3), 16, 5, true, false),
        c(2, 2, 2, (11, 17), 24, 7, true, true),
        // kt 1 with ZeroPad2d-like (0, 1) padding; kt 2 without spatial padding.
        Case {
            kt: 1,
            geom: Conv3dGeom { pad_t: 0, pad_h: (0, 1), pad_w: (0, 1), stride: (1, 1, 1) },
            ..c(1, 3, 0, (9, 15), 16, 2, true, false)
        },
        Case {
            kt: 2,
            geom: Conv3dGeom { pad_t: 1, pad_h: (0, 0), pad_w: (0, 0), stride: (1, 1, 1) },
            ..c(1, 1, 0, (4, 5), 8, 6, false, false)
        },
        // Time stride 2 over [prev ; x] with asymmetric spatial padding.
        Case { geom: Conv3dGeom { pad_t: 0, pad_h: (2, 0), pad_w: (0, 3), stride: (2, 1, 1) }, ..c(1, 4, 1, (8, 11), 8, 4, true, true) },
        // Frame groups of 4 (Cout ≤ 3, time stride 1): 4 frames with the decoder's 2-frame cache (one
        // group), 6 frames in two batches without a cache (a full group and a partial one of 2), 5 at
        // Cin 100 (element loads, groups of 4 and 1).
        c(1, 4, 2, (19, 37), 96, 3, true, false),
        c(2, 6, 0, (9, 12), 16, 1, true, true),
        c(1, 5, 1, (5, 7), 100, 2, false, true),
    ]
}

fn run_case(dev: &Arc<Device>, rng: &mut StdRng, cs: &Case, dt: DType, in_place: bool, misaligned: bool) {
    let (to, ho, wo) = out_dims(cs);
    let x_shape = [cs.b, cs.t, cs.h, cs.w, cs.cin];
    let p_shape = [cs.b, cs.p, cs.h, cs.w, cs.cin];
    let w_shape = [cs.cout, cs.kt, 3, 3, cs.cin];
    let o_shape = [cs.b, to, ho, wo, cs.cout];
    let n = |s: &[usize]| s.iter().product::<usize>();
    let (x, xq) = upload_at(dev, &x_shape, dt, &common::randn(rng, n(&x_shape), 1.0), misaligned);
    let (prev, pq) = rf::upload(dev, &p_shape, dt, &common::randn(rng, n(&p_shape), 1.0));
    let fan_in = (cs.kt * 9 * cs.cin) as f32;
    let (w, wq) = rf::upload(dev, &w_shape, dt, &common::randn(rng, n(&w_shape), 1.0 / fan_in.sqrt()));
    let (bias, bq) = rf::upload(dev, &[cs.cout], dt, &common::randn(rng, cs.cout, 0.5));
    let (res, rq) = rf::upload(dev, &o_shape, dt, &common::randn(rng, n(&o_shape), 1.0));
    let (want, delta) = reference(cs, &xq, &pq, &wq, cs.bias.then_some(&bq[..]), cs.residual.then_some(&rq[..]));
    let out = if in_place && cs.residual { res.clone() } else { rf::poisoned(dev, &o_shape, dt) };
    let prev_arg = (cs.p > 0).then_some(&prev);
    let (b_arg, r_arg) = (cs.bias.then_some(&bias), cs.residual.then_some(&res));
    let what = format!(
        "conv3d_narrow {dt} x{x_shape:?} prev {} w{w_shape:?} {:?} bias {} residual {}{}{}",
        cs.p,
        cs.geom,
        cs.bias,
        cs.residual,
        if in_place { " in place" } else { "" },
        if misaligned { " x misaligned" } else { "" }
    );
    let args = ConvArgs::new(&x, &w, cs.geom, &out).prev(prev_arg).bias(b_arg).residual(r_arg);
    if let Some(why) = narrow::refusal(&args) {
        panic!("{what}: refused: {why}");
    }
    let before = (in_place && cs.residual).then(|| out.to_bytes().unwrap());
    narrow::conv3d_narrow(&args).unwrap_or_else(|e| panic!("{what}: {e}"));
    rf::assert_within(&what, &out.to_f32_vec().unwrap(), &want, &rf::bounds(dt, &want, &delta));
    // One and four output frames per CTA give the default's bits (each output's sum in one order).
    let groupings: &[usize] = if cs.cout <= narrow::MAX_GROUP_COUT { &[1, narrow::FRAMES] } else { &[] };
    let chosen = out.to_bytes().unwrap();
    for &frames in groupings {
        let again = match &before {
            Some(bytes) => {
                let t = Tensor::from_bytes(dev, &o_shape, dt, bytes).unwrap();
                narrow::conv3d_narrow_with_frames(&ConvArgs { residual: Some(&t), out: &t, ..args }, Some(frames))
                    .unwrap_or_else(|e| panic!("{what} frames {frames}: {e}"));
                t
            }
            None => {
                let t = rf::poisoned(dev, &o_shape, dt);
                narrow::conv3d_narrow_with_frames(&ConvArgs { out: &t, ..args }, Some(frames))
                    .unwrap_or_else(|e| panic!("{what} frames {frames}: {e}"));
                t
            }
        };
        assert!(again.to_bytes().unwrap() == chosen, "{what}: {frames} output frames per CTA differ from the default ({})", narrow::default_frames(cs.cout, o_shape[1]));
    }
}

#[test]
fn narrow_matches_reference() {
    let Some(dev) = common::gpu("narrow_matches_reference") else { return };
    let mut rng = common::rng("narrow_matches_reference");
    for cs in cases() {
        for dt in rf::DTYPES {
            run_case(&dev, &mut rng, &cs, dt, false, false);
        }
    }
}

/// x one element past 16-byte alignment: the element-load staging at Cin % 8 == 0, the decoder's
/// conv_out shape included.
#[test]
fn narrow_misaligned_x_uses_element_loads() {
    let Some(dev) = common::gpu("narrow_misaligned_x_uses_element_loads") else { return };
    let mut rng = common::rng("narrow_misaligned_x_uses_element_loads");
    for cs in [causal(1, 2, 2, (20, 41), 96, 3, true, true), causal(1, 1, 0, (7, 9), 16, 8, false, false)] {
        for dt in rf::DTYPES {
            run_case(&dev, &mut rng, &cs, dt, false, true);
        }
    }
}

#[test]
fn narrow_residual_in_place() {
    let Some(dev) = common::gpu("narrow_residual_in_place") else { return };
    let mut rng = common::rng("narrow_residual_in_place");
    for cs in cases().into_iter().filter(|c| c.residual) {
        for dt in rf::DTYPES {
            run_case(&dev, &mut rng, &cs, dt, true, false);
        }
    }
}

/// prev as a view into a longer cache (frames 1..3 of 3, after a NaN frame the kernel must not read) and
/// out as a view with a NaN frame after it (which it must not write).
#[test]
fn narrow_prev_and_out_as_views() {
    let Some(dev) = common::gpu("narrow_prev_and_out_as_views") else { return };
    let mut rng = common::rng("narrow_prev_and_out_as_views");
    for dt in rf::DTYPES {
        let cs = causal(1, 2, 2, (7, 11), 32, 3, true, false);
        let (to, ho, wo) = out_dims(&cs);
        let frame = cs.h * cs.w * cs.cin;
        let (x, xq) = rf::upload(&dev, &[1, cs.t, cs.h, cs.w, cs.cin], dt, &common::randn(&mut rng, cs.t * frame, 1.0));
        let mut cache = vec![f32::NAN; frame];
        cache.extend(common::randn(&mut rng, 2 * frame, 1.0));
        let (cache, cq) = rf::upload(&dev, &[1, 3, cs.h, cs.w, cs.cin], dt, &cache);
        let prev = cache.narrow(1, 1, 2).unwrap();
        let (w, wq) =
            rf::upload(&dev, &[3, 3, 3, 3, cs.cin], dt, &common::randn(&mut rng, 27 * 3 * cs.cin, (27.0 * cs.cin as f32).sqrt().recip()));
        let (bias, bq) = rf::upload(&dev, &[3], dt, &common::randn(&mut rng, 3, 0.5));
        let out_buf = rf::poisoned(&dev, &[1, to + 1, ho, wo, 3], dt);
        let out = out_buf.narrow(1, 0, to).unwrap();
        narrow::conv3d_narrow(&ConvArgs::new(&x, &w, cs.geom, &out).prev(Some(&prev)).bias(Some(&bias))).unwrap();
        let all = out_buf.to_f32_vec().unwrap();
        let n = to * ho * wo * 3;
        assert!(all[n..].iter().all(|v| v.is_nan()), "{dt}: wrote past the out view");
        let (want, delta) = reference(&cs, &xq, &cq[frame..], &wq, Some(&bq), None);
        rf::assert_within(&format!("conv3d_narrow {dt} prev/out views"), &all[..n], &want, &rf::bounds(dt, &want, &delta));
    }
}

/// `ops::conv3d` takes this kernel for Cout ≤ 8 (same bits as `conv3d_narrow`) in f32, and in bf16/f16
/// except on compute capability 9.0 with `WANRT_UNVERIFIED=1`, where the row-sharing wgmma kernel's
/// 8-wide tile takes these 3×3×3 convs first (under `WANRT_CONV=auto`); never under
/// `WANRT_CONV=portable`, nor for Cout = 9.
#[test]
fn dispatcher_takes_narrow_for_cout_up_to_8() {
    let Some(dev) = common::gpu("dispatcher_takes_narrow_for_cout_up_to_8") else { return };
    let mut rng = common::rng("dispatcher_takes_narrow_for_cout_up_to_8");
    let s = wanrt::runtime::settings::settings();
    let forced_portable = s.conv == "portable";
    let rows_first = s.conv == "auto" && s.unverified && dev.arch() == wanrt::runtime::gpu::Arch::new(9, 0);
    for dt in rf::DTYPES {
        for cout in [3, 8, 9] {
            let cs = causal(1, 2, 2, (12, 19), 96, cout, true, false);
            let (to, ho, wo) = out_dims(&cs);
            let x =
                Tensor::from_f32(&dev, &[1, 2, cs.h, cs.w, cs.cin], dt, &common::randn(&mut rng, 2 * cs.h * cs.w * cs.cin, 1.0)).unwrap();
            let prev =
                Tensor::from_f32(&dev, &[1, 2, cs.h, cs.w, cs.cin], dt, &common::randn(&mut rng, 2 * cs.h * cs.w * cs.cin, 1.0)).unwrap();
            let w = Tensor::from_f32(&dev, &[cout, 3, 3, 3, cs.cin], dt, &common::randn(&mut rng, cout * 27 * cs.cin, 0.03)).unwrap();
            let bias = Tensor::from_f32(&dev, &[cout], dt, &common::randn(&mut rng, cout, 0.5)).unwrap();
            let a = rf::poisoned(&dev, &[1, to, ho, wo, cout], dt);
            let args = ConvArgs::new(&x, &w, cs.geom, &a).prev(Some(&prev)).bias(Some(&bias));
            let path = conv::chosen_path(&args);
            let expect_narrow = cout <= narrow::MAX_COUT && !forced_portable && !(rows_first && dt != DType::F32);
            assert_eq!(path == "narrow", expect_narrow, "{dt} Cout {cout}: dispatcher chose {path}");
            if expect_narrow {
                let b = rf::poisoned(&dev, &[1, to, ho, wo, cout], dt);
                conv::conv3d(&args).unwrap();
                narrow::conv3d_narrow(&ConvArgs { out: &b, ..args }).unwrap();
                assert_eq!(a.to_bytes().unwrap(), b.to_bytes().unwrap(), "{dt} Cout {cout}: ops::conv3d took another kernel");
            }
        }
    }
}

/// Calls this path refuses, each with a reason naming the cause; `conv3d_narrow` returns the same error
/// instead of launching.
#[test]
fn narrow_refusals_give_reasons() {
    let Some(dev) = common::gpu("narrow_refusals_give_reasons") else { return };
    let bf = DType::BF16;
    let z = |shape: &[usize]| Tensor::zeros(&dev, shape, bf).unwrap();
    let pad1 = Conv3dGeom { pad_t: 2, pad_h: (1, 1), pad_w: (1, 1), stride: (1, 1, 1) };
    let expect = |what: &str, w: &Tensor, geom: &Conv3dGeom, out: &Tensor, needle: &str| {
        let x = z(&[1, 2, 8, 8, 16]);
        let args = ConvArgs::new(&x, w, *geom, out);
        let e = narrow::refusal(&args).unwrap_or_else(|| panic!("{what}: not refused"));
        let msg = e.to_string();
        eprintln!("{what}: {msg}");
        assert!(msg.contains(needle), "{what}: reason {msg:?} does not say {needle:?}");
        let run = narrow::conv3d_narrow(&args).expect_err(what).to_string();
        assert_eq!(run, msg, "{what}: conv3d_narrow and refusal disagree");
    };
    expect("Cout 9", &z(&[9, 3, 3, 3, 16]), &pad1, &z(&[1, 2, 8, 8, 9]), "Cout = 9");
    let time_conv = Conv3dGeom { pad_h: (0, 0), pad_w: (0, 0), ..pad1 };
    expect("3×1×1", &z(&[3, 3, 1, 1, 16]), &time_conv, &z(&[1, 2, 8, 8, 3]), "3×3");
    expect("1×1×1", &z(&[3, 1, 1, 1, 16]), &Conv3dGeom::valid(), &z(&[1, 2, 8, 8, 3]), "3×3");
    let down = Conv3dGeom { pad_t: 0, pad_h: (0, 1), pad_w: (0, 1), stride: (1, 2, 2) };
    expect("stride 2", &z(&[3, 1, 3, 3, 16]), &down, &z(&[1, 2, 4, 4, 3]), "stride");
    // A bad argument is the contract's error, naming it.
    expect("bad out", &z(&[3, 3, 3, 3, 16]), &pad1, &z(&[1, 2, 8, 7, 3]), "out");
    // Taken: Cout 8 and 1, kt 1, any padding; an empty output is a no-op.
    let x = z(&[1, 2, 8, 8, 16]);
    assert!(narrow::refusal(&ConvArgs::new(&x, &z(&[8, 3, 3, 3, 16]), pad1, &z(&[1, 2, 8, 8, 8]))).is_none());
    let k133 = Conv3dGeom { pad_t: 0, ..pad1 };
    assert!(narrow::refusal(&ConvArgs::new(&x, &z(&[1, 1, 3, 3, 16]), k133, &z(&[1, 2, 8, 8, 1]))).is_none());
    let empty = Tensor::empty(&dev, &[0, 2, 8, 8, 16], bf).unwrap();
    let empty_out = Tensor::empty(&dev, &[0, 2, 8, 8, 3], bf).unwrap();
    narrow::conv3d_narrow(&ConvArgs::new(&empty, &z(&[3, 3, 3, 3, 16]), pad1, &empty_out)).unwrap();
}
