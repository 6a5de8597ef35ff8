//! f32 conv3d on tensor cores for compute capability 8.0 and newer (`kernels/conv3d_tf32.cu`): the
//! implicit GEMM of [`super::mma`] (M = B·To·Ho·Wo, N = Cout, K = kt·kh·kw·Cin, the A tile gathered
//! from x / prev / zero fill with cp.async) on mma.sync m16n8k8 with tf32 operands, each product
//! computed as 3xTF32 (CUTLASS's "3xTF32", `OpMultiplyAddFastF32`): every f32 operand is split into
//! big = tf32(a) and small = tf32(a − big), and big·big + big·small + small·big is summed, dropping
//! small·small: each product off by about 3·2^-22 of its magnitude where f32 keeps 2^-24, at
//! tensor-core speed (plain TF32, 2^-11 per operand, is what PyTorch uses for cuDNN convolutions by
//! default). The tensor cores' sum truncates toward zero at the largest term's ulp, so the kernel
//! runs the MMAs of every 8 or 16 k values into a zero partial and adds it to the f32 accumulator with
//! an ordinary (round-to-nearest) add; chaining the whole K range through the MMA accumulator had
//! drifted past f32 rounding (the VAE fixture's encode → decode 1.25e-5 from diffusers' fp32 against
//! tests/gpu_vae.rs's 1e-5 bound). The kernel header and tools/tf32_accumulation.py have the numbers.
//! `ops::conv3d` takes this kernel for f32 unless `WANRT_CONV_F32=exact`.
//!
//! [`refusal`] says why a call cannot take this path (the dispatcher then runs the portable kernel);
//! [`conv3d_tf32`] runs it, fully checked.
//!
//! Inputs with infinities give NaN here (inf − tf32(inf) is NaN in the split) where the portable
//! kernel gives ±inf; finite inputs and outputs are unaffected.

pub use super::mma::Tile;
use super::mma::{check_for, device_refusal_of, implicit_gemm, least_loaded, Accepts, Problem};
use super::ConvArgs;
use crate::gpu::kernels::{Key, CONV3D_TF32};
use crate::gpu::{Device, LaunchConfig};
use crate::ops::range;
use crate::{DType, Error, Result};

const OP: &str = "conv3d_tf32";

/// K tile of every entry: 16 channels (floats) of one tap (`conv_tf32::BK` in the kernel).
const BLOCK_K: u32 = 16;
/// Shared row of a K tile, padded: 16 + 8 floats (`conv_tf32::LDS`).
const ROW_FLOATS: u32 = BLOCK_K + 8;

const ACCEPTS: Accepts = Accepts {
    op: OP,
    dtypes: &[DType::F32],
    dtypes_text: "f32 (bf16 and f16 take ops::conv::mma)",
    cin_multiple: 4,
    cin_text: "the 3xTF32 path loads 4 channels, 16 bytes, at a time",
    block_k: BLOCK_K as usize,
};

/// Dynamic shared memory of this kernel's `tile`: rows of 16 floats padded to 24.
pub fn shared_bytes(tile: Tile) -> u32 {
    tile.pipeline_bytes(ROW_FLOATS * 4)
}

/// Assumed throughput of `tile` relative to the 128×192 tile at equal useful work (CTA-level reuse of
/// the loaded tiles, shared-memory reads per MMA of the warp tile); a guess until
/// `benches/conv_bench.rs` measures it, used only to rank tiles in [`choose_tile`].
fn efficiency(tile: &Tile) -> f64 {
    match (tile.block_m, tile.block_n) {
        (128, 192) => 1.0,
        (128, 128) => 0.97,
        (128, 96) => 0.93,
        (128, 64) | (64, 128) => 0.85,
        (64, 64) => 0.75,
        _ => 0.7,
    }
}

/// The tile table: every entry of conv3d_tf32.cu. At most 96 KiB of shared memory each, so every one
/// fits every sm_80+ part (99 KiB opt-in on sm_86/sm_89).
///
/// 3xTF32 runs three m16n8k8 MMAs per product tile plus the splits (two cvt.rna.tf32 and a subtract
/// per fragment element, on the CUDA cores) and one f32 add per accumulator per flush, so warp tiles
/// stay between 32×32 and 64×48: 32 to 96 accumulator registers, the split fragments of one flush
/// group and the partials beside them, no spills (tests/kernels_sass.rs). A K tile is 16
/// floats (64 bytes a row): four stages of 128×128 are 96 KiB, and one __syncthreads covers 3·128·128·16
/// multiply-adds.
///
/// - 128×192, 8 warps of 64×48, 3 stages (90 KiB): Cout = 192 and 384 at large M, each A tile gathered
///   once for 192 channels.
/// - 128×128, 8 warps of 64×32, 4 stages (96 KiB): Cout = 384.
/// - 128×96, 8 warps of 32×48, 4 stages (84 KiB): Cout = 96 (up_blocks.3 and the encoder's first
///   stages: the largest M) without padded columns.
/// - 128×64 and 64×128, 4 warps (72 KiB): mid-size grids; 64×64 (48 KiB): small M (one latent frame);
///   128×32 (60 KiB): small Cout (conv_out's 3 channels, the quant convs).
const TILES: [Tile; 7] = [
    Tile::new(128, 192, 8, 3),
    Tile::new(128, 128, 8, 4),
    Tile::new(128, 96, 8, 4),
    Tile::new(128, 64, 4, 4),
    Tile::new(64, 128, 4, 4),
    Tile::new(64, 64, 4, 4),
    Tile::new(128, 32, 4, 4),
];

/// The instantiated tiles.
pub fn tiles() -> &'static [Tile] {
    &TILES
}

/// An entry of kernels/conv3d_tf32.cu: `conv3d_tf32_f32_{tile}`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConvTf32Key(pub Tile);
impl Key for ConvTf32Key {
    fn suffix(&self) -> String {
        format!("{}_{}", DType::F32.kernel_suffix(), self.0.name())
    }
}

/// Every entry of the kernel file.
pub(crate) fn conv_tf32_keys() -> Vec<ConvTf32Key> {
    TILES.iter().map(|&t| ConvTf32Key(t)).collect()
}

/// The table's choice for an `m` × `cout` GEMM on `sms` SMs: the tile whose busiest SM has the least
/// work, counted as ceil(CTAs / SMs) whole tiles (padded rows and columns included) divided by the
/// tile's assumed efficiency (as [`super::mma::choose_tile`]).
pub fn choose_tile(m: usize, cout: usize, sms: u32) -> Tile {
    least_loaded(&TILES, m, cout, sms, efficiency)
}

/// Everything about the arguments except the device (f32, shapes, Cin % 4, 16-byte alignment, i32
/// limits, aliasing).
fn check(args: &ConvArgs) -> Result<Problem> {
    check_for(&ACCEPTS, args)
}

/// Why [`conv3d_tf32`] cannot take this call (dtype not f32, shapes, Cin not a multiple of 4,
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
    device_refusal_of(OP, "mma.sync tf32", dev, &tile.name(), shared_bytes(tile))
}

/// Checks the arguments and returns the problem sizes (for benchmarks: FLOPs, the tile choice).
pub fn problem(args: &ConvArgs) -> Result<Problem> {
    check(args)
}

/// `out = conv3d([zeros(pad_t) ; prev ; x], w) + bias + residual` in f32, channels-last (the shapes of
/// [`ConvArgs`]'s fields; residual may be out itself), all f32, contiguous, 16-byte aligned, Cin
/// a multiple of 4. Products as 3xTF32, sums in f32, bias and residual added in f32. The tile comes
/// from [`choose_tile`].
pub fn conv3d_tf32(args: &ConvArgs) -> Result<()> {
    let pb = check(args)?;
    let tile = choose_tile(pb.m(), pb.cout, args.x.device().sm_count());
    launch(args, &pb, tile)
}

/// [`conv3d_tf32`] with an explicit tile from [`tiles`] (tests and benchmarks run them all).
pub fn conv3d_tf32_with_tile(args: &ConvArgs, tile: Tile) -> Result<()> {
    let pb = check(args)?;
    if !TILES.contains(&tile) {
        return Err(Error::invalid(format!("{OP}: tile {} is not instantiated (tiles: {:?})", tile.name(), TILES.map(|t| t.name()))));
    }
    launch(args, &pb, tile)
}

fn launch(args: &ConvArgs, pb: &Problem, tile: Tile) -> Result<()> {
    let _r = range("conv3d_tf32");
    let dev = args.x.device();
    if let Some(e) = device_refusal(dev, tile) {
        return Err(e);
    }
    let Some((params, ctas)) = implicit_gemm(OP, args, pb, (tile.block_m, tile.block_n, BLOCK_K), &tile.name(), 4)? else {
        return Ok(());
    };
    let cfg = LaunchConfig { grid: (ctas, 1, 1), block: (tile.warps * 32, 1, 1), shared_mem: shared_bytes(tile) };
    CONV3D_TF32.launch(dev, ConvTf32Key(tile), cfg, (params,))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tile_choice() {
        let big_m = 4 * 480 * 832;
        assert_eq!(choose_tile(big_m, 96, 132).name(), "m128n96w8s4");
        assert_eq!(choose_tile(4 * 240 * 416, 192, 132).name(), "m128n192w8s3");
        assert_eq!(choose_tile(big_m, 3, 132).name(), "m128n32w4s4");
        // One 60×104 latent frame, Cout 384: a grid that fills at least half of the 132 SMs in one
        // wave (128×192: 49 × 2 = 98 CTAs).
        let t = choose_tile(60 * 104, 384, 132);
        let ctas = (60 * 104usize).div_ceil(t.block_m as usize) * 384usize.div_ceil(t.block_n as usize);
        assert!((66..=132).contains(&ctas), "{}: {ctas} CTAs", t.name());
    }

    #[test]
    fn shared_memory_fits_sm86() {
        for t in TILES {
            assert!(shared_bytes(t) <= 99 * 1024, "{}: {}", t.name(), shared_bytes(t));
        }
        assert_eq!(shared_bytes(Tile::new(128, 128, 8, 4)), 98_304);
        assert_eq!(shared_bytes(Tile::new(128, 192, 8, 3)), 92_160);
    }

    #[test]
    fn keys_name_every_entry() {
        let names: Vec<String> = conv_tf32_keys().iter().map(|k| k.suffix()).collect();
        assert_eq!(names.len(), TILES.len());
        assert!(names.iter().all(|n| n.starts_with("f32_m")), "{names:?}");
    }
}
