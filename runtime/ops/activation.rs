//! Activations evaluated in f32 (as torch does for bf16/f16 tensors) and rounded once to `out`'s dtype.
//! `out` has `x`'s shape, any dtype, and may be `x` itself; both contiguous.

use crate::gpu::kernels::{self, Kernel, Pair, Ptr};
use crate::gpu::LaunchConfig;
use crate::{Result, Tensor};

use super::checks::{contiguous, expect_shape, packs_of_8, same_device};
use super::range;

/// The two GELU forms of torch's `GELU(approximate=...)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GeluApprox {
    /// `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))` (`approximate='tanh'`, "gelu_tanh", "gelu_new").
    Tanh,
    /// `0.5 x (1 + erf(x / sqrt(2)))` (`approximate='none'`, exact GELU).
    Erf,
}

type Unary = Kernel<Pair, (Ptr, Ptr, u64)>;

/// `kernels`: the scalar form and the packed form (`checks::packs_of_8`), bit-identical.
fn unary(op: &'static str, kernels: (&Unary, &Unary), x: &Tensor, out: &Tensor) -> Result<()> {
    expect_shape(op, "out", out, x.shape())?;
    contiguous(op, &[("x", x), ("out", out)])?;
    same_device(op, &[("x", x), ("out", out)])?;
    let n = x.numel();
    if n == 0 {
        return Ok(());
    }
    let dev = x.device();
    if packs_of_8(n, &[Some(x), Some(out)]) {
        return kernels.1.launch(dev, Pair(x.dtype(), out.dtype()), LaunchConfig::elementwise(n / 8, 256), (x, out, n / 8));
    }
    kernels.0.launch(dev, Pair(x.dtype(), out.dtype()), LaunchConfig::elementwise(n, 256), (x, out, n))
}

/// `out = gelu(x)` in the given form.
pub fn gelu(x: &Tensor, out: &Tensor, approximate: GeluApprox) -> Result<()> {
    let _r = range("gelu");
    match approximate {
        GeluApprox::Tanh => unary("gelu", (&kernels::GELU_TANH, &kernels::GELU_TANH_V8), x, out),
        GeluApprox::Erf => unary("gelu", (&kernels::GELU_ERF, &kernels::GELU_ERF_V8), x, out),
    }
}

/// transformers' `NewGELUActivation` ("gelu_new", T5/UMT5's gated FFN) as PyTorch evaluates it on a
/// bf16/f16 tensor: the tanh-approximation formula with every elementwise op rounded to `out`'s
/// dtype in turn (x³, 0.044715·x³, the sum, √(2/π)·, tanh, 1 +, 0.5·x, the product), not once like
/// [`gelu`]. In f32 the two agree up to f32 rounding.
pub fn gelu_new(x: &Tensor, out: &Tensor) -> Result<()> {
    let _r = range("gelu_new");
    unary("gelu_new", (&kernels::GELU_NEW, &kernels::GELU_NEW_V8), x, out)
}

/// `out = x * sigmoid(x)` (SiLU), computed as `x / (1 + exp(-x))`.
pub fn silu(x: &Tensor, out: &Tensor) -> Result<()> {
    let _r = range("silu");
    unary("silu", (&kernels::SILU, &kernels::SILU_V8), x, out)
}
