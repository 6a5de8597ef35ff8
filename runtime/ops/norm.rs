//! LayerNorm and RMSNorm over the last axis: f32 statistics, output in any dtype, rounded once.

use crate::gpu::kernels::{Packs, Pair, L2_NORM, L2_NORM_V8, LAYER_NORM, LAYER_NORM_V8, RMS_NORM, RMS_NORM_T5, RMS_NORM_V8};
use crate::{Error, Result, Tensor};

use super::checks::{contiguous, expect_shape, packed_rows, packs_of_8, param_vector, row_config, row_config_v8, rows_of, same_device};
use super::range;

/// `out = (x - mean) / sqrt(var + eps) [* weight] [+ bias]` over the last axis of `x` ([.., D]).
///
/// Mean and biased variance are computed in f32 in two passes (mean, then mean squared deviation).
/// `weight` and `bias` (`[D]`, optional) are f32 or `x`'s dtype, the same dtype when both are given
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
/// `eps` is used as f32. `weight` (`[D]`, optional) is f32 or `x`'s dtype. `out` has `x`'s shape and
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
/// bf16/f16 input to f32 for the norm too). `gamma`, `beta` `[C]`: f32 or `x`'s dtype, one dtype when both
/// are given. `out` has `x`'s shape, any dtype, and may be `x` itself. All contiguous.
///
/// With C % 8 == 0, C ≤ 1024 and 16-byte aligned tensors (and `WANRT_PACKED` on) a packed kernel runs
/// (several rows per warp, 16-byte accesses: see `l2_norm_packs`); it sums the squares in another
/// order than the scalar kernel, and agrees with it within that f32 rounding.
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
    let dev = x.device();
    let key = Pair(x.dtype(), out.dtype());
    let (wb_f32, silu) = (g_f32 as i32, silu as i32);
    if let Some((group, packs)) = l2_norm_packs(d).filter(|_| packs_of_8(d, &[Some(x), Some(out), Some(gamma), beta])) {
        // 256 threads, 8 · 32/group rows per block; the grid covers every row (the kernel does not
        // grid-stride: see kernels/norm.cu), which at ≥ 8 rows per block fits the 2^31 - 1 block limit
        // for any tensor a device holds.
        let blocks = rows.div_ceil(8 * 32 / group as u64);
        if blocks <= i32::MAX as u64 {
            let cfg = crate::gpu::LaunchConfig { grid: (blocks as u32, 1, 1), block: (256, 1, 1), shared_mem: 0 };
            return L2_NORM_V8.launch(dev, Packs(packs, key), cfg, (x, gamma, beta, wb_f32, silu, out, rows, d, group));
        }
    }
    // One warp per row, eight rows per block.
    let blocks = rows.div_ceil(8).clamp(1, 65_535 * 16) as u32;
    let cfg = crate::gpu::LaunchConfig { grid: (blocks, 1, 1), block: (256, 1, 1), shared_mem: 0 };
    L2_NORM.launch(dev, key, cfg, (x, gamma, beta, wb_f32, silu, out, rows, d))
}

/// The most packs of 8 channels one lane of the packed [`l2_norm`] holds (entries `l2_norm_v8_p1..4`).
pub(crate) const L2_MAX_PACKS: u32 = 4;

/// (lanes per row G, packs per lane P) of the packed [`l2_norm`] for rows of `d` channels (d % 8 == 0):
/// P ≤ [`L2_MAX_PACKS`] and G the smallest power of two with G·P ≥ d/8, so few lanes idle and a warp
/// covers 32/G rows (C = 96: G = 4, P = 3; 192: 8, 3; 384: 16, 3). `None` past 32 · 4 packs (C > 1024):
/// the scalar kernel.
pub(crate) fn l2_norm_packs(d: u64) -> Option<(u32, u32)> {
    let packs = d / 8;
    let group = packs.div_ceil(L2_MAX_PACKS as u64).next_power_of_two();
    (packs > 0 && group <= 32).then(|| (group as u32, packs.div_ceil(group) as u32))
}

#[cfg(test)]
mod tests {
    use super::l2_norm_packs;

    #[test]
    fn l2_norm_groups() {
        let want = [(8, (1, 1)), (16, (1, 2)), (24, (1, 3)), (32, (1, 4)), (40, (2, 3)), (96, (4, 3)), (128, (4, 4)), (192, (8, 3))];
        for (d, gp) in want.into_iter().chain([(384, (16, 3)), (768, (32, 3)), (1024, (32, 4))]) {
            assert_eq!(l2_norm_packs(d), Some(gp), "C = {d}");
        }
        assert_eq!(l2_norm_packs(1032), None);
        for d in (8..=1024).step_by(8) {
            let (g, p) = l2_norm_packs(d).unwrap();
            assert!(32 % g == 0 && (1..=4).contains(&p) && (g * p) as u64 >= d / 8 && ((g * (p - 1)) as u64) < d / 8, "C = {d}");
        }
    }
}
