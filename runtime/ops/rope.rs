//! Rotary position embedding, interleaved-pair (complex) convention, with per-token f32 cos/sin tables,
//! and the host builder of 3D (frame, row, column) tables as diffusers' 3D rotary embedding makes them.

use crate::gpu::kernels::{Pair, RMS_NORM_ROPE, RMS_NORM_ROPE_V8, ROPE};
use crate::gpu::LaunchConfig;
use crate::{DType, Error, Result, Tensor};

use super::checks::{contiguous, expect_shape, packed_rows, packs_of_8, param_vector, row_config, row_config_v8, same_device, shape_err};
use super::range;

/// (B, N, H, dh) of `x`, with `cos`/`sin` checked as f32 [N, dh] contiguous tables.
fn check_tables(op: &'static str, x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<(usize, usize, usize, usize)> {
    let [b, n, h, dh] = *x.shape() else {
        return Err(shape_err(op, "x", "[B, N, H, head_dim]", x));
    };
    if dh % 2 != 0 {
        return Err(shape_err(op, "x", "an even head_dim (channel pairs are rotated)", x));
    }
    for (name, t) in [("cos", cos), ("sin", sin)] {
        t.expect(op, name, DType::F32, &[n, dh])?;
        t.expect_contiguous(op, name)?;
    }
    Ok((b, n, h, dh))
}

/// Rotates channel pairs (2i, 2i+1) of every head of `x` [B, N, H, dh] by the angle of pair i of
/// token n: `out[2i] = x[2i]·cos[n,2i] − x[2i+1]·sin[n,2i+1]`, `out[2i+1] = x[2i]·sin[n,2i+1] +
/// x[2i+1]·cos[n,2i]` (diffusers reads cos at even and sin at odd channels). `cos`/`sin`: f32 [N, dh]
/// (see [`rope_tables`]). f32 math, one rounding to `out`'s dtype (any; `out` has `x`'s shape, may be
/// `x`). All contiguous.
pub fn rope_3d(x: &Tensor, cos: &Tensor, sin: &Tensor, out: &Tensor) -> Result<()> {
    const OP: &str = "rope";
    let _r = range(OP);
    let (_, n, h, dh) = check_tables(OP, x, cos, sin)?;
    expect_shape(OP, "out", out, x.shape())?;
    contiguous(OP, &[("x", x), ("out", out)])?;
    same_device(OP, &[("x", x), ("cos", cos), ("sin", sin), ("out", out)])?;
    let pairs = x.numel() / 2;
    if pairs == 0 {
        return Ok(());
    }
    let dev = x.device();
    let args = (x, cos, sin, out, pairs, n as u64, (h * dh) as u64, dh as u64);
    ROPE.launch(dev, Pair(x.dtype(), out.dtype()), LaunchConfig::elementwise(pairs, 256), args)
}

/// The self-attention q/k path in one pass: [`rms_norm`](super::rms_norm) across all H·dh channels of
/// each token of `x` [B, N, H, dh] (f32, `weight` [H·dh] f32 or `x`'s dtype applied, rounded to `x`'s
/// dtype as torch's rms_norm returns it), then [`rope_3d`] on the rounded values, rounded to `out`'s
/// dtype. Bit-identical to the two launches in sequence. `out` may be `x`.
pub fn rms_norm_rope(x: &Tensor, weight: Option<&Tensor>, cos: &Tensor, sin: &Tensor, eps: f32, out: &Tensor) -> Result<()> {
    const OP: &str = "rms_norm_rope";
    let _r = range(OP);
    let (b, n, h, dh) = check_tables(OP, x, cos, sin)?;
    expect_shape(OP, "out", out, x.shape())?;
    contiguous(OP, &[("x", x), ("out", out)])?;
    let d = h * dh;
    let w_f32 = param_vector(OP, "weight", weight, d, x.dtype())?;
    let mut all = vec![("x", x), ("cos", cos), ("sin", sin), ("out", out)];
    all.extend(weight.map(|t| ("weight", t)));
    same_device(OP, &all)?;
    let rows = (b * n) as u64;
    if rows == 0 || d == 0 {
        return Ok(());
    }
    let dev = x.device();
    let args = (x, weight, w_f32 as i32, cos, sin, out, rows, n as u64, d as u64, dh as u64, eps);
    // The form and block size norm::rms_norm takes for the same d and tensors: the same summation
    // order, hence bit-identical results (the tables are whole f32 allocations, dh a multiple of 8).
    if packed_rows(d as u64, &[Some(x), Some(out), weight]) && dh % 8 == 0 && packs_of_8(8, &[Some(cos), Some(sin)]) {
        return RMS_NORM_ROPE_V8.launch(dev, Pair(x.dtype(), out.dtype()), row_config_v8(rows, d as u64), args);
    }
    RMS_NORM_ROPE.launch(dev, Pair(x.dtype(), out.dtype()), row_config(rows, d as u64), args)
}

/// cos and sin of one axis: `len` positions × `dim` channels, angle p·ω_j with ω_j = 1/10000^(2j/dim)
/// in f64, each value repeated twice (interleaved), then cast to f32.
fn axis_table(dim: usize, len: usize) -> (Vec<f32>, Vec<f32>) {
    let freqs: Vec<f64> = (0..dim / 2).map(|j| 1.0 / 10000f64.powf((2 * j) as f64 / dim as f64)).collect();
    let (mut cos, mut sin) = (Vec::with_capacity(len * dim), Vec::with_capacity(len * dim));
    for p in 0..len {
        for &w in &freqs {
            let a = p as f64 * w;
            let (s, c) = (a.sin() as f32, a.cos() as f32);
            cos.extend([c, c]);
            sin.extend([s, s]);
        }
    }
    (cos, sin)
}

/// Cos and sin tables [N, head_dim] for a (frames, height, width) grid of positions, as diffusers'
/// 3D rotary embedding builds them. Rows are tokens, n = (f·height + h)·width + w.
///
/// The head dim is split into t = head_dim − 4·(head_dim/6) channels for the frame and
/// 2·(head_dim/6) each for the row and the column (44/42/42 for 128). Each part is the 1D table of
/// its axis: f64 angles p·10000^(−2j/dim) with `dim` the part's width, repeat-interleaved, cast to
/// f32. Positions start at 0 on every axis. diffusers precomputes 1024 positions per axis; a model
/// enforces that ceiling itself.
pub fn rope_tables(frames: usize, height: usize, width: usize, head_dim: usize) -> Result<(Vec<f32>, Vec<f32>)> {
    let hw_dim = 2 * (head_dim / 6);
    let t_dim = head_dim - 2 * hw_dim;
    if head_dim % 2 != 0 || hw_dim == 0 {
        return Err(Error::invalid(format!("rope_tables: head_dim {head_dim} must be even and at least 6")));
    }
    let n = frames
        .checked_mul(height)
        .and_then(|v| v.checked_mul(width))
        .and_then(|v| v.checked_mul(head_dim))
        .ok_or_else(|| Error::invalid(format!("rope_tables: grid {frames}x{height}x{width} overflows")))?;
    let (tc, ts) = axis_table(t_dim, frames);
    let (hc, hs) = axis_table(hw_dim, height);
    let (wc, ws) = axis_table(hw_dim, width);
    let (mut cos, mut sin) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for f in 0..frames {
        for h in 0..height {
            for w in 0..width {
                for (out, t, hh, ww) in [(&mut cos, &tc, &hc, &wc), (&mut sin, &ts, &hs, &ws)] {
                    out.extend_from_slice(&t[f * t_dim..(f + 1) * t_dim]);
                    out.extend_from_slice(&hh[h * hw_dim..(h + 1) * hw_dim]);
                    out.extend_from_slice(&ww[w * hw_dim..(w + 1) * hw_dim]);
                }
            }
        }
    }
    Ok((cos, sin))
}
