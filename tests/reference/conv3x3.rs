//! The direct 3×3(×kt) conv cases and their f64 reference, shared by the narrow-output and small-input
//! conv tests (tests/gpu_ops_conv_narrow.rs, tests/gpu_ops_conv_small_cin.rs): the contract of
//! `ops::conv3d` (x [B,T,H,W,Cin], prev [B,P,H,W,Cin] logically before x, w [Cout,kt,3,3,Cin]).

use std::sync::Arc;

use wanrt::runtime::ops::conv::Conv3dGeom;
use wanrt::runtime::{Device, Tensor};
use wanrt::DType;

use super::{upload, E32};

#[derive(Clone, Copy, Debug)]
pub struct Case {
    pub b: usize,
    pub t: usize,
    pub p: usize,
    pub h: usize,
    pub w: usize,
    pub cin: usize,
    pub cout: usize,
    pub kt: usize,
    pub geom: Conv3dGeom,
    pub bias: bool,
    pub residual: bool,
}

/// 3×3×3 causal with a cache of `p` frames (pad_t 2 − p), 1 pixel of spatial padding: the Wan VAE's causal convs.
#[allow(clippy::too_many_arguments)]
pub fn causal(b: usize, t: usize, p: usize, (h, w): (usize, usize), cin: usize, cout: usize, bias: bool, residual: bool) -> Case {
    let geom = Conv3dGeom { pad_t: 2 - p, pad_h: (1, 1), pad_w: (1, 1), stride: (1, 1, 1) };
    Case { b, t, p, h, w, cin, cout, kt: 3, geom, bias, residual }
}

/// Output sizes (To, Ho, Wo).
pub fn out_dims(cs: &Case) -> (usize, usize, usize) {
    let g = &cs.geom;
    ((g.pad_t + cs.p + cs.t - cs.kt) / g.stride.0 + 1, cs.h + g.pad_h.0 + g.pad_h.1 - 2, cs.w + g.pad_w.0 + g.pad_w.1 - 2)
}

/// f64 reference and the per-element f32 evaluation bound δ.
pub fn reference(cs: &Case, x: &[f32], prev: &[f32], w: &[f32], bias: Option<&[f32]>, res: Option<&[f32]>) -> (Vec<f64>, Vec<f64>) {
    let (to, ho, wo) = out_dims(cs);
    let g = &cs.geom;
    let kk = (cs.kt * 9 * cs.cin) as f64;
    let (mut out, mut delta) = (Vec::new(), Vec::new());
    for b in 0..cs.b {
        for ot in 0..to {
            for oh in 0..ho {
                for ow in 0..wo {
                    for co in 0..cs.cout {
                        let (mut s, mut mag) = (0f64, 0f64);
                        for dt in 0..cs.kt {
                            let Some(lt) = (ot * g.stride.0 + dt).checked_sub(g.pad_t) else { continue };
                            for dh in 0..3 {
                                let hi = (oh + dh) as isize - g.pad_h.0 as isize;
                                if hi < 0 || hi >= cs.h as isize {
                                    continue;
                                }
                                for dw in 0..3 {
                                    let wi = (ow + dw) as isize - g.pad_w.0 as isize;
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
                                        let wv = w[(((co * cs.kt + dt) * 3 + dh) * 3 + dw) * cs.cin + ci];
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
                        delta.push((kk + 2.0) * E32 * mag);
                    }
                }
            }
        }
    }
    (out, delta)
}

/// Uploads `values` (rounded to `dtype`) as a view one element into its buffer (after a NaN) when
/// `misaligned`: the tensor then starts 2 or 4 bytes past a 16-byte boundary, which sends a direct
/// conv kernel to its element loads.
pub fn upload_at(dev: &Arc<Device>, shape: &[usize], dtype: DType, values: &[f32], misaligned: bool) -> (Tensor, Vec<f32>) {
    if !misaligned {
        return upload(dev, shape, dtype, values);
    }
    let mut padded = vec![f32::NAN];
    padded.extend_from_slice(values);
    let (whole, q) = upload(dev, &[padded.len()], dtype, &padded);
    let view = Tensor::from_buffer(whole.buffer().clone(), whole.byte_offset() + dtype.size() as u64, shape, dtype).unwrap();
    (view, q[1..].to_vec())
}
