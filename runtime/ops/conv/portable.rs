//! The portable conv3d kernel (`kernels/conv3d.cu`): an implicit GEMM on CUDA cores, 64 output
//! positions × 64 output channels per block, f32 FMA accumulation over taps then input channels.

use crate::gpu::kernels::CONV3D;
use crate::gpu::LaunchConfig;
use crate::{Error, Result};

use super::{check, ConvArgs};
use crate::ops::range;

/// Output positions and channels per block (`TILE_M`, `TILE_N` in kernels/conv3d.cu).
const TILE_M: u64 = 64;
const TILE_N: u64 = 64;

/// [`super::conv3d`] on the portable kernel, whatever the device and dtype (tests compare the fast
/// paths against it).
pub fn conv3d_portable(args: &ConvArgs) -> Result<()> {
    let _r = range("conv3d");
    let s = check(args)?;
    let (to, ho, wo) = s.out;
    let m = (s.b as u64) * (to as u64) * (ho as u64) * (wo as u64);
    if m == 0 || s.cout == 0 {
        return Ok(());
    }
    let (gx, gy) = (m.div_ceil(TILE_M), (s.cout as u64).div_ceil(TILE_N));
    if gx > i32::MAX as u64 || gy > 65_535 {
        return Err(Error::invalid(format!("conv3d: {m} output positions × {} channels exceed one launch's grid", s.cout)));
    }
    let dims = s.dims(&args.geom);
    let cfg = LaunchConfig { grid: (gx as u32, gy as u32, 1), block: (16, 16, 1), shared_mem: 0 };
    let &ConvArgs { x, prev, w, bias, residual, out, .. } = args;
    CONV3D.launch(x.device(), x.dtype(), cfg, (x, prev, w, bias, residual, out, dims))
}
