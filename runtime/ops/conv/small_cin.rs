//! conv3d for tiny inputs, Cin ≤ 4 (`kernels/conv3d_small_cin.cu`): a direct convolution on CUDA cores
//! for the Wan VAE encoder's `conv_in` (3 → 96 channels, 3×3×3 causal, padding 1; diffusers
//! `autoencoder_kl_wan.py` `WanEncoder3d.conv_in`, a `WanCausalConv3d`), which every tensor-core kernel
//! refuses (they copy Cin in 16-byte groups) and the portable kernel runs with each tap's 3 channels
//! padded to a K block of 16. The mirror of [`super::narrow`] (Cout ≤ 8). Every dtype; f32 FMA products
//! and sums (f32 storage stays exact, no TF32).
//!
//! A CTA of 256 threads owns 16 rows × 32 columns of output pixels of one output frame: it stages the
//! input halo of all kt time taps once (f32 channel planes in dynamic shared memory, kt·Cin·2.5 KiB),
//! then runs over blocks of 32 output channels, staging each block's weights (kt·Cin·1.1 KiB) and
//! keeping 8 columns × 8 channels of accumulators per thread. Per kernel row and input channel a thread
//! reads its 10-wide input window once for the three kernel columns and each kernel column's 8 weights
//! as two broadcast float4: 192 FMAs for 9 shared loads, so its inner loop is about 94% FFMA. Grids
//! with fewer than four CTAs per SM split each tile's channel blocks over several CTAs.
//!
//! The floor at conv_in's size is the FMA rate: a steady-state chunk of 4 frames at 480×832 is
//! 1.6·10^6 output pixels × 96 channels × 81 multiply-adds = 12.4·10^9 FMAs, 0.37 ms at an H100's
//! 67 TFLOP/s f32, against a few µs to read its 9.6 MB bf16 input and 0.1 ms to write its 307 MB
//! output (overlapped with the math). From its SASS about 87% of a CTA's instructions are FFMA
//! (staging, barriers and the epilogue the rest). Measured on an H100 (conv_bench `enc.conv_in`, bf16):
//! 0.71 ms a chunk (35 TFLOP/s), against 8.8 ms on the portable kernel, which pads each tap's 3
//! channels to 16; [`super::conv3d`] takes it by default.
//!
//! [`refusal`] says why a call cannot take this path (Cin above 4, spatial kernel other than 3×3,
//! spatial stride other than 1, kt·Cin past the device's shared memory, sizes past the kernel's i32
//! coordinates); [`conv3d_small_cin`] runs it, fully checked.

use super::{check, ConvArgs, ConvShape};
use crate::gpu::kernels::{Key, CONV3D_SMALL_CIN};
use crate::gpu::params::Conv3dDims;
use crate::gpu::LaunchConfig;
use crate::ops::range;
use crate::{DType, Error, Result};

const OP: &str = "conv3d_small_cin";

/// The widest input this path takes.
pub const MAX_CIN: usize = 4;

/// The instantiated input widths (`conv3d_small_cin_{dtype}_c{n}`): one entry per Cin.
pub const CIN_ENTRIES: [usize; 4] = [1, 2, 3, 4];

/// Threads per CTA, output rows and columns per CTA, output channels per block (`small_cin::THREADS`,
/// `TH`, `TW`, `COB` in the kernel).
const THREADS: u32 = 256;
const TILE_H: usize = 16;
const TILE_W: usize = 32;
const COUT_BLOCK: usize = 32;

/// Dynamic shared memory of a CTA: per time tap and input channel an f32 halo plane of 18 × 36 and the
/// block's 9 × 32 f32 weights (`small_cin::PLANE`, the weight block of the kernel).
pub fn shared_bytes(kt: usize, cin: usize) -> usize {
    const PLANE: usize = (TILE_H + 2) * (TILE_W + 4);
    kt * cin * (PLANE + 9 * COUT_BLOCK) * 4
}

/// CTAs per (output frame, tile), each taking every `splits`-th channel block: 1 where the grid has at
/// least four CTAs per SM (conv_in's 3120 on 132 SMs), else up to one per block, so small grids still
/// fill the device. The result does not depend on it (each output is summed by one thread, in one order).
pub fn splits(tile_ctas: usize, blocks: usize, sms: u32) -> usize {
    let want = (4 * sms as usize).div_ceil(tile_ctas.max(1));
    want.clamp(1, blocks.max(1))
}

/// An entry of kernels/conv3d_small_cin.cu: `conv3d_small_cin_{dtype}_c{cin}`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SmallCinKey(pub DType, pub usize);
impl Key for SmallCinKey {
    fn suffix(&self) -> String {
        format!("{}_c{}", self.0.kernel_suffix(), self.1)
    }
}

/// Every entry of the kernel file.
pub(crate) fn conv_small_cin_keys() -> Vec<SmallCinKey> {
    [DType::F32, DType::BF16, DType::F16].iter().flat_map(|&dt| CIN_ENTRIES.map(|n| SmallCinKey(dt, n))).collect()
}

/// A checked call: the kernel's geometry, its entry (Cin), the CTAs per (frame, tile) that the grid
/// would have without splitting, the channel blocks and the dynamic shared memory.
struct Plan {
    dims: Conv3dDims,
    cin: usize,
    tile_ctas: usize,
    blocks: usize,
    smem: usize,
}

fn refuse(why: String) -> Error {
    Error::invalid(format!("{OP}: {why}"))
}

fn plan(args: &ConvArgs) -> Result<Option<Plan>> {
    let geom = &args.geom;
    let s: ConvShape = check(args)?;
    if s.cin > MAX_CIN {
        return Err(refuse(format!("Cin = {} is above {MAX_CIN} (the kernel unrolls its loops over the input channels)", s.cin)));
    }
    if (s.k.1, s.k.2) != (3, 3) {
        return Err(refuse(format!("spatial kernel {}×{} (the kernel is unrolled for 3×3)", s.k.1, s.k.2)));
    }
    if (geom.stride.1, geom.stride.2) != (1, 1) {
        return Err(refuse(format!("spatial stride {:?} (stride 1 only)", (geom.stride.1, geom.stride.2))));
    }
    // The kernel keeps rows, columns, channels, paddings, offsets within one input frame and within w
    // in i32 (frame and output offsets in i64): each, plus a tile and its halo, must fit.
    let lim = i32::MAX as usize - 256;
    let sizes = [s.h, s.w, s.cout, s.out.1, s.out.2, s.k.0, geom.pad_h.0, geom.pad_w.0];
    let frame = s.h.checked_mul(s.w).and_then(|v| v.checked_mul(s.cin));
    let weights = s.cout.checked_mul(s.k.0 * 9 * s.cin);
    if sizes.iter().any(|&v| v > lim)
        || s.h.saturating_add(geom.pad_h.0) > lim
        || s.w.saturating_add(geom.pad_w.0) > lim
        || frame.is_none_or(|v| v > lim)
        || weights.is_none_or(|v| v > lim)
    {
        return Err(refuse(format!(
            "sizes past its i32 coordinates (H {}, W {}, Cin {}, Cout {}, kt {}, padding {geom:?})",
            s.h, s.w, s.cin, s.cout, s.k.0
        )));
    }
    let smem = shared_bytes(s.k.0, s.cin);
    let dev = args.x.device();
    if smem > dev.max_shared_memory_optin() as usize {
        return Err(refuse(format!(
            "kt {} × Cin {} needs {smem} bytes of shared memory (every time tap's input halo), {} allows {}",
            s.k.0,
            s.cin,
            dev.name(),
            dev.max_shared_memory_optin()
        )));
    }
    let (to, ho, wo) = s.out;
    let frames = s.b * to;
    if frames == 0 || ho == 0 || wo == 0 || s.cout == 0 {
        return Ok(None);
    }
    let blocks = s.cout.div_ceil(COUT_BLOCK);
    // The largest split (one CTA per block) must fit one launch's 2^31 - 1 CTAs.
    let tile_ctas = frames.checked_mul(ho.div_ceil(TILE_H)).and_then(|v| v.checked_mul(wo.div_ceil(TILE_W)));
    let tile_ctas = match tile_ctas {
        Some(c) if c.checked_mul(blocks).is_some_and(|v| v <= i32::MAX as usize) => c,
        _ => {
            return Err(refuse(format!("{frames} output frames of {ho}×{wo} × {blocks} channel blocks exceed one launch's 2^31 - 1 CTAs")))
        }
    };
    let dims = s.dims(geom);
    Ok(Some(Plan { dims, cin: s.cin, tile_ctas, blocks, smem }))
}

/// Why [`conv3d_small_cin`] cannot take this call (an argument error of the contract, Cin above 4, a
/// spatial kernel other than 3×3, a spatial stride other than 1, kt·Cin whose input halo does not fit
/// the device's shared memory, sizes past its i32 coordinates), `None` when it can. Any time kernel,
/// time stride and padding, any Cout.
pub fn refusal(args: &ConvArgs) -> Option<Error> {
    plan(args).err()
}

/// [`super::conv3d`]'s contract on the small-input kernel: f32, bf16 or f16, Cin ≤ 4, 3×3 spatial taps,
/// spatial stride 1 (any kt, time stride, padding and Cout). Products and sums in f32 (the sum of each
/// output in a fixed order: time tap, kernel row, input channel, kernel column), bias then residual
/// added in f32, one rounding. Returns [`refusal`]'s error for a call it does not take.
pub fn conv3d_small_cin(args: &ConvArgs) -> Result<()> {
    launch(args, None)
}

/// [`conv3d_small_cin`] with `split` CTAs per (output frame, tile) instead of [`splits`]' choice (1 ..=
/// the number of 32-channel blocks; tests run both the looping and the split grid on small shapes).
/// The same bits whatever the split.
pub fn conv3d_small_cin_with_split(args: &ConvArgs, split: usize) -> Result<()> {
    launch(args, Some(split))
}

fn launch(args: &ConvArgs, split: Option<usize>) -> Result<()> {
    let _r = range("conv3d_small_cin");
    let Some(p) = plan(args)? else {
        return Ok(());
    };
    let &ConvArgs { x, prev, w, bias, residual, out, .. } = args;
    let split = match split {
        None => splits(p.tile_ctas, p.blocks, x.device().sm_count()),
        Some(s) if (1..=p.blocks).contains(&s) => s,
        Some(s) => return Err(refuse(format!("split {s} outside 1..={} (the channel blocks of Cout {})", p.blocks, p.dims.cout))),
    };
    // plan() keeps tile_ctas × blocks within i32::MAX, and split ≤ blocks.
    let cfg = LaunchConfig { grid: ((p.tile_ctas * split) as u32, 1, 1), block: (THREADS, 1, 1), shared_mem: p.smem as u32 };
    CONV3D_SMALL_CIN.launch(x.device(), SmallCinKey(x.dtype(), p.cin), cfg, (x, prev, w, bias, residual, out, p.dims))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_and_launch_geometry() {
        assert_eq!(conv_small_cin_keys().len(), 3 * CIN_ENTRIES.len());
        assert_eq!(SmallCinKey(DType::BF16, 3).suffix(), "bf16_c3");
        assert!((1..=MAX_CIN).all(|c| CIN_ENTRIES.contains(&c)));
        // The encoder's conv_in on a 4-frame 480×832 chunk: 30 × 26 tiles of 16×32 per frame, 3120 CTAs,
        // each over the 3 blocks of 32 channels (no split on 132 SMs: 23 CTAs per SM).
        let tile_ctas = 4 * 480usize.div_ceil(TILE_H) * 832usize.div_ceil(TILE_W);
        assert_eq!(tile_ctas, 3120);
        assert_eq!(splits(tile_ctas, 96usize.div_ceil(COUT_BLOCK), 132), 1);
        // A small frame splits up to one CTA per block; never past the blocks, never below 1.
        assert_eq!(splits(9, 3, 132), 3);
        assert_eq!(splits(9, 5, 132), 5);
        assert_eq!(splits(200, 3, 132), 3);
        assert_eq!(splits(400, 3, 132), 2);
        assert_eq!(splits(600, 3, 132), 1);
        assert_eq!(splits(0, 0, 132), 1);
        // 34 KiB a CTA for conv_in (two CTAs per SM on every supported device); kt 3 × Cin 4 under 48 KiB.
        assert_eq!(shared_bytes(3, 3), 33696);
        assert!(shared_bytes(3, 4) <= 48 * 1024);
    }
}
