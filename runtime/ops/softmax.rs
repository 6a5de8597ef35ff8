//! Softmax over the last axis.

use crate::gpu::kernels::{Pair, SOFTMAX};
use crate::{Result, Tensor};

use super::checks::{contiguous, expect_shape, row_config, rows_of, same_device};
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
    SOFTMAX.launch(dev, Pair(x.dtype(), out.dtype()), row_config(rows, l), (x, out, rows, l))
}
