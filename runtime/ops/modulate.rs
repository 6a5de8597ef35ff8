//! Adaptive-norm modulation with per-sample f32 vectors (shift, scale, gate), as in DiT-style blocks.
//!
//! The per-sample vectors are f32 tensors of shape [B, D] or [B, 1, D] (B may be 1 to broadcast) with
//! unit stride along D and any stride between samples: `mod6.narrow(1, k, 1)` of a [B, 6, D]
//! modulation tensor is passed as is, without a copy.

use crate::gpu::kernels::{Pair, GATED_RESIDUAL, GATED_RESIDUAL_V8, LN_MODULATE, LN_MODULATE_V8};
use crate::gpu::LaunchConfig;
use crate::{Result, Tensor};

use super::checks::{contiguous, expect_shape, packed_rows, packs_of_8, row_config, row_config_v8, sample_vectors, same_device, shape_err};
use super::range;

/// (B, N, D) of an activation tensor [B, N, D].
fn bnd(op: &'static str, name: &str, x: &Tensor) -> Result<(usize, usize, usize)> {
    match *x.shape() {
        [b, n, d] => Ok((b, n, d)),
        _ => Err(shape_err(op, name, "[B, N, D]", x)),
    }
}

/// `out = LayerNorm_noaffine(x) * (1 + scale) + shift`, per sample b of `x` [B, N, D].
///
/// Everything in f32 (two-pass statistics with biased variance, then the modulation), rounded once
/// to `out`'s dtype (any; `out` has `x`'s shape and may be `x` itself). `scale`/`shift`: see the
/// module doc. `x` and `out` contiguous.
pub fn layer_norm_modulate(x: &Tensor, scale: &Tensor, shift: &Tensor, eps: f32, out: &Tensor) -> Result<()> {
    const OP: &str = "layer_norm_modulate";
    let _r = range(OP);
    let (b, n, d) = bnd(OP, "x", x)?;
    expect_shape(OP, "out", out, x.shape())?;
    contiguous(OP, &[("x", x), ("out", out)])?;
    let scale_stride = sample_vectors(OP, "scale", scale, b, d)?;
    let shift_stride = sample_vectors(OP, "shift", shift, b, d)?;
    same_device(OP, &[("x", x), ("scale", scale), ("shift", shift), ("out", out)])?;
    let rows = (b * n) as u64;
    if rows == 0 || d == 0 {
        return Ok(());
    }
    let dev = x.device();
    let args = (x, scale, scale_stride, shift, shift_stride, out, rows, n as u64, d as u64, eps);
    // Every sample's vector 16-byte aligned too: the first one is, and the strides step whole packs.
    if packed_rows(d as u64, &[Some(x), Some(out), Some(scale), Some(shift)]) && scale_stride % 4 == 0 && shift_stride % 4 == 0 {
        return LN_MODULATE_V8.launch(dev, Pair(x.dtype(), out.dtype()), row_config_v8(rows, d as u64), args);
    }
    LN_MODULATE.launch(dev, Pair(x.dtype(), out.dtype()), row_config(rows, d as u64), args)
}

/// `out = x + y * gate` in f32, rounded once to `out`'s dtype: the gated residual update.
///
/// `x`, `y`: [B, N, D], same dtype; `gate`: per-sample f32 vectors (module doc); `out`: [B, N, D],
/// any dtype, may be `x` itself (the in-place residual update). `x`, `y`, `out` contiguous.
pub fn gated_residual(x: &Tensor, y: &Tensor, gate: &Tensor, out: &Tensor) -> Result<()> {
    const OP: &str = "gated_residual";
    let _r = range(OP);
    let (b, n, d) = bnd(OP, "x", x)?;
    y.expect(OP, "y", x.dtype(), x.shape())?;
    expect_shape(OP, "out", out, x.shape())?;
    contiguous(OP, &[("x", x), ("y", y), ("out", out)])?;
    let gate_stride = sample_vectors(OP, "gate", gate, b, d)?;
    same_device(OP, &[("x", x), ("y", y), ("gate", gate), ("out", out)])?;
    let numel = x.numel();
    if numel == 0 {
        return Ok(());
    }
    let dev = x.device();
    if packs_of_8(d as u64, &[Some(x), Some(y), Some(gate), Some(out)]) && gate_stride % 4 == 0 {
        let packs = numel / 8;
        let args = (x, y, gate, gate_stride, out, packs, (n * d) as u64, d as u64);
        return GATED_RESIDUAL_V8.launch(dev, Pair(x.dtype(), out.dtype()), LaunchConfig::elementwise(packs, 256), args);
    }
    let args = (x, y, gate, gate_stride, out, numel, (n * d) as u64, d as u64);
    GATED_RESIDUAL.launch(dev, Pair(x.dtype(), out.dtype()), LaunchConfig::elementwise(numel, 256), args)
}
