//! conv3d on Hopper's warpgroup MMA (`kernels/conv3d_wgmma.cu`, sm_90a): the implicit GEMM of
//! [`super::mma`] with wgmma.m64n128k16 and the 128-byte-swizzled shared layout. The default on
//! sm_90 (`WANRT_CONV=mma` turns it off); the GPU tests run it wherever [`refusal`] is `None` and
//! `benches/conv_bench.rs` times it beside the mma.sync tiles.

use super::mma::{check, Problem};
use super::Conv3dGeom;
use crate::gpu::kernels::{Key, CONV3D_WGMMA};
use crate::gpu::params_conv::ConvMma;
use crate::gpu::{Arch, LaunchConfig};
use crate::ops::range;
use crate::{DType, Error, Result, Tensor};

const OP: &str = "conv3d_wgmma";
const BLOCK_K: u32 = 64;
const BLOCK_N: u32 = 128;

/// A CTA tile: `block_m` rows (one warpgroup per 64) × 128 channels, `stages` cp.async stages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WgTile {
    pub block_m: u32,
    pub stages: u32,
}

impl WgTile {
    /// The entry-point suffix, `m{block_m}n128s{stages}`.
    pub fn name(&self) -> String {
        format!("m{}n{BLOCK_N}s{}", self.block_m, self.stages)
    }
    /// `stages` × (A and B tiles of 128-byte rows) + 1 KiB to align the first tile to 1024 bytes.
    pub fn shared_bytes(&self) -> u32 {
        self.stages * (self.block_m + BLOCK_N) * BLOCK_K * 2 + 1024
    }
}

/// Every entry of conv3d_wgmma.cu: 128×128 over two warpgroups, 3 stages (97 KiB, two CTAs per SM) or 4
/// (129 KiB, one).
const TILES: [WgTile; 2] = [WgTile { block_m: 128, stages: 3 }, WgTile { block_m: 128, stages: 4 }];

pub fn tiles() -> &'static [WgTile] {
    &TILES
}

/// An entry of kernels/conv3d_wgmma.cu: `conv3d_wgmma_{dtype}_{tile}`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WgKey(pub DType, pub WgTile);
impl Key for WgKey {
    fn suffix(&self) -> String {
        format!("{}_{}", self.0.kernel_suffix(), self.1.name())
    }
}

pub(crate) fn conv_wgmma_keys() -> Vec<WgKey> {
    TILES.iter().flat_map(|&t| [DType::BF16, DType::F16].map(|dt| WgKey(dt, t))).collect()
}

/// Why [`conv3d_wgmma`] cannot take this call: [`super::mma::refusal`]'s argument reasons, or a device
/// that is not compute capability 9.0 (the kernels exist for sm_90a only).
#[allow(clippy::too_many_arguments)]
pub fn refusal(
    x: &Tensor,
    prev: Option<&Tensor>,
    w: &Tensor,
    bias: Option<&Tensor>,
    residual: Option<&Tensor>,
    geom: &Conv3dGeom,
    out: &Tensor,
) -> Option<Error> {
    check(x, prev, w, bias, residual, geom, out).err().or_else(|| device_refusal(x, TILES[0]))
}

fn device_refusal(x: &Tensor, tile: WgTile) -> Option<Error> {
    let dev = x.device();
    if dev.arch() != Arch::new(9, 0) {
        return Some(Error::invalid(format!("{OP}: needs compute capability 9.0 (sm_90a wgmma), {} is {}", dev.name(), dev.arch())));
    }
    if tile.shared_bytes() > dev.max_shared_memory_optin() {
        return Some(Error::invalid(format!(
            "{OP}: tile {} needs {} bytes of shared memory, {} allows {}",
            tile.name(),
            tile.shared_bytes(),
            dev.name(),
            dev.max_shared_memory_optin()
        )));
    }
    None
}

/// The contract's conv3d (see [`super::mma::conv3d_mma`]) on wgmma with the 3-stage tile.
#[allow(clippy::too_many_arguments)]
pub fn conv3d_wgmma(
    x: &Tensor,
    prev: Option<&Tensor>,
    w: &Tensor,
    bias: Option<&Tensor>,
    residual: Option<&Tensor>,
    geom: &Conv3dGeom,
    out: &Tensor,
) -> Result<()> {
    conv3d_wgmma_with_tile(x, prev, w, bias, residual, geom, out, TILES[0])
}

/// [`conv3d_wgmma`] with an explicit tile from [`tiles`].
#[allow(clippy::too_many_arguments)]
pub fn conv3d_wgmma_with_tile(
    x: &Tensor,
    prev: Option<&Tensor>,
    w: &Tensor,
    bias: Option<&Tensor>,
    residual: Option<&Tensor>,
    geom: &Conv3dGeom,
    out: &Tensor,
    tile: WgTile,
) -> Result<()> {
    let _r = range("conv3d_wgmma");
    let pb: Problem = check(x, prev, w, bias, residual, geom, out)?;
    if !TILES.contains(&tile) {
        return Err(Error::invalid(format!("{OP}: tile {} is not instantiated", tile.name())));
    }
    if let Some(e) = device_refusal(x, tile) {
        return Err(e);
    }
    let m = pb.m();
    if m == 0 || pb.cout == 0 {
        return Ok(());
    }
    let (m_tiles, n_tiles) = (m.div_ceil(tile.block_m as usize), pb.cout.div_ceil(BLOCK_N as usize));
    if m_tiles * n_tiles > i32::MAX as usize {
        return Err(Error::invalid(format!("{OP}: {m_tiles}·{n_tiles} CTAs exceed the grid (M = {m})")));
    }
    let (kt, kh, kw) = pb.kernel;
    let cin_blocks = pb.cin.div_ceil(BLOCK_K as usize);
    // Sizes passed check's i32 limits (ktiles with 64-channel blocks is at most the 32-channel count).
    let i = |v: usize| v as i32;
    let params = ConvMma {
        x,
        prev,
        w,
        bias,
        residual,
        out,
        input: [i(pb.frames), i(pb.prev_frames), i(pb.height), i(pb.width), i(pb.cin)],
        output: [i(pb.out.0), i(pb.out.1), i(pb.out.2), i(pb.cout)],
        kernel: [i(kt), i(kh), i(kw)],
        stride: [i(geom.stride.0), i(geom.stride.1), i(geom.stride.2)],
        pad: [i(geom.pad_t), i(geom.pad_h.0), i(geom.pad_w.0)],
        m: i(m),
        cin_blocks: i(cin_blocks),
        ktiles: i(kt * kh * kw * cin_blocks),
        n_tiles: i(n_tiles),
        vec_out: i32::from(pb.cout % 8 == 0),
    };
    let cfg = LaunchConfig { grid: ((m_tiles * n_tiles) as u32, 1, 1), block: (tile.block_m / 64 * 128, 1, 1), shared_mem: tile.shared_bytes() };
    CONV3D_WGMMA.launch(x.device(), WgKey(pb.dtype, tile), cfg, (params,))
}
