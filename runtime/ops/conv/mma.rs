//! conv3d on tensor cores for compute capability 8.0 and newer (`kernels/conv3d_mma.cu`): implicit GEMM
//! with M = B·To·Ho·Wo, N = Cout, K = kt·kh·kw·Cin, mma.sync m16n8k16 (bf16/f16, f32 accumulation),
//! the A tile gathered from x / prev / zero fill with cp.async. [`refusal`] says why a call cannot take
//! this path (the dispatcher then runs the portable kernel); [`conv3d_mma`] runs it, fully checked.

use std::sync::Arc;

use super::ConvArgs;
use crate::gpu::kernels::{Key, CONV3D_MMA};
use crate::gpu::params_conv::ConvMma;
use crate::gpu::{Arch, Device, LaunchConfig};
use crate::ops::checks::same_device;
use crate::ops::range;
use crate::{DType, Error, Result, Tensor};

const OP: &str = "conv3d_mma";

/// K tile of every entry: 32 channels of one tap (`conv::BK` in the kernel).
const BLOCK_K: u32 = 32;

/// A CTA tile of a tensor-core conv kernel (this module's and `tf32`'s): `block_m` output positions ×
/// `block_n` output channels over `warps` warps, `stages` cp.async stages of (A, B) K tiles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tile {
    pub block_m: u32,
    pub block_n: u32,
    pub warps: u32,
    pub stages: u32,
}

impl Tile {
    pub(super) const fn new(block_m: u32, block_n: u32, warps: u32, stages: u32) -> Tile {
        Tile { block_m, block_n, warps, stages }
    }

    /// The entry-point suffix, `m{block_m}n{block_n}w{warps}s{stages}`.
    pub fn name(&self) -> String {
        format!("m{}n{}w{}s{}", self.block_m, self.block_n, self.warps, self.stages)
    }

    /// `stages` × (A and B tiles) with `row_bytes` per padded K row: the pipeline's dynamic shared
    /// memory, which the f32 epilogue staging reuses (in row slabs when it needs more).
    pub(super) fn pipeline_bytes(&self, row_bytes: u32) -> u32 {
        self.stages * (self.block_m + self.block_n) * row_bytes
    }
}

/// Dynamic shared memory of this kernel's `tile`: rows of BK = 32 16-bit elements padded to BK + 8.
pub fn shared_bytes(tile: Tile) -> u32 {
    tile.pipeline_bytes((BLOCK_K + 8) * 2)
}

/// Assumed throughput of `tile` relative to the 256×128 tile at equal useful work (per-warp
/// shared-memory reads per MMA, CTA-level reuse of the loaded tiles); a guess until
/// `benches/conv_bench.rs` measures it, used only to rank tiles in [`choose_tile`].
fn efficiency(tile: &Tile) -> f64 {
    match (tile.block_m, tile.block_n, tile.warps) {
        (256, 128, _) => 1.0,
        // 128×192 loads 77 FLOP per byte, 256×96 70, 128×128 64.
        (128, 192, _) => 0.96,
        (128, 128, 4) | (256, 96, _) => 0.95,
        (128, 96, _) => 0.9,
        (128, 128, _) => 0.85,
        (128, 64, _) | (64, 128, _) => 0.8,
        _ => 0.7,
    }
}

/// The tile table: every entry of conv3d_mma.cu (both dtypes). At most 90 KiB of shared memory each,
/// so every one fits every sm_80+ part (99 KiB opt-in on sm_86/sm_89).
///
/// Why warp tiles of 64×64 lead: per k16 step a warp reads its A and B fragments with ldmatrix, (MT +
/// NT/2) × 512 bytes for MT·NT MMAs. At 64×64 that is 128 bytes per m16n8k16 MMA, what an SM's shared
/// memory delivers per clock (128 B/clk) at one MMA per clock; 64×32 needs 192. And the CTA tile sets
/// the L2 traffic: 256×128 moves 85 FLOP per byte loaded, 128×128 64 (CUTLASS's sm80 GEMMs use the
/// same shapes: 128×256 / 256×128 over 8 warps of 64×64, 3 stages; 128×128 over 4 warps, 4 stages).
///
/// - 256×128, 8 warps of 64×64, 3 stages (90 KiB, one CTA per SM): Cout = 384, 768 at large M.
/// - 128×128, 4 warps of 64×64, 4 stages (80 KiB, two CTAs per SM); 128×128 over 8 warps of 64×32
///   (fewer registers per thread, more warps to hide latency) as the alternative.
/// - 256×96 and 128×192, 8 warps of 64×48, 3 stages (82.5 and 75 KiB): Cout = 96 and 192 without the
///   padded columns 128 would cost, at large M. These layers (the decoder's up_blocks.2 and .3 at
///   240×416 and 480×832) are about three quarters of a decode's conv FLOPs. 128×192 gathers each A
///   tile once for all 192 channels.
/// - 128×96, 4 warps of 64×48: the same widths with more, smaller CTAs (two per SM).
/// - 128×64 and 128×32: small Cout (conv_out's 3 and 32 channels, quant convs).
/// - 64×128 and 64×64: small M (the decoder's per-chunk latent-resolution layers: one 60×104 frame
///   is 6,240 rows), so the grid spreads over the SMs.
///
/// The tiles were chosen on paper: `benches/conv_bench.rs` times every tile at every VAE shape so the
/// table, [`Tile::efficiency`] and [`choose_tile`] can be tuned from one run.
const TILES: [Tile; 10] = [
    Tile::new(256, 128, 8, 3),
    Tile::new(256, 96, 8, 3),
    Tile::new(128, 192, 8, 3),
    Tile::new(128, 128, 4, 4),
    Tile::new(128, 128, 8, 4),
    Tile::new(128, 96, 4, 4),
    Tile::new(128, 64, 4, 4),
    Tile::new(64, 128, 4, 4),
    Tile::new(64, 64, 4, 4),
    Tile::new(128, 32, 4, 4),
];

/// The instantiated tiles.
pub fn tiles() -> &'static [Tile] {
    &TILES
}

/// An entry of kernels/conv3d_mma.cu: `conv3d_mma_{dtype}_{tile}`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConvMmaKey(pub DType, pub Tile);
impl Key for ConvMmaKey {
    fn suffix(&self) -> String {
        format!("{}_{}", self.0.kernel_suffix(), self.1.name())
    }
}

/// Every entry of the kernel file.
pub(crate) fn conv_mma_keys() -> Vec<ConvMmaKey> {
    TILES.iter().flat_map(|&t| [DType::BF16, DType::F16].map(|dt| ConvMmaKey(dt, t))).collect()
}

/// The table's choice for an `m` × `cout` GEMM on `sms` SMs: the tile whose busiest SM has the least
/// work, counted as ceil(CTAs / SMs) whole tiles (padded rows and columns included) divided by the
/// tile's assumed efficiency. Large M and Cout = 384 take 256×128; Cout = 96 and 192 128×96; one
/// latent frame a smaller tile that spreads over the SMs.
pub fn choose_tile(m: usize, cout: usize, sms: u32) -> Tile {
    least_loaded(&TILES, m, cout, sms, efficiency)
}

/// The tile of `tiles` whose busiest SM has the least work for an `m` × `cout` GEMM on `sms` SMs:
/// ceil(CTAs / SMs) whole tiles (padded rows and columns included) divided by `efficiency`.
pub(super) fn least_loaded(tiles: &[Tile], m: usize, cout: usize, sms: u32, efficiency: fn(&Tile) -> f64) -> Tile {
    let cost = |t: &Tile| {
        let ctas = m.div_ceil(t.block_m as usize) * cout.div_ceil(t.block_n as usize);
        (ctas.div_ceil(sms.max(1) as usize) * (t.block_m * t.block_n) as usize) as f64 / efficiency(t)
    };
    tiles.iter().copied().min_by(|a, b| cost(a).total_cmp(&cost(b))).unwrap_or(tiles[0])
}

/// Checked problem sizes of a conv3d call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Problem {
    pub batch: usize,
    /// x's frames (T) and prev's (P).
    pub frames: usize,
    pub prev_frames: usize,
    pub height: usize,
    pub width: usize,
    pub cin: usize,
    pub cout: usize,
    /// (kt, kh, kw).
    pub kernel: (usize, usize, usize),
    /// (To, Ho, Wo).
    pub out: (usize, usize, usize),
    pub dtype: DType,
}

impl Problem {
    /// GEMM rows: B·To·Ho·Wo.
    pub fn m(&self) -> usize {
        self.batch * self.out.0 * self.out.1 * self.out.2
    }
    /// GEMM depth: kt·kh·kw·Cin.
    pub fn k(&self) -> usize {
        self.kernel.0 * self.kernel.1 * self.kernel.2 * self.cin
    }
    /// 2·M·N·K.
    pub fn flops(&self) -> f64 {
        2.0 * self.m() as f64 * self.cout as f64 * self.k() as f64
    }
}

fn shape_err_of(op: &'static str, name: &str, expected: impl Into<String>, t: &Tensor) -> Error {
    Error::Shape { op, name: name.to_string(), expected: expected.into(), got: t.shape().to_vec() }
}

/// One output extent: `(n + pad - k) / s + 1`, or an error naming the axis when the padded input is
/// shorter than the kernel.
fn out_extent(op: &'static str, axis: &str, n: usize, pad: usize, k: usize, s: usize, x: &Tensor) -> Result<usize> {
    let span = n.checked_add(pad).ok_or_else(|| shape_err_of(op, "x", format!("{axis}: padding {pad} overflows"), x))?;
    if span < k {
        return Err(shape_err_of(op, "x", format!("{axis}: padded extent {span} (input {n} + padding {pad}) at least the kernel's {k}"), x));
    }
    Ok((span - k) / s + 1)
}

/// Byte range of a tensor's elements (contiguous tensors).
fn span(t: &Tensor) -> (u64, u64) {
    (t.ptr(), t.ptr() + t.byte_len())
}

fn overlaps(a: &Tensor, b: &Tensor) -> bool {
    let ((a0, a1), (b0, b1)) = (span(a), span(b));
    Arc::ptr_eq(a.buffer(), b.buffer()) && a0 < b1 && b0 < a1 && a.numel() > 0 && b.numel() > 0
}

/// What one implicit-GEMM kernel family takes, for [`check_for`]: its name in errors, its dtypes, the
/// channel multiple its 16-byte copies need and its K block.
pub(super) struct Accepts {
    pub op: &'static str,
    pub dtypes: &'static [DType],
    /// How the dtype requirement reads in an error.
    pub dtypes_text: &'static str,
    /// Cin must be a positive multiple of this (the channels of one 16-byte copy).
    pub cin_multiple: usize,
    /// Why, in an error.
    pub cin_text: &'static str,
    /// Channels per K tile (`ceil(Cin / block_k)` blocks per tap must fit an i32).
    pub block_k: usize,
}

/// This kernel's (and the wgmma kernel's) requirements.
const ACCEPTS: Accepts = Accepts {
    op: OP,
    dtypes: &[DType::BF16, DType::F16],
    dtypes_text: "bf16 or f16 (tensor cores; f32 takes the 3xTF32 kernel, ops::conv::tf32)",
    cin_multiple: 8,
    cin_text: "the tensor-core path loads 8 channels, 16 bytes, at a time",
    block_k: BLOCK_K as usize,
};

/// Everything about the arguments except the device: dtypes, ranks, contiguity, shapes against the
/// geometry, Cin % 8, 16-byte alignment, i32 limits, aliasing.
pub(super) fn check(args: &ConvArgs) -> Result<Problem> {
    check_for(&ACCEPTS, args)
}

/// [`check`] for any implicit-GEMM family: dtypes in `a.dtypes`, Cin a multiple of `a.cin_multiple`,
/// 16-byte aligned tensors, i32 limits, aliasing; errors name `a.op`.
pub(super) fn check_for(a: &Accepts, args: &ConvArgs) -> Result<Problem> {
    let &ConvArgs { x, prev, w, bias, residual, geom, out } = args;
    let op = a.op;
    let shape_err = |name: &str, expected: &str, t: &Tensor| shape_err_of(op, name, expected, t);
    let dtype = x.dtype();
    if !a.dtypes.contains(&dtype) {
        return Err(Error::DType { op, name: "x".into(), expected: a.dtypes_text.into(), got: dtype });
    }
    let mut all: Vec<(&str, &Tensor)> = vec![("x", x), ("w", w), ("out", out)];
    all.extend(prev.map(|t| ("prev", t)));
    all.extend(bias.map(|t| ("bias", t)));
    all.extend(residual.map(|t| ("residual", t)));
    for (name, t) in &all {
        t.expect_dtype(op, name, dtype)?;
        t.expect_contiguous(op, name)?;
        let rank = if *name == "bias" { 1 } else { 5 };
        if t.rank() != rank {
            let what = match *name {
                "x" => "[B, T, H, W, Cin] (channels-last)",
                "prev" => "[B, P, H, W, Cin] (channels-last)",
                "w" => "[Cout, kt, kh, kw, Cin]",
                "bias" => "[Cout]",
                _ => "[B, To, Ho, Wo, Cout] (channels-last)",
            };
            return Err(shape_err(name, what, t));
        }
    }
    same_device(op, &all)?;

    let (batch, frames, height, width, cin) = (x.dim(0), x.dim(1), x.dim(2), x.dim(3), x.dim(4));
    let (cout, kt, kh, kw) = (w.dim(0), w.dim(1), w.dim(2), w.dim(3));
    if w.dim(4) != cin {
        return Err(shape_err("w", &format!("[Cout, kt, kh, kw, Cin = {cin}] (x's channels)"), w));
    }
    if kt == 0 || kh == 0 || kw == 0 {
        return Err(shape_err("w", "a kernel of at least 1×1×1", w));
    }
    let prev_frames = match prev {
        Some(p) => {
            if p.dim(0) != batch || p.dim(2) != height || p.dim(3) != width || p.dim(4) != cin {
                return Err(shape_err("prev", &format!("[B = {batch}, P, H = {height}, W = {width}, Cin = {cin}] (x's sizes)"), p));
            }
            p.dim(1)
        }
        None => 0,
    };
    if let Some(b) = bias {
        if b.shape() != [cout] {
            return Err(shape_err("bias", &format!("[{cout}] (w's Cout)"), b));
        }
    }
    let (st, sh, sw) = geom.stride;
    if st == 0 || sh == 0 || sw == 0 {
        return Err(Error::invalid(format!("{op}: strides must be positive, got {:?}", geom.stride)));
    }
    let logical = geom.pad_t.checked_add(prev_frames).and_then(|v| v.checked_add(frames));
    let logical = logical.ok_or_else(|| shape_err("x", "a frame count that does not overflow", x))?;
    let to = out_extent(op, "time (pad_t + prev frames + x frames)", logical, 0, kt, st, x)?;
    let ho = out_extent(op, "height", height, geom.pad_h.0.saturating_add(geom.pad_h.1), kh, sh, x)?;
    let wo = out_extent(op, "width", width, geom.pad_w.0.saturating_add(geom.pad_w.1), kw, sw, x)?;
    let want = [batch, to, ho, wo, cout];
    if out.shape() != want {
        return Err(shape_err("out", &format!("{want:?} = [B, To, Ho, Wo, Cout] for this geometry"), out));
    }
    if let Some(r) = residual {
        if r.shape() != want {
            return Err(shape_err("residual", &format!("{want:?} (out's shape)"), r));
        }
    }
    let pb = Problem { batch, frames, prev_frames, height, width, cin, cout, kernel: (kt, kh, kw), out: (to, ho, wo), dtype };

    // 16-byte cp.async chunks of channels must not straddle pixels or taps.
    let cm = a.cin_multiple;
    if cin == 0 || cin % cm != 0 {
        return Err(shape_err("x", &format!("Cin a positive multiple of {cm} ({}), Cin = {cin}", a.cin_text), x));
    }
    // cp.async sources and the epilogue's 16-byte accesses need 16-byte aligned starts (the row
    // strides are multiples of 16 bytes once Cin is a multiple of cin_multiple; out/residual are read
    // per element when Cout is not a multiple of the vector width, but the start must still be aligned for the vector path's choice to be safe).
    for (name, t) in &all {
        if *name != "bias" && t.numel() > 0 && t.ptr() % 16 != 0 {
            return Err(shape_err(name, &format!("a 16-byte aligned start (byte offset {} into its buffer)", t.byte_offset()), t));
        }
    }
    // Coordinates and row indices are i32 in the kernel (element offsets are 64-bit): the logical frame
    // index, padded extents and M plus a tile must fit.
    let lim = i32::MAX as usize - 256;
    let padded = |n: usize, p: (usize, usize)| n.saturating_add(p.0).saturating_add(p.1);
    let too_big = [logical, padded(height, geom.pad_h), padded(width, geom.pad_w), cin, cout, kt * kh * kw];
    if too_big.iter().any(|&v| v > lim) || pb.m() > lim || (kt * kh * kw).saturating_mul(cin.div_ceil(a.block_k)) > lim {
        return Err(shape_err("x", &format!("sizes below 2^31 (i32 coordinates): M = {}, logical frames {logical}", pb.m()), x));
    }
    // out is written while x, prev and w are read by other CTAs: no overlap. A residual may be out
    // itself (each element is read and then written by the same thread) but not partly overlap it.
    for (name, t) in &all {
        let same_as_out = *name == "residual" && t.ptr() == out.ptr();
        if *name != "out" && !same_as_out && overlaps(t, out) {
            return Err(Error::invalid(format!("{op}: out overlaps {name} ({t:?}); only residual may be out itself")));
        }
    }
    Ok(pb)
}

/// Why [`conv3d_mma`] cannot take this call (dtype not bf16/f16, shapes, Cin not a multiple of 8,
/// unaligned tensors, i32 limits, aliasing, compute capability below 8.0, not enough shared memory),
/// `None` when it can.
pub fn refusal(args: &ConvArgs) -> Option<Error> {
    let pb = match check(args) {
        Ok(pb) => pb,
        Err(e) => return Some(e),
    };
    let dev = args.x.device();
    device_refusal(dev, choose_tile(pb.m(), pb.cout, dev.sm_count()))
}

fn device_refusal(dev: &Device, tile: Tile) -> Option<Error> {
    device_refusal_of(OP, "mma.sync bf16", dev, &tile.name(), shared_bytes(tile))
}

/// Why tensor-core conv kernel `op` (its instructions named by `math`) cannot run its tile
/// `tile_name`, which needs `smem` bytes of shared memory, on `dev` (this module's and `tf32`'s).
pub(super) fn device_refusal_of(op: &str, math: &str, dev: &Device, tile_name: &str, smem: u32) -> Option<Error> {
    if dev.arch() < Arch::new(8, 0) {
        return Some(Error::invalid(format!("{op}: needs compute capability 8.0 or newer ({math}, cp.async), {} is {}", dev.name(), dev.arch())));
    }
    if smem > dev.max_shared_memory_optin() {
        return Some(Error::invalid(format!("{op}: tile {tile_name} needs {smem} bytes of shared memory, {} allows {}", dev.name(), dev.max_shared_memory_optin())));
    }
    None
}

/// Checks the arguments and returns the problem sizes (for benchmarks: FLOPs, the tile choice).
pub fn problem(args: &ConvArgs) -> Result<Problem> {
    check(args)
}

/// `out = conv3d([zeros(pad_t) ; prev ; x], w) + bias + residual`, channels-last (the shapes of
/// [`ConvArgs`]'s fields), all one dtype (bf16 or f16), contiguous, 16-byte aligned, Cin a
/// multiple of 8. Accumulation, bias and residual in f32, one rounding to the output dtype. The tile
/// comes from [`choose_tile`].
pub fn conv3d_mma(args: &ConvArgs) -> Result<()> {
    let pb = check(args)?;
    let tile = choose_tile(pb.m(), pb.cout, args.x.device().sm_count());
    launch(args, &pb, tile)
}

/// [`conv3d_mma`] with an explicit tile from [`tiles`] (tests and benchmarks run them all).
pub fn conv3d_mma_with_tile(args: &ConvArgs, tile: Tile) -> Result<()> {
    let pb = check(args)?;
    if !TILES.contains(&tile) {
        return Err(Error::invalid(format!("{OP}: tile {} is not instantiated (tiles: {:?})", tile.name(), TILES.map(|t| t.name()))));
    }
    launch(args, &pb, tile)
}

fn launch(args: &ConvArgs, pb: &Problem, tile: Tile) -> Result<()> {
    let _r = range("conv3d_mma");
    let dev = args.x.device();
    if let Some(e) = device_refusal(dev, tile) {
        return Err(e);
    }
    let Some((params, ctas)) = implicit_gemm(OP, args, pb, (tile.block_m, tile.block_n, BLOCK_K), &tile.name(), 8)? else {
        return Ok(());
    };
    let cfg = LaunchConfig { grid: (ctas, 1, 1), block: (tile.warps * 32, 1, 1), shared_mem: shared_bytes(tile) };
    CONV3D_MMA.launch(dev, ConvMmaKey(pb.dtype, tile), cfg, (params,))
}

/// The kernel parameters and CTA count of an implicit-GEMM conv of `pb` in `block_m` × `block_n`
/// output tiles with K tiles of `block_k` channels (`vec` channels per vector store of the
/// epilogue), shared by this module's and `tf32`'s launches; `None` when there is nothing to compute.
/// `args` are the call's checked arguments.
pub(super) fn implicit_gemm<'a>(
    op: &'static str,
    args: &ConvArgs<'a>,
    pb: &Problem,
    (block_m, block_n, block_k): (u32, u32, u32),
    tile_name: &str,
    vec: usize,
) -> Result<Option<(ConvMma<'a>, u32)>> {
    let &ConvArgs { x, prev, w, bias, residual, geom, out } = args;
    let m = pb.m();
    if m == 0 || pb.cout == 0 {
        return Ok(None);
    }
    let (m_tiles, n_tiles) = (m.div_ceil(block_m as usize), pb.cout.div_ceil(block_n as usize));
    let ctas = m_tiles * n_tiles;
    if ctas > i32::MAX as usize {
        return Err(shape_err_of(op, "out", format!("at most 2^31 - 1 CTAs of tile {tile_name} (M = {m}, Cout = {})", pb.cout), out));
    }
    let (kt, kh, kw) = pb.kernel;
    let cin_blocks = pb.cin.div_ceil(block_k as usize);
    // Every size below passed check's i32 limits.
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
        vec_out: i32::from(pb.cout % vec == 0),
        piece: 0,
        norm_gamma: None,
        norm_silu: false,
    };
    Ok(Some((params, ctas as u32)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tile_choice_pads_cout_least_and_fills_the_grid() {
        let big_m = 4 * 240 * 416;
        assert_eq!(choose_tile(big_m, 384, 132).name(), "m256n128w8s3");
        assert_eq!(choose_tile(big_m, 768, 132).name(), "m256n128w8s3");
        assert_eq!(choose_tile(big_m, 192, 132).name(), "m128n192w8s3");
        // 2 frames of 120×208: 585 CTAs of 256×128 are 4.4 waves, 780 of 128×192 5.9.
        assert_eq!(choose_tile(2 * 120 * 208, 384, 132).block_m, 128);
        assert_eq!(choose_tile(4 * 480 * 832, 96, 132).name(), "m256n96w8s3");
        assert_eq!(choose_tile(4 * 480 * 832, 3, 132).name(), "m128n32w4s4");
        assert!(choose_tile(60 * 104, 32, 132).block_n <= 64);
        // One 60×104 latent frame: 25 CTAs of 256 rows × 3 would leave 57 SMs idle.
        assert_ne!(choose_tile(60 * 104, 384, 132).block_m, 256);
    }

    #[test]
    fn shared_memory_fits_sm86() {
        for t in TILES {
            assert!(shared_bytes(t) <= 99 * 1024, "{}: {}", t.name(), shared_bytes(t));
        }
        assert_eq!(shared_bytes(Tile::new(128, 128, 8, 4)), 81_920);
        assert_eq!(shared_bytes(Tile::new(256, 128, 8, 3)), 92_160);
    }
}
