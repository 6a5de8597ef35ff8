//! conv3d (channels-last, causal `prev` frames read in place) against an f64 CPU reference, every
//! dtype, odd sizes (channels not multiples of 8/16, widths not multiples of 8, more than one 64-wide
//! tile of positions and of output channels), frames 1 and 2, prev None / 1 / 2 frames, asymmetric
//! padding with stride 2, bias and residual (also in place), poisoned outputs; plus argument errors.
//! The f32 cases also run the 3xTF32 tensor-core kernel (`ops::conv::tf32`) where it takes them
//! (Cin % 4 == 0), against the same f32 bound.
//!
//! Bound: each output is a chain of K = kt·kh·kw·Cin f32 fused multiply-adds, then the bias and the
//! residual additions: |δ| ≤ (K + 2)·u32·(Σ|x·w| + |bias| + |residual|) (Higham's γ_n for a recursive
//! sum), then one rounding to the output dtype (`reference::tol`). Inputs are rounded to the dtype
//! first, so the reference sees exactly what the device reads.

mod common;
mod reference;

use rand::rngs::StdRng;
use reference as rf;
use wanrt::runtime::ops::conv::tf32;
use wanrt::runtime::ops::{self, conv::conv3d_portable, Conv3dGeom, ConvArgs};
use wanrt::runtime::Tensor;
use wanrt::DType;

struct Case {
    name: &'static str,
    b: usize,
    t: usize,
    p: usize,
    h: usize,
    w: usize,
    cin: usize,
    cout: usize,
    k: (usize, usize, usize),
    geom: Conv3dGeom,
    bias: bool,
    residual: bool,
}

fn geom(pad_t: usize, pad_h: (usize, usize), pad_w: (usize, usize), stride: (usize, usize, usize)) -> Conv3dGeom {
    Conv3dGeom { pad_t, pad_h, pad_w, stride }
}

fn cases() -> Vec<Case> {
    let c = |name, b, t, p, (h, w), (cin, cout), k, geom, bias, residual| Case { name, b, t, p, h, w, cin, cout, k, geom, bias, residual };
    vec![
        // WanCausalConv3d k3 pad 1: 2 causal zero frames, no cache (the first chunk).
        c("k3 causal, 1 frame, no prev", 2, 1, 0, (5, 9), (5, 7), (3, 3, 3), geom(2, (1, 1), (1, 1), (1, 1, 1)), true, false),
        c("k3 causal, 2 frames, no prev", 1, 2, 0, (7, 11), (3, 70), (3, 3, 3), geom(2, (1, 1), (1, 1), (1, 1, 1)), true, false),
        // With a cache of 1 and 2 frames: the front padding shrinks by as many.
        c("k3 causal, prev 1", 1, 2, 1, (6, 13), (17, 9), (3, 3, 3), geom(1, (1, 1), (1, 1), (1, 1, 1)), true, false),
        c("k3 causal, prev 2, 1 frame", 2, 1, 2, (9, 10), (33, 19), (3, 3, 3), geom(0, (1, 1), (1, 1), (1, 1, 1)), true, true),
        c("k3 causal, prev 2, 4 frames, many tiles", 1, 4, 2, (12, 17), (12, 130), (3, 3, 3), geom(0, (1, 1), (1, 1), (1, 1, 1)), false, true),
        // downsample2d: ZeroPad2d(0, 1, 0, 1) then a 3×3 stride-2 conv.
        c("3x3 stride 2, pad bottom/right", 2, 3, 0, (9, 15), (7, 5), (1, 3, 3), geom(0, (0, 1), (0, 1), (1, 2, 2)), true, false),
        c("3x3 stride 2, even sizes", 1, 1, 0, (10, 14), (16, 24), (1, 3, 3), geom(0, (0, 1), (0, 1), (1, 2, 2)), true, false),
        // downsample3d's time_conv: (3,1,1), stride (2,1,1), no padding, the last cached frame in front.
        c("time_conv stride 2, prev 1", 1, 4, 1, (5, 7), (6, 6), (3, 1, 1), geom(0, (0, 0), (0, 0), (2, 1, 1)), true, false),
        c("time_conv stride 2, prev 1, 2 frames", 2, 2, 1, (3, 5), (11, 11), (3, 1, 1), geom(0, (0, 0), (0, 0), (2, 1, 1)), true, false),
        // upsample3d's time_conv: (3,1,1), 2 causal zero frames, doubles the channels.
        c("time_conv causal, doubling", 1, 2, 0, (4, 9), (5, 10), (3, 1, 1), geom(2, (0, 0), (0, 0), (1, 1, 1)), true, false),
        // 1×1×1 shortcut / quant convs, with a residual.
        c("1x1x1 with residual", 1, 3, 0, (7, 9), (13, 21), (1, 1, 1), geom(0, (0, 0), (0, 0), (1, 1, 1)), true, true),
        // Asymmetric padding and strides on every axis at once.
        c("asymmetric, strided", 1, 5, 2, (8, 11), (9, 4), (2, 3, 2), geom(1, (2, 0), (0, 3), (2, 2, 3)), true, true),
    ]
}

/// Output sizes (To, Ho, Wo).
fn out_dims(cs: &Case) -> (usize, usize, usize) {
    let g = &cs.geom;
    (
        (g.pad_t + cs.p + cs.t - cs.k.0) / g.stride.0 + 1,
        (cs.h + g.pad_h.0 + g.pad_h.1 - cs.k.1) / g.stride.1 + 1,
        (cs.w + g.pad_w.0 + g.pad_w.1 - cs.k.2) / g.stride.2 + 1,
    )
}

/// f64 reference and the per-element f32 evaluation bound δ.
fn reference(cs: &Case, x: &[f32], prev: &[f32], w: &[f32], bias: Option<&[f32]>, res: Option<&[f32]>) -> (Vec<f64>, Vec<f64>) {
    let (to, ho, wo) = out_dims(cs);
    let (kt, kh, kw) = cs.k;
    let g = &cs.geom;
    let kk = (kt * kh * kw * cs.cin) as f64;
    let (mut out, mut delta) = (Vec::new(), Vec::new());
    for b in 0..cs.b {
        for ot in 0..to {
            for oh in 0..ho {
                for ow in 0..wo {
                    for co in 0..cs.cout {
                        let (mut s, mut mag) = (0f64, 0f64);
                        for dt in 0..kt {
                            let lt = (ot * g.stride.0 + dt) as isize - g.pad_t as isize;
                            if lt < 0 {
                                continue;
                            }
                            let lt = lt as usize;
                            for dh in 0..kh {
                                let hi = (oh * g.stride.1 + dh) as isize - g.pad_h.0 as isize;
                                if hi < 0 || hi >= cs.h as isize {
                                    continue;
                                }
                                for dw in 0..kw {
                                    let wi = (ow * g.stride.2 + dw) as isize - g.pad_w.0 as isize;
                                    if wi < 0 || wi >= cs.w as isize {
                                        continue;
                                    }
                                    let (hi, wi) = (hi as usize, wi as usize);
                                    for ci in 0..cs.cin {
                                        let xv = if lt < cs.p {
                                            prev[(((b * cs.p + lt) * cs.h + hi) * cs.w + wi) * cs.cin + ci]
                                        } else {
                                            x[(((b * cs.t + lt - cs.p) * cs.h + hi) * cs.w + wi) * cs.cin + ci]
                                        };
                                        let wv = w[(((co * kt + dt) * kh + dh) * kw + dw) * cs.cin + ci];
                                        s += xv as f64 * wv as f64;
                                        mag += (xv as f64 * wv as f64).abs();
                                    }
                                }
                            }
                        }
                        if let Some(bv) = bias {
                            s += bv[co] as f64;
                            mag += (bv[co] as f64).abs();
                        }
                        if let Some(r) = res {
                            let rv = r[(((b * to + ot) * ho + oh) * wo + ow) * cs.cout + co] as f64;
                            s += rv;
                            mag += rv.abs();
                        }
                        out.push(s);
                        delta.push((kk + 2.0) * rf::E32 * mag);
                    }
                }
            }
        }
    }
    (out, delta)
}

/// The kernel a run takes: the portable one (every dtype) or, for f32, the 3xTF32 tensor-core one
/// (`ops::conv::tf32`, checked against the same f32 bound; cases it refuses, Cin % 4 != 0, are
/// skipped for it).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kernel {
    Portable,
    Tf32,
}

/// The kernels run for `dt`.
fn kernels(dt: DType) -> &'static [Kernel] {
    if dt == DType::F32 {
        &[Kernel::Portable, Kernel::Tf32]
    } else {
        &[Kernel::Portable]
    }
}

fn run_case(dev: &std::sync::Arc<wanrt::runtime::Device>, rng: &mut StdRng, cs: &Case, dt: DType, in_place: bool, kernel: Kernel) {
    let (to, ho, wo) = out_dims(cs);
    let (kt, kh, kw) = cs.k;
    let x_shape = [cs.b, cs.t, cs.h, cs.w, cs.cin];
    let p_shape = [cs.b, cs.p, cs.h, cs.w, cs.cin];
    let w_shape = [cs.cout, kt, kh, kw, cs.cin];
    let o_shape = [cs.b, to, ho, wo, cs.cout];
    let n = |s: &[usize]| s.iter().product::<usize>();
    let (x, xq) = rf::upload(dev, &x_shape, dt, &common::randn(rng, n(&x_shape), 1.0));
    let (prev, pq) = rf::upload(dev, &p_shape, dt, &common::randn(rng, n(&p_shape), 1.0));
    let fan_in = (kt * kh * kw * cs.cin) as f32;
    let (w, wq) = rf::upload(dev, &w_shape, dt, &common::randn(rng, n(&w_shape), 1.0 / fan_in.sqrt()));
    let (bias, bq) = rf::upload(dev, &[cs.cout], dt, &common::randn(rng, cs.cout, 0.5));
    let (res, rq) = rf::upload(dev, &o_shape, dt, &common::randn(rng, n(&o_shape), 1.0));
    let (want, delta) = reference(cs, &xq, &pq, &wq, cs.bias.then_some(&bq[..]), cs.residual.then_some(&rq[..]));
    let out = if in_place && cs.residual { res.clone() } else { rf::poisoned(dev, &o_shape, dt) };
    let prev_arg = (cs.p > 0).then_some(&prev);
    let (b_arg, r_arg) = (cs.bias.then_some(&bias), cs.residual.then_some(&res));
    let args = ConvArgs::new(&x, &w, cs.geom, &out).prev(prev_arg).bias(b_arg).residual(r_arg);
    match kernel {
        Kernel::Portable => conv3d_portable(&args).unwrap(),
        Kernel::Tf32 => {
            if let Some(why) = tf32::refusal(&args) {
                eprintln!("conv3d {} {dt}: 3xTF32 kernel skipped ({why})", cs.name);
                return;
            }
            tf32::conv3d_tf32(&args).unwrap();
        }
    }
    let what = format!(
        "conv3d {kernel:?} {} {dt} x{x_shape:?} prev {} w{w_shape:?} {:?}{}",
        cs.name,
        cs.p,
        cs.geom,
        if in_place { " in place" } else { "" }
    );
    rf::assert_within(&what, &out.to_f32_vec().unwrap(), &want, &rf::bounds(dt, &want, &delta));
}

#[test]
fn conv3d_matches_reference() {
    let Some(dev) = common::gpu("conv3d_matches_reference") else { return };
    let mut rng = common::rng("conv3d_matches_reference");
    for cs in cases() {
        for dt in rf::DTYPES {
            for &k in kernels(dt) {
                run_case(&dev, &mut rng, &cs, dt, false, k);
            }
        }
    }
}

#[test]
fn conv3d_residual_in_place() {
    let Some(dev) = common::gpu("conv3d_residual_in_place") else { return };
    let mut rng = common::rng("conv3d_residual_in_place");
    for cs in cases().into_iter().filter(|c| c.residual) {
        for dt in rf::DTYPES {
            for &k in kernels(dt) {
                run_case(&dev, &mut rng, &cs, dt, true, k);
            }
        }
    }
}

/// The dispatching op gives the portable kernel's bits for an f32 call the 3xTF32 kernel refuses
/// (Cin = 33, not a multiple of 4); tests/gpu_ops_conv_tf32.rs pins the calls it takes.
#[test]
fn conv3d_dispatch_f32_is_portable() {
    let Some(dev) = common::gpu("conv3d_dispatch_f32_is_portable") else { return };
    let mut rng = common::rng("conv3d_dispatch_f32_is_portable");
    let cs = &cases()[3];
    let (to, ho, wo) = out_dims(cs);
    let x = Tensor::from_f32(&dev, &[cs.b, cs.t, cs.h, cs.w, cs.cin], DType::F32, &common::randn(&mut rng, cs.b * cs.t * cs.h * cs.w * cs.cin, 1.0)).unwrap();
    let prev = Tensor::from_f32(&dev, &[cs.b, cs.p, cs.h, cs.w, cs.cin], DType::F32, &common::randn(&mut rng, cs.b * cs.p * cs.h * cs.w * cs.cin, 1.0)).unwrap();
    let w = Tensor::from_f32(&dev, &[cs.cout, 3, 3, 3, cs.cin], DType::F32, &common::randn(&mut rng, cs.cout * 27 * cs.cin, 0.1)).unwrap();
    let a = rf::poisoned(&dev, &[cs.b, to, ho, wo, cs.cout], DType::F32);
    let b = rf::poisoned(&dev, &[cs.b, to, ho, wo, cs.cout], DType::F32);
    let args = ConvArgs::new(&x, &w, cs.geom, &a).prev(Some(&prev));
    ops::conv3d(&args).unwrap();
    conv3d_portable(&ConvArgs { out: &b, ..args }).unwrap();
    assert_eq!(a.to_bytes().unwrap(), b.to_bytes().unwrap());
}

#[test]
fn conv3d_refuses_bad_arguments() {
    let Some(dev) = common::gpu("conv3d_refuses_bad_arguments") else { return };
    let t = |s: &[usize], dt| Tensor::zeros(&dev, s, dt).unwrap();
    let g = Conv3dGeom { pad_t: 2, pad_h: (1, 1), pad_w: (1, 1), stride: (1, 1, 1) };
    let x = t(&[1, 2, 5, 6, 3], DType::F32);
    let w = t(&[4, 3, 3, 3, 3], DType::F32);
    let out = t(&[1, 2, 5, 6, 4], DType::F32);
    let err = |r: wanrt::Result<()>| r.unwrap_err().to_string();
    let ok = ConvArgs::new(&x, &w, g, &out);
    ops::conv3d(&ok).unwrap();
    let e = err(ops::conv3d(&ConvArgs { w: &t(&[4, 3, 3, 3, 5], DType::F32), ..ok }));
    assert!(e.contains("w") && e.contains("[4, 3, 3, 3, 5]"), "{e}");
    let e = err(ops::conv3d(&ConvArgs { out: &t(&[1, 2, 5, 6, 5], DType::F32), ..ok }));
    assert!(e.contains("out") && e.contains("[1, 2, 5, 6, 4]"), "{e}");
    let e = err(ops::conv3d(&ok.prev(Some(&t(&[1, 1, 5, 7, 3], DType::F32)))));
    assert!(e.contains("prev"), "{e}");
    let e = err(ops::conv3d(&ok.bias(Some(&t(&[5], DType::F32)))));
    assert!(e.contains("bias"), "{e}");
    let e = err(ops::conv3d(&ok.residual(Some(&t(&[1, 2, 5, 6, 4], DType::BF16)))));
    assert!(e.contains("residual"), "{e}");
    let e = err(ops::conv3d(&ConvArgs { w: &t(&[4, 3, 3, 3, 3], DType::BF16), ..ok }));
    assert!(e.contains("w") && e.contains("bf16"), "{e}");
    // Too few frames for the kernel without padding, a zero stride, out aliasing x.
    let e = err(ops::conv3d(&ConvArgs { geom: Conv3dGeom { pad_t: 0, ..g }, ..ok }));
    assert!(e.contains("kernel"), "{e}");
    let e = err(ops::conv3d(&ConvArgs { geom: Conv3dGeom { stride: (1, 0, 1), ..g }, ..ok }));
    assert!(e.contains("stride"), "{e}");
    let x4 = t(&[1, 2, 5, 6, 4], DType::F32);
    let w44 = t(&[4, 1, 1, 1, 4], DType::F32);
    let e = err(ops::conv3d(&ConvArgs::new(&x4, &w44, Conv3dGeom::valid(), &x4)));
    assert!(e.contains("overlaps"), "{e}");
}
