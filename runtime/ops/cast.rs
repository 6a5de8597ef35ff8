//! Dtype conversion on the device.

use crate::gpu::{KernelArgs, LaunchConfig};
use crate::{Error, Result, Tensor};

use super::range;

/// `out = input` converted to `out`'s dtype (same shape, both contiguous). Same dtype is a copy.
pub fn cast(input: &Tensor, out: &Tensor) -> Result<()> {
    const OP: &str = "cast";
    let _r = range("cast");
    if input.shape() != out.shape() {
        return Err(Error::Shape { op: OP, name: "out".into(), expected: format!("{:?}", input.shape()), got: out.shape().to_vec() });
    }
    input.expect_contiguous(OP, "input")?;
    out.expect_contiguous(OP, "out")?;
    if input.dtype() == out.dtype() {
        return out.copy_from(input);
    }
    let n = input.numel();
    if n == 0 {
        return Ok(());
    }
    let dev = input.device();
    let f = dev.function("cast", &format!("cast_{}_to_{}", input.dtype().kernel_suffix(), out.dtype().kernel_suffix()))?;
    let mut args = KernelArgs::new();
    args.ptr(input.ptr()).ptr(out.ptr()).u64(n);
    dev.launch(&f, LaunchConfig::elementwise(n, 256), dev.compute(), &args)
}
