//! LayerNorm and RMSNorm over the last axis: f32 statistics, output in any dtype, rounded once.

use crate::gpu::kernels::{Pair, L2_NORM, LAYER_NORM, LAYER_NORM_V8, RMS_NORM, RMS_NORM_T5, RMS_NORM_V8};
use crate::{Error, Result, Tensor};

use super::checks::{contiguous, expect_shape, packed_rows, param_vector, row_config, row_config_v8, rows_of, same_device};
use super::range;

/// `out = (x - mean) / sqrt(var + eps) [* weight] [+ bias]` over the last axis of `x` ([.., D]).
///
/// Mean and biased variance are computed in f32 in two passes (mean, then mean squared deviation).
/// `weight` and `bias` ([D], optional) are f32 or `x`'s dtype, the same dtype when both are given
/// (models keep some norms in f32 while the activations are bf16). `out` has `x`'s shape and any
/// dtype; it may be `x` itself. All tensors contiguous.
pub fn layer_norm(x: &Tensor, weight: Option<&Tensor>, bias: Option<&Tensor>, eps: f32, out: &Tensor) -> Result<()> {
    const OP: &str = "layer_norm";
    let _r = range(OP);
    let (rows, d) = rows_of(OP, "x", x)?;
    expect_shape(OP, "out", out, x.shape())?;
    contiguous(OP, &[("x", x), ("out", out)])?;
    let w_f32 = param_vector(OP, "weight", weight, d as usize, x.dtype())?;
    let b_f32 = param_vector(OP, "bias", bias, d as usize, x.dtype())?;
    if let (Some(wt), Some(bt)) = (weight, bias) {
        if wt.dtype() != bt.dtype() {
            return Err(Error::DType { op: OP, name: "bias".into(), expected: format!("{} (the weight's dtype)", wt.dtype()), got: bt.dtype() });
        }
    }
    let mut all = vec![("x", x), ("out", out)];
    all.extend(weight.map(|t| ("weight", t)));
    all.extend(bias.map(|t| ("bias", t)));
    same_device(OP, &all)?;
    if rows == 0 {
        return Ok(());
    }
    let dev = x.device();
    let args = (x, weight, bias, (w_f32 || b_f32) as i32, out, rows, d, eps);
    if packed_rows(d, &[Some(x), Some(out), weight, bias]) {
        return LAYER_NORM_V8.launch(dev, Pair(x.dtype(), out.dtype()), row_config_v8(rows, d), args);
    }
    LAYER_NORM.launch(dev, Pair(x.dtype(), out.dtype()), row_config(rows, d), args)
}

/// `out = x / sqrt(mean(x^2) + eps) [* weight]` over the last axis of `x` ([.., D]).
///
/// Rounding order, as torch 2.11's `rms_norm` (its fused CPU and CUDA kernels, checked against
/// torch 2.11 on CPU for bf16 and f16): the mean of squares, the normalization and the weight
/// product are all f32 and the result is rounded once to `out`'s dtype. (The older composite
/// path rounded to `x`'s dtype before multiplying by the weight; it differs by up to one ulp.)
/// `eps` is used as f32. `weight` ([D], optional) is f32 or `x`'s dtype. `out` has `x`'s shape and
/// any dtype; it may be `x` itself. All tensors contiguous.
pub fn rms_norm(x: &Tensor, weight: Option<&Tensor>, eps: f32, out: &Tensor) -> Result<()> {
    const OP: &str = "rms_norm";
    let _r = range(OP);
    let (rows, d) = rows_of(OP, "x", x)?;
    expect_shape(OP, "out", out, x.shape())?;
    contiguous(OP, &[("x", x), ("out", out)])?;
    let w_f32 = param_vector(OP, "weight", weight, d as usize, x.dtype())?;
    let mut all = vec![("x", x), ("out", out)];
    all.extend(weight.map(|t| ("weight", t)));
    same_device(OP, &all)?;
    if rows == 0 {
        return Ok(());
    }
    let dev = x.device();
    let args = (x, weight, w_f32 as i32, out, rows, d, eps);
    // rope::rms_norm_rope takes the packed form under the same condition (its statistics must match).
    if packed_rows(d, &[Some(x), Some(out), weight]) {
        return RMS_NORM_V8.launch(dev, Pair(x.dtype(), out.dtype()), row_config_v8(rows, d), args);
    }
    RMS_NORM.launch(dev, Pair(x.dtype(), out.dtype()), row_config(rows, d), args)
}

/// transformers' T5LayerNorm (modeling_umt5.py `UMT5LayerNorm`): the statistics of [`rms_norm`], but
/// the normalized value is rounded to `out`'s dtype before the weight multiplies it, and the product
/// rounded again (`hidden_states.to(weight.dtype)`, then `weight * hidden_states`). Same arguments as
/// [`rms_norm`]; in f32 the two agree.
pub fn rms_norm_t5(x: &Tensor, weight: Option<&Tensor>, eps: f32, out: &Tensor) -> Result<()> {
    const OP: &str = "rms_norm_t5";
    let _r = range(OP);
    let (rows, d) = rows_of(OP, "x", x)?;
    expect_shape(OP, "out", out, x.shape())?;
    contiguous(OP, &[("x", x), ("out", out)])?;
    let w_f32 = param_vector(OP, "weight", weight, d as usize, x.dtype())?;
    let mut all = vec![("x", x), ("out", out)];
    all.extend(weight.map(|t| ("weight", t)));
    same_device(OP, &all)?;
    if rows == 0 {
        return Ok(());
    }
    let dev = x.device();
    RMS_NORM_T5.launch(dev, Pair(x.dtype(), out.dtype()), row_config(rows, d), (x, weight, w_f32 as i32, out, rows, d, eps))
}

/// diffusers' `WanRMS_norm` (autoencoder_kl_wan.py: `F.normalize(x, dim=channels) * scale * gamma +
/// bias`) over the last axis of channels-last `x` ([.., C]):
/// `out = x / max(‖x‖₂, 1e-12) · sqrt(C) · gamma [+ beta]`, then SiLU when `silu` (the VAE's
/// norm → nonlinearity pairs, fused). All in f32, rounded once to `out`'s dtype (diffusers upcasts
/// bf16/f16 input to f32 for the norm too). `gamma`, `beta` [C]: f32 or `x`'s dtype, one dtype when both
/// are given. `out` has `x`'s shape, any dtype, and may be `x` itself. All contiguous.
pub fn l2_norm(x: &Tensor, gamma: &Tensor, beta: Option<&Tensor>, silu: bool, out: &Tensor) -> Result<()> {
    const OP: &str = "l2_norm";
    let _r = range(OP);
    let (rows, d) = rows_of(OP, "x", x)?;
    expect_shape(OP, "out", out, x.shape())?;
    contiguous(OP, &[("x", x), ("out", out)])?;
    let g_f32 = param_vector(OP, "gamma", Some(gamma), d as usize, x.dtype())?;
    param_vector(OP, "beta", beta, d as usize, x.dtype())?;
    if let Some(bt) = beta {
        if bt.dtype() != gamma.dtype() {
            return Err(Error::DType { op: OP, name: "beta".into(), expected: format!("{} (gamma's dtype)", gamma.dtype()), got: bt.dtype() });
        }
    }
    let mut all = vec![("x", x), ("gamma", gamma), ("out", out)];
    all.extend(beta.map(|t| ("beta", t)));
    same_device(OP, &all)?;
    if rows == 0 {
        return Ok(());
    }
    // One warp per row, eight rows per block.
    let blocks = rows.div_ceil(8).clamp(1, 65_535 * 16) as u32;
    let cfg = crate::gpu::LaunchConfig { grid: (blocks, 1, 1), block: (256, 1, 1), shared_mem: 0 };
    L2_NORM.launch(x.device(), Pair(x.dtype(), out.dtype()), cfg, (x, gamma, beta, g_f32 as i32, silu as i32, out, rows, d))
}
