//! conv3d on Hopper's warpgroup MMA with input rows shared by the three kw taps
//! (`kernels/conv3d_wgmma_rows.cu`, sm_90a): for kernels three wide at width stride 1 with one column
//! of padding each side, Cin a multiple of 32 and kt·kh ≤ 16 (the Wan VAE's 3×3×3 causal convs and its
//! per-frame 3×3 convs). One shared-memory stage holds 130 gathered input rows of one (dt, dh, channel
//! block) and the three kw taps' weights; the taps read the rows through descriptors one row apart, so
//! the A operand crosses L2 once per three taps instead of once per tap ([`super::wgmma`]). The GEMM
//! runs over positions of the padded width (W + 2 per output row; the two extra per row are computed
//! and dropped).
//!
//! N tiles of 96, 128 and 192 channels as [`super::wgmma`] and of 8 for 3-channel outputs; channel blocks of 64 (`k64`, Cin % 64 == 0)
//! or 32 (`k32`, any Cin % 32 == 0, e.g. 96), so no stage multiplies zero-filled channels. On an H100
//! its tiles ran the VAE's 3×3(×3) layers 8-20% faster than the per-tap kernel's best tile (BENCHMARKS.md).
//!
//! M tiles of 128 rows, and of 256 (`m256`: each warpgroup multiplies two m64 blocks with the same
//! weight tiles, 258 gathered rows per stage) to halve the weight bytes per FLOP where the weights
//! dominate a stage. [`row_tile`] takes the 192-wide one where the grid stays large (the 192- and
//! 384-channel layers above latent resolution: up to 1.24× the m128 tile on an H100). At 96 channels
//! only the warp-specialized tiles pay (`w`: a third warpgroup gathers, the two multiplying ones
//! wait on mbarriers and keep one stage's products in flight), the taller the better: m256 1.10-1.14×
//! the m128 tile at 480p on an H100, m384 (three m64 blocks a warpgroup) a further 1.07-1.10×.
//! [`row_tile`] takes m384 there, persistent (`p`: one CTA per SM walking the tiles) another
//! 1.07-1.17× per layer (H200). The GPU tests and benches/conv_bench.rs run every tile of [`tiles`].

use super::mma::{check, Problem};
use super::wgmma::device_refusal;
use super::{residual_refusal, Conv3dGeom, ConvArgs};
use crate::gpu::kernels::{Key, CONV3D_WGMMA_ROWS};
use crate::gpu::params_conv::ConvMma;
use crate::gpu::LaunchConfig;
use crate::ops::range;
use crate::{DType, Error, Result, Tensor};

const OP: &str = "conv3d_wgmma_rows";

/// A CTA tile: `block_m` rows (128, 256, or specialized also 384: two warpgroups of one to three m64 blocks each) ×
/// `block_n` channels, `stages` cp.async stages, channel blocks of `block_k` (64 or 32);
/// `specialized`: a third warpgroup issues the gathers and the two multiplying ones wait on mbarriers
/// (entry suffix `w`, 384 threads); `persistent` (specialized only, suffix `p`): at most one CTA per SM,
/// each walking tiles `blockIdx.x + k·gridDim.x`, its loaders filling the next tile's stages while the
/// multiplying warpgroups write the last one out through a staging area of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RowTile {
    pub block_m: u32,
    pub block_n: u32,
    pub stages: u32,
    pub block_k: u32,
    pub specialized: bool,
    pub persistent: bool,
}

impl RowTile {
    /// The entry-point suffix, `m{block_m}n{block_n}s{stages}k{block_k}`, + `w` when specialized, + `p`
    /// when persistent.
    pub fn name(&self) -> String {
        let w = if self.specialized { "w" } else { "" };
        let p = if self.persistent { "p" } else { "" };
        format!("m{}n{}s{}k{}{w}{p}", self.block_m, self.block_n, self.stages, self.block_k)
    }
    /// Threads per CTA: two multiplying warpgroups, and the loading one when specialized.
    pub fn threads(&self) -> u32 {
        if self.specialized {
            384
        } else {
            256
        }
    }
    /// Per stage: the A tile (block_k / 8 chunk columns of block_m + 2 rows, rounded up to ≡ 1 mod 8,
    /// × 16 bytes, rounded up to 1 KiB) and three B tiles of block_n rows × 2·block_k bytes; + 1 KiB to
    /// align the first stage; specialized, + 256 bytes for the stages' two mbarriers each; persistent, +
    /// the epilogue's staging (128 rows of block_n + 8 floats).
    pub fn shared_bytes(&self) -> u32 {
        let staging = if self.persistent { 128 * (self.block_n + 8) * 4 } else { 0 };
        self.stages * self.stage_bytes() + 1024 + if self.specialized { 256 } else { 0 } + staging
    }
    fn stage_bytes(&self) -> u32 {
        let a_rows = self.block_m + 2; // the tile's rows and the two that tap dw = 2 reads past it
        let rows_per_chunk = (a_rows + 6) / 8 * 8 + 1;
        let a = (self.block_k / 8 * rows_per_chunk * 16).div_ceil(1024) * 1024;
        a + 3 * self.block_n * self.block_k * 2
    }
}

/// An m128 tile.
const fn t(block_n: u32, stages: u32, block_k: u32) -> RowTile {
    RowTile { block_m: 128, block_n, stages, block_k, specialized: false, persistent: false }
}
/// An m256 tile.
const fn t256(block_n: u32, stages: u32, block_k: u32) -> RowTile {
    RowTile { block_m: 256, block_n, stages, block_k, specialized: false, persistent: false }
}
/// A warp-specialized tile of `block_m` rows (384: three m64 blocks per multiplying warpgroup).
const fn tall_ws(block_m: u32, block_n: u32, stages: u32, block_k: u32) -> RowTile {
    RowTile { block_m, block_n, stages, block_k, specialized: true, persistent: false }
}
/// A warp-specialized tile.
const fn ws(tile: RowTile) -> RowTile {
    RowTile { specialized: true, ..tile }
}
/// A persistent warp-specialized tile.
const fn persist(tile: RowTile) -> RowTile {
    RowTile { persistent: true, ..tile }
}

/// Every entry of conv3d_wgmma_rows.cu, in its order.
const TILES: [RowTile; 24] = [
    t(8, 4, 64),
    t(8, 4, 32),
    t(96, 2, 64),
    t(96, 3, 64),
    t(128, 2, 64),
    t(192, 2, 64),
    t(96, 3, 32),
    t(96, 4, 32),
    t(128, 3, 32),
    t(192, 3, 32),
    t256(96, 3, 32),
    t256(96, 4, 32),
    t256(96, 2, 64),
    t256(192, 3, 32),
    ws(t(96, 3, 32)),
    ws(t(96, 4, 32)),
    ws(t256(96, 3, 32)),
    ws(t256(96, 4, 32)),
    ws(t256(96, 3, 64)),
    tall_ws(384, 96, 3, 32),
    tall_ws(384, 96, 4, 32),
    persist(ws(t256(96, 4, 32))),
    persist(tall_ws(384, 96, 3, 32)),
    persist(tall_ws(384, 96, 4, 32)),
];

pub fn tiles() -> &'static [RowTile] {
    &TILES
}

/// An entry of kernels/conv3d_wgmma_rows.cu: `conv3d_wgmma_rows_{dtype}_{tile}`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RowKey(pub DType, pub RowTile);
impl Key for RowKey {
    fn suffix(&self) -> String {
        format!("{}_{}", self.0.kernel_suffix(), self.1.name())
    }
}

pub(crate) fn conv_wgmma_rows_keys() -> Vec<RowKey> {
    TILES.iter().flat_map(|&t| [DType::BF16, DType::F16].map(|dt| RowKey(dt, t))).collect()
}

/// Why [`conv3d_wgmma_rows`] cannot take this call: [`super::mma::refusal`]'s argument reasons, a
/// geometry other than kw = 3 at width stride 1 with padding (1, 1), Cin not a multiple of 32, more
/// than 16 (dt, dh) pairs, x or prev of 2^31 elements or more, or a device that is not compute
/// capability 9.0.
pub fn refusal(args: &ConvArgs) -> Option<Error> {
    match check(args) {
        Err(e) => Some(e),
        Ok(pb) => shape_refusal(&pb, &args.geom).or_else(|| device_refusal(OP, args.x, TILES[0].shared_bytes())),
    }
}

fn shape_refusal(pb: &Problem, geom: &Conv3dGeom) -> Option<Error> {
    width_refusal(OP, pb, geom)
        .or_else(|| (pb.cin % 32 != 0).then(|| Error::invalid(format!("{OP}: Cin = {} is not a multiple of 32 (its channel blocks)", pb.cin))))
        .or_else(|| extent_refusal(OP, pb))
}

/// What every row-sharing kernel (this one and `super::wgmma_tf32_rows`) needs of the width axis: 3
/// taps at stride 1 with padding (1, 1).
pub(super) fn width_refusal(op: &str, pb: &Problem, geom: &Conv3dGeom) -> Option<Error> {
    let kw = pb.kernel.2;
    (kw != 3 || geom.stride.2 != 1 || geom.pad_w != (1, 1)).then(|| {
        Error::invalid(format!(
            "{op}: width taps {kw}, stride {}, padding {:?}: takes 3 taps at stride 1 with padding (1, 1)",
            geom.stride.2, geom.pad_w
        ))
    })
}

/// The row-sharing kernels' limits: at most 16 (dt, dh) pairs (row masks), x and prev under 2^31
/// elements (32-bit offsets, with the padding pixels just outside them), padded-width rows in i32
/// (with the up to 415 rows past a tile's start that an m384 CTA's loaders index).
pub(super) fn extent_refusal(op: &str, pb: &Problem) -> Option<Error> {
    let (kt, kh, _) = pb.kernel;
    if kt * kh > 16 {
        return Some(Error::invalid(format!("{op}: kernel {kt}×{kh}×3: at most 16 (time, height) taps (its row masks)")));
    }
    let frame = pb.height * pb.width * pb.cin;
    let elements = (pb.frames.max(pb.prev_frames) * pb.batch + 2) * frame;
    if elements > i32::MAX as usize {
        return Some(Error::invalid(format!("{op}: x or prev of {elements} elements: its offsets are 32-bit")));
    }
    let rows = padded_rows(pb);
    (rows > i32::MAX as usize - 512).then(|| Error::invalid(format!("{op}: {rows} padded-width rows exceed its i32 positions")))
}

/// GEMM rows of a row-sharing kernel: B·To·Ho·(W + 2).
pub(super) fn padded_rows(pb: &Problem) -> usize {
    pb.batch * pb.out.0 * pb.out.1 * (pb.width + 2)
}

/// The parameter block and grid size of a row-sharing launch of the checked `args`: `block_n` output
/// channels and `block_k`-channel stages per CTA of `block_m` padded-width rows, 16-byte output stores
/// when Cout is a multiple of `vec_width`.
pub(super) fn row_params<'a>(
    op: &str,
    args: &ConvArgs<'a>,
    pb: &Problem,
    (block_m, block_n, block_k): (u32, u32, usize),
    vec_width: usize,
    norm: Option<(&'a Tensor, bool)>,
) -> Result<(ConvMma<'a>, u32)> {
    let &ConvArgs { x, prev, w, bias, residual, geom, out } = args;
    let (kt, kh, kw) = pb.kernel;
    let rows = padded_rows(pb);
    let (m_tiles, n_tiles) = (rows.div_ceil(block_m as usize), pb.cout.div_ceil(block_n as usize));
    if m_tiles * n_tiles > i32::MAX as usize {
        return Err(Error::invalid(format!("{op}: {m_tiles}·{n_tiles} CTAs exceed the grid")));
    }
    let cin_blocks = pb.cin / block_k;
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
        m: i(rows),
        cin_blocks: i(cin_blocks),
        ktiles: i(kt * kh * cin_blocks),
        n_tiles: i(n_tiles),
        vec_out: i32::from(pb.cout % vec_width == 0),
        piece: 0,
        norm_gamma: norm.map(|n| n.0),
        norm_silu: norm.is_some_and(|n| n.1),
    };
    Ok((params, (m_tiles * n_tiles) as u32))
}

/// The tile for `cout` output channels at `cin` input channels, always an m128 one ([`row_tile`] widens
/// it to 256 rows where that pays): 8 wide for at most 8 (the decoder's
/// conv_out), else the N width that pads `cout` least (192 where 128 and 192 pad equally, e.g. 384), in the stage count and channel block that ran
/// fastest with it. From benches/conv_bench.rs on an H100 (2026-12-06, the Wan VAE's layers, 480p and
/// 720p): 192 wide, 32-channel blocks and 3 stages ran every 192- and 384-channel layer fastest (384:
/// 529 TFLOP/s against 375 for 128 wide, 64-channel blocks, 2 stages; 192: 476 against 433 for 64-
/// channel blocks); at 96 output channels, 64-channel blocks and 2 stages where Cin % 64 == 0 (192 → 96:
/// 372 against 362) and 32-channel blocks, 3 stages at 96 input channels (367 against 346 for 4).
pub fn default_row_tile(cout: usize, cin: usize) -> RowTile {
    if cout <= 8 {
        return if cin % 64 == 0 { t(8, 4, 64) } else { t(8, 4, 32) };
    }
    let padded = |n: usize| cout.div_ceil(n) * n;
    let (p96, p128, p192) = (padded(96), padded(128), padded(192));
    if p96 < p128 && p96 < p192 {
        if cin % 64 == 0 {
            t(96, 2, 64)
        } else {
            t(96, 3, 32)
        }
    } else if p192 <= p128 {
        t(192, 3, 32)
    } else {
        t(128, 3, 32)
    }
}

/// The contract's conv3d (see [`super::mma::conv3d_mma`]) with [`default_row_tile`].
pub fn conv3d_wgmma_rows(args: &ConvArgs) -> Result<()> {
    let pb = check(args)?;
    if let Some(list) = &crate::settings::settings().conv_rows_tile {
        if let Some(name) = list.split(',').find(|name| !TILES.iter().any(|t| t.name() == *name)) {
            let names: Vec<String> = TILES.iter().map(RowTile::name).collect();
            return Err(Error::invalid(format!("{OP}: WANRT_CONV_ROWS_TILE={list}: {name} is not a tile (tiles: {names:?})")));
        }
    }
    let tile = row_tile(&pb, args.x.device().sm_count() as usize);
    launch(args, pb, tile, None)
}

/// [`default_row_tile`], taken 256 rows tall where it is 192 wide and the taller grid fills the SMs
/// about as well: an m256 CTA halves the weight bytes per FLOP, and at 192 and 384 channels the
/// weights are most of a stage. Both 192-wide tiles run one CTA per SM, so each grid's fill is its
/// CTAs over the slots of its waves; m256 is taken while 1.15 times its fill (its gain per FLOP on
/// full grids) reaches m128's. H100, benches/conv_bench.rs (bf16): the 384-channel resblocks at 120×208
/// 544 → 649 TFLOP/s (394 CTAs), the 192-channel ones at 240×416 499 → 617; the 384-channel ones at
/// 720p's latent resolution 476 → 562 (114 CTAs on 132 SMs, fill 0.86 either way); at 480p's (50
/// CTAs, fill 0.38 against 0.76) 420 → 256, so that keeps m128. At 96 channels m256 gave nothing (368
/// → 350-370).
///
/// `WANRT_CONV_ROWS_TILE` names tiles of [`tiles`] (comma-separated) that replace the choice wherever
/// one's N width is the default's and its channel block divides Cin (the first such name;
/// [`conv3d_wgmma_rows`] refuses a name that is no tile).
///
/// At 96 output channels (Cin a multiple of 32: the resblocks' 96 and the 192 → 96 resample) it takes
/// the persistent warp-specialized m384n96s4k32wp (one CTA per SM walking the tiles, each multiplying
/// warpgroup three m64 blocks) where the m384 grid fills at least one wave, else m256n96s4k32wp where
/// the m256 one does. H100, benches/conv_bench.rs (bf16, TFLOP/s, m256n96s4k32w → m384n96s4k32w): the
/// decoder's 96-channel resblock convs 400.5 → 430.7 at 480p, 380.5 → 418.0 at 720p (m384 carries 18%
/// fewer L2 bytes per FLOP; ncu: L2 80% busy at m256); whole bf16 decode 0.7108 → 0.6974 s at
/// 480p-81f. H200 (m384n96s4k32w → m384n96s4k32wp): the same layers 453.9 → 483.9 at 480p, 421.4 →
/// 491.7 at 720p, the encoder's 450.6 → 481.1 and 416.7 → 474.3; m256n96s4k32wp 464.9-479.5 there,
/// three stages slower (396.9-413.9).
pub fn row_tile(pb: &Problem, sms: usize) -> RowTile {
    const M256_GAIN: f64 = 1.15;
    const M256_WS: RowTile = persist(ws(t256(96, 4, 32)));
    const M384_WS: RowTile = persist(tall_ws(384, 96, 4, 32));
    let tile = default_row_tile(pb.cout, pb.cin);
    if let Some(list) = &crate::settings::settings().conv_rows_tile {
        let named = list.split(',').find_map(|name| TILES.iter().find(|t| t.name() == name && t.block_n == tile.block_n && pb.cin % t.block_k as usize == 0));
        if let Some(&named) = named {
            return named;
        }
    }
    let tall = t256(tile.block_n, tile.stages, tile.block_k);
    let ctas = |rows: usize| padded_rows(pb).div_ceil(rows) * pb.cout.div_ceil(tile.block_n as usize);
    // The share of the last wave's slots a grid of `c` CTAs fills, at `per_sm` CTAs per SM.
    let fill = |c: usize| c as f64 / (c.div_ceil(sms.max(1)) * sms.max(1)) as f64;
    if tile.block_n == 192 && TILES.contains(&tall) && M256_GAIN * fill(ctas(256)) >= fill(ctas(128)) {
        tall
    } else if tile.block_n == 96 && pb.cin % 32 == 0 {
        // The tallest warp-specialized tile whose grid fills a wave.
        [M384_WS, M256_WS].into_iter().find(|t| ctas(t.block_m as usize) >= sms).unwrap_or(tile)
    } else {
        tile
    }
}

/// Why [`conv3d_wgmma_rows_norm`] cannot take this call: a residual, [`refusal`]'s reasons, or an
/// output wider than one N tile of the default tile (the norm needs every channel of a row in one CTA),
/// Cout not a multiple of 8, or `gamma` not `[Cout]` in x's dtype and contiguous.
pub fn norm_refusal(args: &ConvArgs, gamma: &Tensor) -> Option<Error> {
    if let Some(e) = residual_refusal(OP, args).or_else(|| refusal(args)) {
        return Some(e);
    }
    norm_tile_refusal(args, gamma, default_row_tile(args.w.dim(0), args.w.dim(4)))
}

/// What a fused norm needs of `tile` and `gamma` (see [`norm_refusal`]).
fn norm_tile_refusal(args: &ConvArgs, gamma: &Tensor, tile: RowTile) -> Option<Error> {
    let (x, w) = (args.x, args.w);
    let cout = w.dim(0);
    if tile.persistent {
        return Some(Error::invalid(format!("{OP}: the persistent tile {} has no room for the fused norm", tile.name())));
    }
    if cout > tile.block_n as usize || cout % 8 != 0 {
        return Some(Error::invalid(format!("{OP}: a fused norm over {cout} channels needs them in one N tile of {} and a multiple of 8", tile.block_n)));
    }
    if gamma.dtype() != x.dtype() || gamma.shape() != [cout] || !gamma.is_contiguous() {
        return Some(Error::invalid(format!("{OP}: norm gamma {:?} {} is not [{cout}] {} contiguous", gamma.shape(), gamma.dtype(), x.dtype())));
    }
    None
}

/// `out = WanRMS_norm(conv(x) + bias) [then SiLU]` in one launch: diffusers' `WanResidualBlock`'s
/// `conv1` followed by `norm2` and its SiLU, with the norm on the f32 sums before any rounding
/// (`ops::l2_norm` after [`conv3d_wgmma_rows`] normalizes the conv's rounded output instead: the two
/// differ by that rounding). The norm is `F.normalize` over channels · sqrt(Cout) · gamma.
pub fn conv3d_wgmma_rows_norm(args: &ConvArgs, gamma: &Tensor, silu: bool) -> Result<()> {
    let pb = check(args)?;
    if let Some(e) = norm_refusal(args, gamma) {
        return Err(e);
    }
    let tile = default_row_tile(pb.cout, pb.cin);
    launch(args, pb, tile, Some((gamma, silu)))
}

/// [`conv3d_wgmma_rows_norm`] with an explicit tile from [`tiles`] (its channel block must divide Cin,
/// its N tile hold every channel): the m256 tiles run the norm per 128-row epilogue pass, as m128.
pub fn conv3d_wgmma_rows_norm_with_tile(args: &ConvArgs, gamma: &Tensor, silu: bool, tile: RowTile) -> Result<()> {
    let pb = check(args)?;
    if let Some(e) = residual_refusal(OP, args).or_else(|| norm_tile_refusal(args, gamma, tile)) {
        return Err(e);
    }
    launch(args, pb, tile, Some((gamma, silu)))
}

/// [`conv3d_wgmma_rows`] with an explicit tile from [`tiles`] (its channel block must divide Cin).
pub fn conv3d_wgmma_rows_with_tile(args: &ConvArgs, tile: RowTile) -> Result<()> {
    let pb = check(args)?;
    launch(args, pb, tile, None)
}

fn launch(args: &ConvArgs, pb: Problem, tile: RowTile, norm: Option<(&Tensor, bool)>) -> Result<()> {
    let _r = range(OP);
    let x = args.x;
    if let Some(e) = shape_refusal(&pb, &args.geom) {
        return Err(e);
    }
    if !TILES.contains(&tile) {
        return Err(Error::invalid(format!("{OP}: tile {} is not instantiated", tile.name())));
    }
    if pb.cin % tile.block_k as usize != 0 {
        return Err(Error::invalid(format!("{OP}: tile {} needs Cin a multiple of {}, Cin = {}", tile.name(), tile.block_k, pb.cin)));
    }
    if let Some(e) = device_refusal(OP, x, tile.shared_bytes()) {
        return Err(e);
    }
    if pb.m() == 0 || pb.cout == 0 {
        return Ok(());
    }
    let (params, tiles) = row_params(OP, args, &pb, (tile.block_m, tile.block_n, tile.block_k as usize), 8, norm)?;
    // A persistent grid: one CTA per SM (its shared memory allows no second), at most one per tile.
    let grid = if tile.persistent { tiles.min(x.device().sm_count()) } else { tiles };
    let cfg = LaunchConfig { grid: (grid, 1, 1), block: (tile.threads(), 1, 1), shared_mem: tile.shared_bytes() };
    CONV3D_WGMMA_ROWS.launch(x.device(), RowKey(pb.dtype, tile), cfg, (params,))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shared-memory sizes the kernel's layout gives (conv3d_wgmma_rows.cu): two k64 n96 CTAs fit
    /// an H100's 228 KiB per SM, as do two k32 n96 ones (3 or 4 stages).
    #[test]
    fn shared_bytes_follow_the_layout() {
        assert_eq!(t(96, 2, 64).shared_bytes(), 2 * (18 * 1024 + 3 * 96 * 128) + 1024);
        assert_eq!(t(96, 4, 32).shared_bytes(), 4 * (9 * 1024 + 3 * 96 * 64) + 1024);
        for tile in [t(96, 2, 64), t(96, 3, 32), t(96, 4, 32)] {
            assert!(2 * (tile.shared_bytes() + 1024) <= 228 * 1024, "{}", tile.name());
        }
        assert!(TILES.iter().all(|t| t.shared_bytes() <= 227 * 1024));
        // m256: 258 rows per chunk column, 265 with the bank padding.
        assert_eq!(t256(96, 3, 32).shared_bytes(), 3 * (17 * 1024 + 3 * 96 * 64) + 1024);
        assert_eq!(t256(96, 2, 64).shared_bytes(), 2 * (34 * 1024 + 3 * 96 * 128) + 1024);
        // Persistent m384 s4: 386 rows, 393 padded (25 KiB a chunk column block), the mbarriers and the
        // epilogue's own staging (128 × 104 floats): within the 227 KiB a CTA may have.
        let p384 = persist(tall_ws(384, 96, 4, 32));
        assert_eq!(p384.shared_bytes(), 4 * (25 * 1024 + 3 * 96 * 64) + 1024 + 256 + 128 * 104 * 4);
        assert_eq!(p384.name(), "m384n96s4k32wp");
    }

    /// The kernel's static_assert: a 128-row epilogue pass (block_n + 8 floats a row, plus the fused
    /// norm's block_n / 8 + 1 floats a row) fits the pipeline buffers, for every tile.
    #[test]
    fn epilogue_staging_fits() {
        const EPILOGUE_ROWS: u32 = 128;
        for tile in TILES {
            let need = EPILOGUE_ROWS * (tile.block_n + 8) * 4 + EPILOGUE_ROWS * (tile.block_n / 8 + 1) * 4;
            assert!(need <= tile.stages * tile.stage_bytes(), "{}", tile.name());
        }
    }

    #[test]
    fn names_carry_the_m_tile() {
        assert_eq!(t(96, 3, 32).name(), "m128n96s3k32");
        assert_eq!(t256(96, 3, 32).name(), "m256n96s3k32");
        assert_eq!(RowKey(DType::BF16, t256(192, 3, 32)).suffix(), "bf16_m256n192s3k32");
        assert_eq!(ws(t256(96, 4, 32)).name(), "m256n96s4k32w");
        let names: Vec<String> = TILES.iter().map(RowTile::name).collect();
        assert!(names.iter().enumerate().all(|(i, n)| !names[..i].contains(n)), "duplicate tiles");
    }

    /// The Wan decoder's 3×3×3 resblock convs at 480p (one 4-frame chunk) on a 132-SM H100.
    #[test]
    fn tall_tiles_where_the_grid_stays_large() {
        let pb = |frames: usize, height: usize, width: usize, c: usize| Problem {
            batch: 1,
            frames,
            prev_frames: 2,
            height,
            width,
            cin: c,
            cout: c,
            kernel: (3, 3, 3),
            out: (frames, height, width),
            dtype: DType::BF16,
        };
        // 384 channels at 120×208 (2 frames) and 192 at 240×416: m256; at latent resolution: m128.
        assert_eq!(row_tile(&pb(2, 120, 208, 384), 132), t256(192, 3, 32));
        assert_eq!(row_tile(&pb(4, 240, 416, 192), 132), t256(192, 3, 32));
        assert_eq!(row_tile(&pb(1, 60, 104, 384), 132), t(192, 3, 32));
        // 720p's latent resolution: 114 m256 CTAs fill 132 SMs as well as 228 m128 ones do.
        assert_eq!(row_tile(&pb(1, 90, 160, 384), 132), t256(192, 3, 32));
        // 96 channels: the persistent warp-specialized m384 tile on full-resolution grids (the 192 → 96 resample
        // too), m256 where only its grid fills a wave, m128 on a grid smaller than one wave of m256 CTAs
        // (2 frames of 8×20: 2 of them).
        let (p384, p256) = (persist(tall_ws(384, 96, 4, 32)), persist(ws(t256(96, 4, 32))));
        assert_eq!(row_tile(&pb(4, 480, 832, 96), 132), p384);
        assert_eq!(row_tile(&pb(1, 720, 1280, 96), 132), p384);
        assert_eq!(row_tile(&Problem { cin: 192, kernel: (1, 3, 3), prev_frames: 0, ..pb(4, 480, 832, 96) }, 132), p384);
        assert_eq!(row_tile(&pb(1, 150, 256, 96), 132), p256);
        assert_eq!(row_tile(&pb(2, 8, 20, 96), 132), t(96, 3, 32));
    }

    #[test]
    fn default_tiles_follow_the_benchmark() {
        assert_eq!(default_row_tile(3, 96), t(8, 4, 32));
        assert_eq!(default_row_tile(8, 128), t(8, 4, 64));
        assert_eq!(default_row_tile(96, 96), t(96, 3, 32));
        assert_eq!(default_row_tile(96, 192), t(96, 2, 64));
        assert_eq!(default_row_tile(32, 384), t(96, 2, 64));
        assert_eq!(default_row_tile(192, 192), t(192, 3, 32));
        assert_eq!(default_row_tile(192, 384), t(192, 3, 32));
        assert_eq!(default_row_tile(384, 384), t(192, 3, 32));
        assert_eq!(default_row_tile(128, 96), t(128, 3, 32));
        assert_eq!(default_row_tile(256, 256), t(128, 3, 32));
        // Every default is an instantiated m128 tile whose channel block divides a Cin it is chosen for.
        for (cout, cin) in [(96, 96), (96, 160), (130, 160), (200, 96), (40, 64)] {
            let tile = default_row_tile(cout, cin);
            assert!(TILES.contains(&tile) && cin % tile.block_k as usize == 0 && tile.block_m == 128, "{cout} {cin}");
        }
    }
}
