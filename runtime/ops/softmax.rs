//! Softmax over the last axis.

use crate::gpu::kernels::{Pair, SOFTMAX, SOFTMAX_REG};
use crate::{Result, Tensor};

use super::checks::{contiguous, expect_shape, row_blocks, row_config, rows_of, same_device};
use super::range;

/// `out = softmax(x)` over the last axis of `x` ([.., L]): max-subtracted, f32 exp and sum, one
/// rounding to `out`'s dtype (any; `out` has `x`'s shape and may be `x` itself). Both contiguous.
/// A row that is all -inf gives NaN, as in torch.
pub fn softmax(x: &Tensor, out: &Tensor) -> Result<()> {
    const OP: &str = "softmax";
    let _r = range(OP);
    let (rows, l) = rows_of(OP, "x", x)?;
    expect_shape(OP, "out", out, x.shape())?;
    contiguous(OP, &[("x", x), ("out", out)])?;
    same_device(OP, &[("x", x), ("out", out)])?;
    if rows == 0 {
        return Ok(());
    }
    let dev = x.device();
    if crate::settings::settings().unverified && (REG_MIN..=REG_MAX).contains(&l) {
        // Threads for REG_PER elements each, in whole warps.
        let cfg = row_blocks(rows, l.div_ceil(REG_PER).next_multiple_of(32) as u32);
        return SOFTMAX_REG.launch(dev, Pair(x.dtype(), out.dtype()), cfg, (x, out, rows, l));
    }
    SOFTMAX.launch(dev, Pair(x.dtype(), out.dtype()), row_config(rows, l), (x, out, rows, l))
}

/// Row lengths the register-resident kernel (`softmax_reg`, kernels/softmax.cu) takes: up to
/// `SOFTMAX_REG_PER` (16) elements a thread at most 1024 threads; from 1024 elements (shorter rows,
/// the text and image encoders', keep the strided kernel). Only with `WANRT_UNVERIFIED=1` until its
/// GPU test (tests/gpu_ops_softmax.rs) has run: written for the VAE's mid-block attention (2.2% of the
/// 720p decode under ncu, reading its f32 scores three times), it has not run on a GPU yet.
const REG_PER: u64 = 16;
const REG_MIN: u64 = 1024;
const REG_MAX: u64 = REG_PER * 1024;

#[cfg(test)]
mod tests {
    /// The launcher's elements per thread are the kernel's (`SOFTMAX_REG_PER` in kernels/softmax.cu):
    /// one unit in two languages, held together here.
    #[test]
    fn elements_per_thread_match_the_kernel() {
        let src = crate::registry::source("softmax").unwrap().source;
        assert!(src.contains(&format!("#define SOFTMAX_REG_PER {}\n", super::REG_PER)), "kernels/softmax.cu: SOFTMAX_REG_PER is not {}", super::REG_PER);
    }
}
