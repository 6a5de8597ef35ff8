//! Dtype conversion on the device.

use crate::gpu::kernels::{To, CAST};
use crate::gpu::LaunchConfig;
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
    CAST.launch(dev, To(input.dtype(), out.dtype()), LaunchConfig::elementwise(n, 256), (input, out, n))
}
