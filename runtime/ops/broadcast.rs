//! Row-broadcast adds.

use crate::gpu::kernels::{Pair, ADD_ROWS};
use crate::gpu::LaunchConfig;
use crate::{DType, Error, Result, Tensor};

use super::range;

/// `out[b, j] = f32(a[j]) + f32(x[b, j])` with `a` of `width` elements, `x` and `out` `[rows, width]`
/// (any leading shape), `out` f32. Each sum is one f32 rounding, as torch's mixed-dtype add.
pub fn add_rows_f32(a: &Tensor, x: &Tensor, out: &Tensor) -> Result<()> {
    const OP: &str = "add_rows_f32";
    let _r = range(OP);
    let width = a.numel();
    if width == 0 || x.numel() % width != 0 {
        return Err(Error::Shape { op: OP, name: "x".into(), expected: format!("rows of {width}"), got: x.shape().to_vec() });
    }
    out.expect(OP, "out", DType::F32, x.shape())?;
    for (t, n) in [(a, "a"), (x, "x"), (out, "out")] {
        t.expect_contiguous(OP, n)?;
    }
    let rows = x.numel() / width;
    let dev = x.device();
    ADD_ROWS.launch(dev, Pair(a.dtype(), x.dtype()), LaunchConfig::elementwise(x.numel(), 256), (a, x, out, rows, width))
}
