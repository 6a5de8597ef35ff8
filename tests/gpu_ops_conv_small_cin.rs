//! The small-input conv3d (`ops::conv::small_cin`, kernels/conv3d_small_cin.cu: Cin ≤ 4, 3×3 spatial
//! taps) against an f64 CPU reference on fresh random inputs with NaN-poisoned outputs, every dtype: Cin
//! 1, 2, 3 and 4; Cout 96 (the encoder's conv_in) and 8, 16, 40 (whole groups of 8: 16-byte stores, the
//! last block partly idle) and 5, 33, 130 (element stores, partial groups and blocks); 1 and 2 frames
//! with a cache of 0, 1 and 2 frames (the causal padding shrinking by as many); widths and heights
//! below one 16×32 tile, not multiples of 8, and across several tiles; bias and residual on and off,
//! residual = out in place; kt 1, 2 and 3, time stride 2, asymmetric padding; out one element past
//! 16-byte alignment (element stores at Cout 96); prev and out as views next to NaN frames. Every case
//! runs with the launcher's split and again with one CTA per tile looping over every channel block and
//! with one CTA per block, which must give the same bits. Then the dispatcher (`ops::conv3d` takes this
//! kernel for Cin ≤ 4, Cout > 8 with `WANRT_UNVERIFIED=1`, which scripts/gpu-run.sh sets) and the
//! refusals.
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
use wanrt::runtime::ops::conv::{self, small_cin, Conv3dGeom, ConvArgs};
use wanrt::runtime::{Device, Tensor};
use wanrt::DType;

fn cases() -> Vec<Case> {
    let c = causal;
    vec![
        // conv_in: 3 → 96, one frame, no cache (the first chunk), a frame smaller than a tile.
        c(1, 1, 0, (5, 9), 3, 96, true, false),
        // conv_in with a cache of 2 frames: a 33 × 70 frame is 3 × 3 tiles of 16 × 32, the last ones partial.
        c(1, 2, 2, (33, 70), 3, 96, true, true),
        // Cin 1 at Cout 33 (two blocks, the second one channel), cache of 1 frame, two batches.
        c(2, 2, 1, (18, 35), 1, 33, false, true),
        // Cin 2 at Cout 5 (one partial group, three idle ones) and 8 (one whole group).
        c(1, 2, 0, (7, 11), 2, 5, true, false),
        c(1, 1, 1, (17, 8), 2, 8, true, true),
        // Cin 4 at Cout 130: five blocks, the last with 2 channels.
        c(1, 1, 2, (9, 10), 4, 130, true, true),
        // Cout 40 and 16: 16-byte stores with idle groups in the last block; two batches, heights 40 and 3.
        c(2, 1, 1, (40, 37), 3, 40, false, false),
        c(1, 2, 2, (3, 33), 4, 16, true, true),
        // kt 1 with ZeroPad2d-like (0, 1) padding; kt 2 without spatial padding.
        Case {
            kt: 1,
            geom: Conv3dGeom { pad_t: 0, pad_h: (0, 1), pad_w: (0, 1), stride: (1, 1, 1) },
            ..c(1, 3, 0, (9, 15), 4, 96, true, false)
        },
        Case {
            kt: 2,
            geom: Conv3dGeom { pad_t: 1, pad_h: (0, 0), pad_w: (0, 0), stride: (1, 1, 1) },
            ..c(1, 1, 0, (4, 5), 3, 33, false, false)
        },
        // Time stride 2 over [prev ; x] with asymmetric spatial padding.
        Case { geom: Conv3dGeom { pad_t: 0, pad_h: (2, 0), pad_w: (0, 3), stride: (2, 1, 1) }, ..c(1, 4, 1, (8, 11), 3, 96, true, true) },
    ]
}

/// A NaN-filled output, as a view one element into its buffer when `misaligned`.
fn poisoned_at(dev: &Arc<Device>, shape: &[usize], dtype: DType, misaligned: bool) -> Tensor {
    if !misaligned {
        return rf::poisoned(dev, shape, dtype);
    }
    let n: usize = shape.iter().product();
    let whole = rf::poisoned(dev, &[n + 1], dtype);
    Tensor::from_buffer(whole.buffer().clone(), whole.byte_offset() + dtype.size() as u64, shape, dtype).unwrap()
}

/// One case in one dtype: the launcher's split against the reference, then one CTA per tile over every
/// channel block and one CTA per block, bit for bit against it (not in place: the first run consumed
/// the residual). `misaligned` puts out (and the residual) one element past 16-byte alignment.
fn run_case(dev: &Arc<Device>, rng: &mut StdRng, cs: &Case, dt: DType, in_place: bool, misaligned: bool) {
    let (to, ho, wo) = out_dims(cs);
    let x_shape = [cs.b, cs.t, cs.h, cs.w, cs.cin];
    let p_shape = [cs.b, cs.p, cs.h, cs.w, cs.cin];
    let w_shape = [cs.cout, cs.kt, 3, 3, cs.cin];
    let o_shape = [cs.b, to, ho, wo, cs.cout];
    let n = |s: &[usize]| s.iter().product::<usize>();
    let (x, xq) = rf::upload(dev, &x_shape, dt, &common::randn(rng, n(&x_shape), 1.0));
    let (prev, pq) = rf::upload(dev, &p_shape, dt, &common::randn(rng, n(&p_shape), 1.0));
    let fan_in = (cs.kt * 9 * cs.cin) as f32;
    let (w, wq) = rf::upload(dev, &w_shape, dt, &common::randn(rng, n(&w_shape), 1.0 / fan_in.sqrt()));
    let (bias, bq) = rf::upload(dev, &[cs.cout], dt, &common::randn(rng, cs.cout, 0.5));
    let (res, rq) = upload_at(dev, &o_shape, dt, &common::randn(rng, n(&o_shape), 1.0), misaligned);
    let (want, delta) = reference(cs, &xq, &pq, &wq, cs.bias.then_some(&bq[..]), cs.residual.then_some(&rq[..]));
    let out = if in_place && cs.residual { res.clone() } else { poisoned_at(dev, &o_shape, dt, misaligned) };
    let prev_arg = (cs.p > 0).then_some(&prev);
    let (b_arg, r_arg) = (cs.bias.then_some(&bias), cs.residual.then_some(&res));
    let what = format!(
        "conv3d_small_cin {dt} x{x_shape:?} prev {} w{w_shape:?} {:?} bias {} residual {}{}{}",
        cs.p,
        cs.geom,
        cs.bias,
        cs.residual,
        if in_place { " in place" } else { "" },
        if misaligned { " out misaligned" } else { "" }
    );
    let args = ConvArgs::new(&x, &w, cs.geom, &out).prev(prev_arg).bias(b_arg).residual(r_arg);
    if let Some(why) = small_cin::refusal(&args) {
        panic!("{what}: refused: {why}");
    }
    small_cin::conv3d_small_cin(&args).unwrap_or_else(|e| panic!("{what}: {e}"));
    let got = out.to_bytes().unwrap();
    rf::assert_within(&what, &out.to_f32_vec().unwrap(), &want, &rf::bounds(dt, &want, &delta));
    if in_place && cs.residual {
        return;
    }
    let blocks = cs.cout.div_ceil(32);
    for split in [1, blocks] {
        let again = poisoned_at(dev, &o_shape, dt, misaligned);
        small_cin::conv3d_small_cin_with_split(&ConvArgs { out: &again, ..args }, split)
            .unwrap_or_else(|e| panic!("{what} split {split}: {e}"));
        assert!(again.to_bytes().unwrap() == got, "{what}: split {split} of {blocks} gives other bits");
    }
}

#[test]
fn small_cin_matches_reference() {
    let Some(dev) = common::gpu("small_cin_matches_reference") else { return };
    let mut rng = common::rng("small_cin_matches_reference");
    for cs in cases() {
        for dt in rf::DTYPES {
            run_case(&dev, &mut rng, &cs, dt, false, false);
        }
    }
}

#[test]
fn small_cin_residual_in_place() {
    let Some(dev) = common::gpu("small_cin_residual_in_place") else { return };
    let mut rng = common::rng("small_cin_residual_in_place");
    for cs in cases().into_iter().filter(|c| c.residual) {
        for dt in rf::DTYPES {
            run_case(&dev, &mut rng, &cs, dt, true, false);
        }
    }
}

/// out (and the residual) one element past 16-byte alignment: the element stores at Cout 96, with the
/// residual separate and in place.
#[test]
fn small_cin_misaligned_out_uses_element_stores() {
    let Some(dev) = common::gpu("small_cin_misaligned_out_uses_element_stores") else { return };
    let mut rng = common::rng("small_cin_misaligned_out_uses_element_stores");
    for (cs, in_place) in [(causal(1, 2, 2, (20, 41), 3, 96, true, true), false), (causal(1, 1, 1, (7, 9), 3, 96, false, true), true)] {
        for dt in rf::DTYPES {
            run_case(&dev, &mut rng, &cs, dt, in_place, true);
        }
    }
}

/// prev as a view into a longer cache (frames 1..3 of 3, after a NaN frame the kernel must not read) and
/// out as a view with a NaN frame after it (which it must not write).
#[test]
fn small_cin_prev_and_out_as_views() {
    let Some(dev) = common::gpu("small_cin_prev_and_out_as_views") else { return };
    let mut rng = common::rng("small_cin_prev_and_out_as_views");
    for dt in rf::DTYPES {
        let cs = causal(1, 2, 2, (7, 11), 3, 96, true, false);
        let (to, ho, wo) = out_dims(&cs);
        let frame = cs.h * cs.w * cs.cin;
        let (x, xq) = rf::upload(&dev, &[1, cs.t, cs.h, cs.w, cs.cin], dt, &common::randn(&mut rng, cs.t * frame, 1.0));
        let mut cache = vec![f32::NAN; frame];
        cache.extend(common::randn(&mut rng, 2 * frame, 1.0));
        let (cache, cq) = rf::upload(&dev, &[1, 3, cs.h, cs.w, cs.cin], dt, &cache);
        let prev = cache.narrow(1, 1, 2).unwrap();
        let (w, wq) =
            rf::upload(&dev, &[96, 3, 3, 3, cs.cin], dt, &common::randn(&mut rng, 96 * 27 * cs.cin, (27.0 * cs.cin as f32).sqrt().recip()));
        let (bias, bq) = rf::upload(&dev, &[96], dt, &common::randn(&mut rng, 96, 0.5));
        let out_buf = rf::poisoned(&dev, &[1, to + 1, ho, wo, 96], dt);
        let out = out_buf.narrow(1, 0, to).unwrap();
        small_cin::conv3d_small_cin(&ConvArgs::new(&x, &w, cs.geom, &out).prev(Some(&prev)).bias(Some(&bias))).unwrap();
        let all = out_buf.to_f32_vec().unwrap();
        let n = to * ho * wo * 96;
        assert!(all[n..].iter().all(|v| v.is_nan()), "{dt}: wrote past the out view");
        let (want, delta) = reference(&cs, &xq, &cq[frame..], &wq, Some(&bq), None);
        rf::assert_within(&format!("conv3d_small_cin {dt} prev/out views"), &all[..n], &want, &rf::bounds(dt, &want, &delta));
    }
}

/// `ops::conv3d` takes this kernel for Cin ≤ 4 and Cout > 8 (same bits as `conv3d_small_cin`) in every
/// dtype under `WANRT_CONV` other than `portable`; not for Cin = 5, nor for Cout ≤ 8, where the narrow
/// kernel comes first.
#[test]
fn dispatcher_takes_small_cin_for_cin_up_to_4() {
    let Some(dev) = common::gpu("dispatcher_takes_small_cin_for_cin_up_to_4") else { return };
    let mut rng = common::rng("dispatcher_takes_small_cin_for_cin_up_to_4");
    let s = wanrt::runtime::settings::settings();
    let enabled = s.conv != "portable";
    if !enabled {
        eprintln!("WANRT_CONV=portable: checking that the small-Cin kernel is not taken");
    }
    for dt in rf::DTYPES {
        for (cin, cout) in [(3, 96), (1, 33), (4, 130), (5, 96), (3, 8)] {
            let cs = causal(1, 2, 2, (12, 19), cin, cout, true, false);
            let (to, ho, wo) = out_dims(&cs);
            let n = 2 * cs.h * cs.w * cin;
            let x = Tensor::from_f32(&dev, &[1, 2, cs.h, cs.w, cin], dt, &common::randn(&mut rng, n, 1.0)).unwrap();
            let prev = Tensor::from_f32(&dev, &[1, 2, cs.h, cs.w, cin], dt, &common::randn(&mut rng, n, 1.0)).unwrap();
            let w = Tensor::from_f32(&dev, &[cout, 3, 3, 3, cin], dt, &common::randn(&mut rng, cout * 27 * cin, 0.1)).unwrap();
            let bias = Tensor::from_f32(&dev, &[cout], dt, &common::randn(&mut rng, cout, 0.5)).unwrap();
            let a = rf::poisoned(&dev, &[1, to, ho, wo, cout], dt);
            let args = ConvArgs::new(&x, &w, cs.geom, &a).prev(Some(&prev)).bias(Some(&bias));
            let path = conv::chosen_path(&args);
            let expect = enabled && cin <= small_cin::MAX_CIN && cout > conv::narrow::MAX_COUT;
            assert_eq!(path == "small_cin", expect, "{dt} Cin {cin} Cout {cout}: dispatcher chose {path}");
            if expect {
                let b = rf::poisoned(&dev, &[1, to, ho, wo, cout], dt);
                conv::conv3d(&args).unwrap();
                small_cin::conv3d_small_cin(&ConvArgs { out: &b, ..args }).unwrap();
                assert_eq!(a.to_bytes().unwrap(), b.to_bytes().unwrap(), "{dt} Cin {cin} Cout {cout}: ops::conv3d took another kernel");
            }
        }
    }
}

/// Calls this path refuses, each with a reason naming the cause; `conv3d_small_cin` returns the same
/// error instead of launching.
#[test]
fn small_cin_refusals_give_reasons() {
    let Some(dev) = common::gpu("small_cin_refusals_give_reasons") else { return };
    let bf = DType::BF16;
    let z = |shape: &[usize]| Tensor::zeros(&dev, shape, bf).unwrap();
    let pad1 = Conv3dGeom { pad_t: 2, pad_h: (1, 1), pad_w: (1, 1), stride: (1, 1, 1) };
    let expect = |what: &str, x: &Tensor, w: &Tensor, geom: &Conv3dGeom, out: &Tensor, needle: &str| {
        let args = ConvArgs::new(x, w, *geom, out);
        let e = small_cin::refusal(&args).unwrap_or_else(|| panic!("{what}: not refused"));
        let msg = e.to_string();
        eprintln!("{what}: {msg}");
        assert!(msg.contains(needle), "{what}: reason {msg:?} does not say {needle:?}");
        let run = small_cin::conv3d_small_cin(&args).expect_err(what).to_string();
        assert_eq!(run, msg, "{what}: conv3d_small_cin and refusal disagree");
    };
    let x3 = z(&[1, 2, 8, 8, 3]);
    expect("Cin 5", &z(&[1, 2, 8, 8, 5]), &z(&[96, 3, 3, 3, 5]), &pad1, &z(&[1, 2, 8, 8, 96]), "Cin = 5");
    let pad2 = Conv3dGeom { pad_h: (2, 2), pad_w: (2, 2), ..pad1 };
    expect("5×5", &x3, &z(&[96, 3, 5, 5, 3]), &pad2, &z(&[1, 2, 8, 8, 96]), "5×5");
    let time_conv = Conv3dGeom { pad_h: (0, 0), pad_w: (0, 0), ..pad1 };
    expect("3×1×1", &x3, &z(&[96, 3, 1, 1, 3]), &time_conv, &z(&[1, 2, 8, 8, 96]), "3×3");
    let down = Conv3dGeom { pad_t: 0, pad_h: (0, 1), pad_w: (0, 1), stride: (1, 2, 2) };
    expect("stride 2", &x3, &z(&[96, 1, 3, 3, 3]), &down, &z(&[1, 2, 4, 4, 96]), "stride");
    // Every time tap's halo must fit the device's shared memory: kt 64 at Cin 4 needs 958 KB.
    let long = Conv3dGeom { pad_t: 63, ..pad1 };
    expect("kt 64", &z(&[1, 1, 8, 8, 4]), &z(&[96, 64, 3, 3, 4]), &long, &z(&[1, 1, 8, 8, 96]), "shared memory");
    // A bad argument is the contract's error, naming it.
    expect("bad out", &x3, &z(&[96, 3, 3, 3, 3]), &pad1, &z(&[1, 2, 8, 7, 96]), "out");
    // A split outside 1..=blocks.
    let err = small_cin::conv3d_small_cin_with_split(&ConvArgs::new(&x3, &z(&[96, 3, 3, 3, 3]), pad1, &z(&[1, 2, 8, 8, 96])), 4)
        .expect_err("split 4 of 3 blocks");
    assert!(err.to_string().contains("split 4"), "{err}");
    // Taken: Cin 1..=4, Cout 1 and 96, kt 1, time stride 2, any padding; an empty output is a no-op.
    for cin in 1..=small_cin::MAX_CIN {
        let x = z(&[1, 2, 8, 8, cin]);
        assert!(small_cin::refusal(&ConvArgs::new(&x, &z(&[96, 3, 3, 3, cin]), pad1, &z(&[1, 2, 8, 8, 96]))).is_none(), "Cin {cin}");
    }
    let k133 = Conv3dGeom { pad_t: 0, ..pad1 };
    assert!(small_cin::refusal(&ConvArgs::new(&x3, &z(&[1, 1, 3, 3, 3]), k133, &z(&[1, 2, 8, 8, 1]))).is_none());
    let st2 = Conv3dGeom { pad_t: 0, pad_h: (0, 0), pad_w: (0, 0), stride: (2, 1, 1) };
    assert!(small_cin::refusal(&ConvArgs::new(&z(&[1, 5, 8, 8, 3]), &z(&[96, 3, 3, 3, 3]), st2, &z(&[1, 2, 6, 6, 96]))).is_none());
    let empty = Tensor::empty(&dev, &[0, 2, 8, 8, 3], bf).unwrap();
    let empty_out = Tensor::empty(&dev, &[0, 2, 8, 8, 96], bf).unwrap();
    small_cin::conv3d_small_cin(&ConvArgs::new(&empty, &z(&[96, 3, 3, 3, 3]), pad1, &empty_out)).unwrap();
}
