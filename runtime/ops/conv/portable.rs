//! The portable conv3d kernel (`kernels/conv3d.cu`): an implicit GEMM on CUDA cores, 64 output
//! positions × 64 output channels per block, f32 FMA accumulation over taps then input channels.

use crate::gpu::kernels::CONV3D;
use crate::gpu::params::Conv3dDims;
use crate::gpu::LaunchConfig;
use crate::{Error, Result, Tensor};

use super::{check, Conv3dGeom};
use crate::ops::range;

/// Output positions and channels per block (`TILE_M`, `TILE_N` in kernels/conv3d.cu).
const TILE_M: u64 = 64;
const TILE_N: u64 = 64;

/// [`super::conv3d`] on the portable kernel, whatever the device and dtype (tests compare the fast
/// paths against it).
pub fn conv3d_portable(
    x: &Tensor,
    prev: Option<&Tensor>,
    w: &Tensor,
    bias: Option<&Tensor>,
    residual: Option<&Tensor>,
    geom: &Conv3dGeom,
    out: &Tensor,
) -> Result<()> {
    let _r = range("conv3d");
    let s = check(x, prev, w, bias, residual, geom, out)?;
    let (to, ho, wo) = s.out;
    let m = (s.b as u64) * (to as u64) * (ho as u64) * (wo as u64);
    if m == 0 || s.cout == 0 {
        return Ok(());
    }
    let (gx, gy) = (m.div_ceil(TILE_M), (s.cout as u64).div_ceil(TILE_N));
    if gx > i32::MAX as u64 || gy > 65_535 {
        return Err(Error::invalid(format!("conv3d: {m} output positions × {} channels exceed one launch's grid", s.cout)));
    }
    let i = |v: usize| v as i64;
    let dims = Conv3dDims {
        batch: i(s.b),
        t: i(s.t),
        p: i(s.p),
        h: i(s.h),
        w: i(s.w),
        cin: i(s.cin),
        cout: i(s.cout),
        to: i(to),
        ho: i(ho),
        wo: i(wo),
        kt: i(s.k.0),
        kh: i(s.k.1),
        kw: i(s.k.2),
        st: i(geom.stride.0),
        sh: i(geom.stride.1),
        sw: i(geom.stride.2),
        pad_t: i(geom.pad_t),
        pad_h: i(geom.pad_h.0),
        pad_w: i(geom.pad_w.0),
    };
    let cfg = LaunchConfig { grid: (gx as u32, gy as u32, 1), block: (16, 16, 1), shared_mem: 0 };
    CONV3D.launch(x.device(), x.dtype(), cfg, (x, prev, w, bias, residual, out, dims))
}
