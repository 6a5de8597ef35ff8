//! conv3d on Hopper's warpgroup MMA (`kernels/conv3d_wgmma.cu`, sm_90a): the implicit GEMM of
//! [`super::mma`] with wgmma.m64nNk16, N tiles of 96, 128 or 192 channels, the reduction in pieces of
//! 64 or 32 channels of one tap (no zero-filled MMA work at 96 input channels), per-row tap masks (so
//! kernels of at most 27 taps and 3 frames), and the 128-byte-swizzled shared layout. The
//! default on sm_90 (`WANRT_CONV=mma` turns it off); the GPU tests run every tile wherever [`refusal`]
//! is `None` and `benches/conv_bench.rs` times each beside the mma.sync tiles.

use super::mma::{check, Problem};
use super::ConvArgs;
use crate::gpu::kernels::{Key, CONV3D_WGMMA};
use crate::gpu::params_conv::ConvMma;
use crate::gpu::{Arch, LaunchConfig};
use crate::ops::range;
use crate::{DType, Error, Result, Tensor};

const OP: &str = "conv3d_wgmma";
const BLOCK_K: u32 = 64;

/// A CTA tile: `block_m` rows (one warpgroup per 64) × `block_n` channels, `stages` cp.async stages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WgTile {
    pub block_m: u32,
    pub block_n: u32,
    pub stages: u32,
}

impl WgTile {
    /// The entry-point suffix, `m{block_m}n{block_n}s{stages}`.
    pub fn name(&self) -> String {
        format!("m{}n{}s{}", self.block_m, self.block_n, self.stages)
    }
    /// `stages` × (A and B tiles of 128-byte rows) + 1 KiB to align the first tile to 1024 bytes.
    pub fn shared_bytes(&self) -> u32 {
        self.stages * (self.block_m + self.block_n) * BLOCK_K * 2 + 1024
    }
}

/// Every entry of conv3d_wgmma.cu, in its order: 128 rows × 96, 128 or 192 channels, 3 stages.
const TILES: [WgTile; 3] = [
    WgTile { block_m: 128, block_n: 96, stages: 3 },
    WgTile { block_m: 128, block_n: 128, stages: 3 },
    WgTile { block_m: 128, block_n: 192, stages: 3 },
];
const N96: WgTile = TILES[0];
const N128: WgTile = TILES[1];
const N192: WgTile = TILES[2];

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
pub fn refusal(args: &ConvArgs) -> Option<Error> {
    check(args).err().or_else(|| kernel_refusal(args.w)).or_else(|| device_refusal(OP, args.x, TILES[0].shared_bytes()))
}

/// The kernel keeps one bit per tap and per time tap in a row mask (conv3d_wgmma.cu).
fn kernel_refusal(w: &Tensor) -> Option<Error> {
    let (kt, kh, kw) = (w.dim(1), w.dim(2), w.dim(3));
    (kt * kh * kw > 27 || kt > 3).then(|| Error::invalid(format!("{OP}: kernel {kt}×{kh}×{kw}: at most 27 taps and 3 frames (its row masks)")))
}

/// Compute capability 9.0 (the kernels exist for sm_90a only) and `shared_bytes` within the opt-in limit.
pub(super) fn device_refusal(op: &str, x: &Tensor, shared_bytes: u32) -> Option<Error> {
    let dev = x.device();
    if dev.arch() != Arch::new(9, 0) {
        return Some(Error::invalid(format!("{op}: needs compute capability 9.0 (sm_90a wgmma), {} is {}", dev.name(), dev.arch())));
    }
    if shared_bytes > dev.max_shared_memory_optin() {
        return Some(Error::invalid(format!(
            "{op}: its tile needs {shared_bytes} bytes of shared memory, {} allows {}",
            dev.name(),
            dev.max_shared_memory_optin()
        )));
    }
    None
}

/// The tile [`conv3d_wgmma`] runs for `m` output rows and `cout` channels on `sms` SMs: the N tile
/// that pads `cout` least, the wider on a tie (96 for 96 and less, 192 for 192); where 128 and 192 pad
/// equally (384, 768), 192 while the 128-wide grid would be under four CTAs per SM, else 128. From
/// benches/conv_bench.rs on an H100 (2026-12-05, the Wan VAE's layers): at 6240 rows × 384 channels
/// 192 ran 352 TFLOP/s against 128's 246 (98 CTAs against 147 that leave SMs idle in the last wave), at
/// 49920 rows 452 against 459; at 192 channels 192 ran 426 against 96's 374.
pub fn default_tile(m: usize, cout: usize, sms: u32) -> WgTile {
    let padded = |t: WgTile| cout.div_ceil(t.block_n as usize) * t.block_n as usize;
    let (p96, p128, p192) = (padded(N96), padded(N128), padded(N192));
    let small_grid = m.div_ceil(N128.block_m as usize) * (p128 / 128) < 4 * sms as usize;
    if p96 < p128 && p96 < p192 {
        N96
    } else if p192 < p128 || (p192 == p128 && small_grid) {
        N192
    } else {
        N128
    }
}

/// The contract's conv3d (see [`super::mma::conv3d_mma`]) on wgmma with [`default_tile`].
pub fn conv3d_wgmma(args: &ConvArgs) -> Result<()> {
    let pb = check(args)?;
    let tile = default_tile(pb.m(), pb.cout, args.x.device().sm_count());
    launch(args, pb, tile)
}

/// [`conv3d_wgmma`] with an explicit tile from [`tiles`].
pub fn conv3d_wgmma_with_tile(args: &ConvArgs, tile: WgTile) -> Result<()> {
    let pb = check(args)?;
    launch(args, pb, tile)
}

/// One launch of `tile` for the checked problem `pb` (the remaining refusals, then the parameters).
fn launch(args: &ConvArgs, pb: Problem, tile: WgTile) -> Result<()> {
    let _r = range("conv3d_wgmma");
    let &ConvArgs { x, prev, w, bias, residual, geom, out } = args;
    if let Some(e) = kernel_refusal(w) {
        return Err(e);
    }
    if !TILES.contains(&tile) {
        return Err(Error::invalid(format!("{OP}: tile {} is not instantiated", tile.name())));
    }
    if let Some(e) = device_refusal(OP, x, tile.shared_bytes()) {
        return Err(e);
    }
    let m = pb.m();
    if m == 0 || pb.cout == 0 {
        return Ok(());
    }
    let (m_tiles, n_tiles) = (m.div_ceil(tile.block_m as usize), pb.cout.div_ceil(tile.block_n as usize));
    if m_tiles * n_tiles > i32::MAX as usize {
        return Err(Error::invalid(format!("{OP}: {m_tiles}·{n_tiles} CTAs exceed the grid (M = {m})")));
    }
    let (kt, kh, kw) = pb.kernel;
    // Pieces of 64 channels of one tap, or of 32 (two per K tile) when Cin % 64 != 0. Sizes passed
    // check's i32 limits (the piece count is at most the 32-channel count it bounds).
    let piece = if pb.cin % 64 == 0 { 64 } else { 32 };
    let cin_blocks = pb.cin.div_ceil(piece);
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
        ktiles: i((kt * kh * kw * cin_blocks).div_ceil(BLOCK_K as usize / piece)),
        n_tiles: i(n_tiles),
        vec_out: i32::from(pb.cout % 8 == 0),
        piece: i(piece),
        norm_gamma: None,
        norm_silu: false,
    };
    let cfg = LaunchConfig { grid: ((m_tiles * n_tiles) as u32, 1, 1), block: (tile.block_m / 64 * 128, 1, 1), shared_mem: tile.shared_bytes() };
    CONV3D_WGMMA.launch(x.device(), WgKey(pb.dtype, tile), cfg, (params,))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Wan VAE's layers on a 132-SM H100: each output width gets the tile the benchmark favoured.
    #[test]
    fn default_tiles_follow_the_padding_and_the_grid() {
        let sms = 132;
        assert_eq!(default_tile(1_597_440, 96, sms), N96);
        assert_eq!(default_tile(1_597_440, 3, sms), N96);
        assert_eq!(default_tile(6240, 32, sms), N96);
        assert_eq!(default_tile(399_360, 192, sms), N192);
        assert_eq!(default_tile(6240, 384, sms), N192);
        assert_eq!(default_tile(49_920, 384, sms), N128);
        assert_eq!(default_tile(6240, 768, sms), N192);
        assert_eq!(default_tile(49_920, 768, sms), N128);
        assert_eq!(default_tile(49_920, 256, sms), N128);
        assert_eq!(default_tile(49_920, 320, sms), N128);
    }
}
