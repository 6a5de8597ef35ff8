//! Deterministic random fills (synthesized weights for benchmarks and tests without checkpoints).

use crate::gpu::kernels::FILL_UNIFORM;
use crate::gpu::LaunchConfig;
use crate::{Error, Result, Tensor};

use super::range;

/// Fills `out` with values uniform in `[lo, hi)`; element i depends only on `(seed, i)`.
pub fn fill_uniform(out: &Tensor, seed: u64, lo: f32, hi: f32) -> Result<()> {
    let _r = range("fill_uniform");
    out.expect_contiguous("fill_uniform", "out")?;
    if !(lo.is_finite() && hi.is_finite() && lo <= hi) {
        return Err(Error::invalid(format!("fill_uniform: bad range [{lo}, {hi})")));
    }
    let n = out.numel();
    if n == 0 {
        return Ok(());
    }
    let dev = out.device();
    FILL_UNIFORM.launch(dev, out.dtype(), LaunchConfig::elementwise(n, 256), (out, n, seed, lo, hi))
}
