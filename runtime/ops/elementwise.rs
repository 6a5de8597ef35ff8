//! Elementwise arithmetic on same-shape contiguous tensors: f32 math, one rounding to `out`'s dtype
//! (so a bf16 + bf16 add rounds once, as torch's). Inputs share a dtype; `out` has any dtype and may
//! be one of the inputs.

use crate::gpu::kernels::{Kernel, Pair, Ptr, ADD, ADD_V8, MUL, MUL_V8, SCALE};
use crate::gpu::LaunchConfig;
use crate::{Result, Tensor};

use super::checks::{contiguous, expect_shape, packs_of_8, same_device};
use super::range;

type Binary = Kernel<Pair, (Ptr, Ptr, Ptr, u64)>;

/// `kernels`: the scalar form and the packed form (`checks::packs_of_8`), bit-identical.
fn binary(op: &'static str, kernels: (&Binary, &Binary), a: &Tensor, b: &Tensor, out: &Tensor) -> Result<()> {
    b.expect(op, "b", a.dtype(), a.shape())?;
    expect_shape(op, "out", out, a.shape())?;
    contiguous(op, &[("a", a), ("b", b), ("out", out)])?;
    same_device(op, &[("a", a), ("b", b), ("out", out)])?;
    let n = a.numel();
    if n == 0 {
        return Ok(());
    }
    let dev = a.device();
    if packs_of_8(n, &[Some(a), Some(b), Some(out)]) {
        return kernels.1.launch(dev, Pair(a.dtype(), out.dtype()), LaunchConfig::elementwise(n / 8, 256), (a, b, out, n / 8));
    }
    kernels.0.launch(dev, Pair(a.dtype(), out.dtype()), LaunchConfig::elementwise(n, 256), (a, b, out, n))
}

/// `out = a + b`.
pub fn add(a: &Tensor, b: &Tensor, out: &Tensor) -> Result<()> {
    let _r = range("add");
    binary("add", (&ADD, &ADD_V8), a, b, out)
}

/// `out = a * b`.
pub fn mul(a: &Tensor, b: &Tensor, out: &Tensor) -> Result<()> {
    let _r = range("mul");
    binary("mul", (&MUL, &MUL_V8), a, b, out)
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
