//! Elementwise arithmetic on same-shape contiguous tensors: f32 math, one rounding to `out`'s dtype
//! (so a bf16 + bf16 add rounds once, as torch's). Inputs share a dtype; `out` has any dtype and may
//! be one of the inputs.

use crate::gpu::kernels::{Kernel, Pair, Ptr, ADD, MUL, SCALE};
use crate::gpu::LaunchConfig;
use crate::{Result, Tensor};

use super::checks::{contiguous, expect_shape, same_device};
use super::range;

fn binary(op: &'static str, kernel: &Kernel<Pair, (Ptr, Ptr, Ptr, u64)>, a: &Tensor, b: &Tensor, out: &Tensor) -> Result<()> {
    b.expect(op, "b", a.dtype(), a.shape())?;
    expect_shape(op, "out", out, a.shape())?;
    contiguous(op, &[("a", a), ("b", b), ("out", out)])?;
    same_device(op, &[("a", a), ("b", b), ("out", out)])?;
    let n = a.numel();
    if n == 0 {
        return Ok(());
    }
    let dev = a.device();
    kernel.launch(dev, Pair(a.dtype(), out.dtype()), LaunchConfig::elementwise(n, 256), (a, b, out, n))
}

/// `out = a + b`.
pub fn add(a: &Tensor, b: &Tensor, out: &Tensor) -> Result<()> {
    let _r = range("add");
    binary("add", &ADD, a, b, out)
}

/// `out = a * b`.
pub fn mul(a: &Tensor, b: &Tensor, out: &Tensor) -> Result<()> {
    let _r = range("mul");
    binary("mul", &MUL, a, b, out)
}

/// `out = x * s` (`s` an f32 scalar).
pub fn scale(x: &Tensor, s: f32, out: &Tensor) -> Result<()> {
    const OP: &str = "scale";
    let _r = range(OP);
    expect_shape(OP, "out", out, x.shape())?;
    contiguous(OP, &[("x", x), ("out", out)])?;
    same_device(OP, &[("x", x), ("out", out)])?;
    let n = x.numel();
    if n == 0 {
        return Ok(());
    }
    let dev = x.device();
    SCALE.launch(dev, Pair(x.dtype(), out.dtype()), LaunchConfig::elementwise(n, 256), (x, s, out, n))
}
