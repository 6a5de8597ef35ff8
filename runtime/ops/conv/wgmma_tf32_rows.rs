//! f32 conv3d on Hopper's warpgroup MMA with the 3xTF32 split, input rows shared by the three kw taps
//! (`kernels/conv3d_wgmma_tf32_rows.cu`, sm_90a): [`super::wgmma_rows`]'s geometry (kernels three wide
//! at width stride 1 with padding (1, 1), kt·kh ≤ 16; GEMM rows over the padded width; one stage = one
//! (dt, dh, channel block) whose gathered input rows serve the three taps) with [`super::tf32`]'s
//! arithmetic: every f32 operand split into big = tf32(a) and small = tf32(a − big), three
//! wgmma.m64nNk8 tf32 products per k8 step (small·big, big·small, big·big), the products of each stage
//! (48 k values) in a partial that starts at zero and is added to the f32 accumulator with an ordinary
//! round-to-nearest add. The kernel header has the design: A (the input rows) split in registers and
//! fed to wgmma's register form, B (the weights) split in shared memory by a conversion pass that
//! overlaps the previous stage's MMAs, 16-channel stages (so Cin % 16 == 0).
//!
//! Accuracy: the split rounds with cvt.rn.tf32.f32 (ties to even, one instruction on sm_90) where
//! conv3d_tf32.cu uses cvt.rna (ties away); both round to nearest, so each product is off by at most
//! about 3·2^-22 of its magnitude as there. tools/tf32_accumulation.py's model of the tensor cores'
//! truncating sums gives relative RMS errors of 4.3e-7 at K = 10,368 for one-stage partials (7e-7 for
//! the two-stage partials of the `g2` n192 tile) against 6.1e-7 for conv3d_tf32.cu's and 1.8e-6 for an
//! f32 FMA chain. Inputs with infinities give NaN (inf − tf32(inf)), as [`super::tf32`].
//!
//! Tiles: 128 padded-width rows (two warpgroups) × 96 or 192 channels, one CTA per SM. [`refusal`] says
//! why a call cannot take this path; [`conv3d_wgmma_tf32_rows`] runs it with [`default_tile`],
//! [`conv3d_wgmma_tf32_rows_with_tile`] with any tile of [`tiles`].

use super::mma::{check_for, Accepts, Problem};
use super::wgmma::device_refusal;
use super::wgmma_rows::{extent_refusal, row_params, width_refusal};
use super::{Conv3dGeom, ConvArgs};
use crate::gpu::kernels::{Key, CONV3D_WGMMA_TF32_ROWS};
use crate::gpu::LaunchConfig;
use crate::ops::range;
use crate::{DType, Error, Result};

const OP: &str = "conv3d_wgmma_tf32_rows";
/// Channels per stage and tap (`conv_tf32_rows::BK`).
const BLOCK_K: u32 = 16;
/// A rows per stage: the tile's 128 and the two that tap dw = 2 reads past it.
const A_ROWS: u32 = 130;

const ACCEPTS: Accepts = Accepts {
    op: OP,
    dtypes: &[DType::F32],
    dtypes_text: "f32 (bf16 and f16 take ops::conv::wgmma_rows)",
    cin_multiple: BLOCK_K as usize,
    cin_text: "its stages are blocks of 16 channels",
    block_k: BLOCK_K as usize,
};

/// A CTA tile: 128 padded-width rows × `block_n` channels, `stages` raw cp.async slots, `partials`
/// partial accumulators (2: stage s is issued while stage s − 1's partial is flushed), `group` stages
/// per wgmma group (no MMA in flight from one group to the next; with one partial, the stages per
/// flush).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tf32RowTile {
    pub block_n: u32,
    pub stages: u32,
    pub partials: u32,
    pub group: u32,
}

impl Tf32RowTile {
    /// The entry-point suffix, `m128n{block_n}s{stages}p{partials}g{group}`.
    pub fn name(&self) -> String {
        format!("m128n{}s{}p{}g{}", self.block_n, self.stages, self.partials, self.group)
    }
    /// Per raw slot: the A tile (4 chunk columns of 130 rows × 16 bytes, rounded up to 512 bytes) and
    /// three B tiles of block_n rows × 64 bytes; two more B-sized buffers for the small parts; + 1 KiB
    /// to align the first slot.
    pub fn shared_bytes(&self) -> u32 {
        let rows_per_chunk = (A_ROWS + 5) / 8 * 8 + 2;
        let a = (BLOCK_K / 4 * rows_per_chunk * 16).div_ceil(512) * 512;
        let b = 3 * self.block_n * BLOCK_K * 4;
        self.stages * (a + b) + 2 * b + 1024
    }
}

const fn t(block_n: u32, stages: u32, partials: u32, group: u32) -> Tf32RowTile {
    Tf32RowTile { block_n, stages, partials, group }
}

/// Every entry of conv3d_wgmma_tf32_rows.cu, in its order.
///
/// - n96, two partials, groups of 2 stages, 4 or 5 slots (143 / 170 KiB): the 96-channel layers; the
///   tensor cores wait for a flush only once per two stages.
/// - n96, one partial flushed every stage, 4 slots: the same without the second partial's registers.
/// - n192, one partial (96 accumulator and 96 partial registers leave no room for two), 3 slots
///   (206.5 KiB), flushed every stage (`g1`) or every second stage (`g2`: half the waits, partials of
///   96 k values).
const TILES: [Tf32RowTile; 5] = [t(96, 4, 2, 2), t(96, 5, 2, 2), t(96, 4, 1, 1), t(192, 3, 1, 1), t(192, 3, 1, 2)];

pub fn tiles() -> &'static [Tf32RowTile] {
    &TILES
}

/// An entry of kernels/conv3d_wgmma_tf32_rows.cu: `conv3d_wgmma_tf32_rows_f32_{tile}`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tf32RowKey(pub Tf32RowTile);
impl Key for Tf32RowKey {
    fn suffix(&self) -> String {
        format!("{}_{}", DType::F32.kernel_suffix(), self.0.name())
    }
}

pub(crate) fn conv_wgmma_tf32_rows_keys() -> Vec<Tf32RowKey> {
    TILES.iter().map(|&t| Tf32RowKey(t)).collect()
}

/// Everything about the arguments except the geometry and the device (f32, shapes, Cin % 16, 16-byte
/// alignment, i32 limits, aliasing).
fn check(args: &ConvArgs) -> Result<Problem> {
    check_for(&ACCEPTS, args)
}

/// Why [`conv3d_wgmma_tf32_rows`] cannot take this call: the argument reasons of [`super::tf32`] (not
/// f32, shapes, alignment, aliasing) with Cin a multiple of 16, a geometry other than kw = 3 at width
/// stride 1 with padding (1, 1), more than 16 (dt, dh) pairs, x, prev or w of 2^31 elements or more,
/// or a device that is not compute capability 9.0.
pub fn refusal(args: &ConvArgs) -> Option<Error> {
    match check(args) {
        Err(e) => Some(e),
        Ok(pb) => shape_refusal(&pb, &args.geom).or_else(|| device_refusal(OP, args.x, default_tile(pb.cout).shared_bytes())),
    }
}

fn shape_refusal(pb: &Problem, geom: &Conv3dGeom) -> Option<Error> {
    let weights = pb.cout * pb.kernel.0 * pb.kernel.1 * pb.kernel.2 * pb.cin;
    width_refusal(OP, pb, geom).or_else(|| extent_refusal(OP, pb)).or_else(|| {
        // 32-bit offsets into w as well.
        (weights > i32::MAX as usize).then(|| Error::invalid(format!("{OP}: w of {weights} elements: its offsets are 32-bit")))
    })
}

/// The tile for `cout` output channels: the N width that pads `cout` least, the wider on a tie (96 for
/// 96 and fewer, 192 for 192 and 384), with two partials at 96 (4 slots) and one flushed every stage
/// at 192. Chosen on paper (the kernel header's instruction and shared-memory budget), not yet timed:
/// benches/conv_bench.rs prints every tile per layer (`tf32rows-{tile}`) to tune it.
pub fn default_tile(cout: usize) -> Tf32RowTile {
    let padded = |n: usize| cout.div_ceil(n) * n;
    if padded(96) < padded(192) {
        TILES[0]
    } else {
        TILES[3]
    }
}

/// `out = conv3d([zeros(pad_t) ; prev ; x], w) + bias + residual` in f32, channels-last (the contract of
/// [`super::tf32::conv3d_tf32`]: residual may be out itself), for the geometries [`refusal`] accepts,
/// with [`default_tile`].
pub fn conv3d_wgmma_tf32_rows(args: &ConvArgs) -> Result<()> {
    let pb = check(args)?;
    launch(args, pb, default_tile(pb.cout))
}

/// [`conv3d_wgmma_tf32_rows`] with an explicit tile from [`tiles`] (tests and benchmarks run them all).
pub fn conv3d_wgmma_tf32_rows_with_tile(args: &ConvArgs, tile: Tf32RowTile) -> Result<()> {
    let pb = check(args)?;
    launch(args, pb, tile)
}

fn launch(args: &ConvArgs, pb: Problem, tile: Tf32RowTile) -> Result<()> {
    let _r = range(OP);
    let x = args.x;
    if let Some(e) = shape_refusal(&pb, &args.geom) {
        return Err(e);
    }
    if !TILES.contains(&tile) {
        return Err(Error::invalid(format!("{OP}: tile {} is not instantiated", tile.name())));
    }
    if let Some(e) = device_refusal(OP, x, tile.shared_bytes()) {
        return Err(e);
    }
    if pb.m() == 0 || pb.cout == 0 {
        return Ok(());
    }
    let (params, grid) = row_params(OP, args, &pb, (128, tile.block_n, BLOCK_K as usize), 4, None)?;
    let cfg = LaunchConfig { grid: (grid, 1, 1), block: (256, 1, 1), shared_mem: tile.shared_bytes() };
    CONV3D_WGMMA_TF32_ROWS.launch(x.device(), Tf32RowKey(tile), cfg, (params,))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shared-memory sizes the kernel's layout gives (conv3d_wgmma_tf32_rows.cu): A 8.5 KiB a slot
    /// (4 × 130 × 16 bytes, 512-aligned), B 3 × block_n × 64 bytes a slot and twice for the small parts;
    /// every tile within an H100's 227 KiB per block.
    #[test]
    fn shared_bytes_follow_the_layout() {
        assert_eq!(t(96, 4, 2, 2).shared_bytes(), 4 * (8704 + 18_432) + 2 * 18_432 + 1024);
        assert_eq!(t(96, 4, 2, 2).shared_bytes(), 146_432);
        assert_eq!(t(96, 5, 2, 2).shared_bytes(), 173_568);
        assert_eq!(t(192, 3, 1, 1).shared_bytes(), 211_456);
        assert!(TILES.iter().all(|t| t.shared_bytes() <= 227 * 1024), "{TILES:?}");
        // The epilogue stages 128 rows of block_n + 8 floats in the pipeline's buffers.
        assert!(TILES.iter().all(|t| 128 * (t.block_n + 8) * 4 <= t.shared_bytes() - 1024));
    }

    #[test]
    fn default_tiles_pad_least() {
        let (n96, n192) = (t(96, 4, 2, 2), t(192, 3, 1, 1));
        assert_eq!(default_tile(3), n96);
        assert_eq!(default_tile(32), n96);
        assert_eq!(default_tile(96), n96);
        assert_eq!(default_tile(130), n192);
        assert_eq!(default_tile(192), n192);
        assert_eq!(default_tile(200), n96);
        assert_eq!(default_tile(384), n192);
        for cout in [1, 40, 96, 97, 130, 192, 200, 384, 768] {
            assert!(TILES.contains(&default_tile(cout)), "{cout}");
        }
    }

    #[test]
    fn keys_name_every_entry() {
        let names: Vec<String> = conv_wgmma_tf32_rows_keys().iter().map(|k| k.suffix()).collect();
        assert_eq!(names.len(), TILES.len());
        assert_eq!(names[0], "f32_m128n96s4p2g2");
        assert!(names.iter().all(|n| n.starts_with("f32_m128n")), "{names:?}");
    }
}
