//! conv3d for narrow outputs, Cout ≤ 8 (`kernels/conv3d_narrow.cu`): a direct convolution on CUDA
//! cores for the Wan VAE decoder's `conv_out` (96 → 3 channels, 3×3×3 causal; diffusers
//! `autoencoder_kl_wan.py` `WanCausalConv3d`), which the implicit-GEMM kernels run in an N tile of 32
//! or 128 with 3 useful columns. Every dtype; f32 FMA products and sums (f32 storage stays exact, no
//! TF32), so [`super::conv3d`] takes it first for f32, bf16 and f16 alike.
//!
//! A CTA of 128 threads computes 32 columns × 16 rows of output pixels of one output frame, or of
//! four ([`FRAMES`], Cout ≤ 3 and at least two output frames, the default there: each staged input
//! frame then serves every output frame of the four that reads it, instead of being staged once per
//! reading frame; 1.47× faster at the decoder's 480p conv_out on an H200), all channels, each
//! thread 2 columns × 2 rows × Cout accumulators per frame in registers. It loops over the input
//! frames and blocks of 16 input channels, staging the input halo in shared memory as f32 planes (two
//! 16-byte loads per pixel, a whole 32-byte sector in bf16, when Cin % 16 == 0 and x/prev are 16-byte
//! aligned, element loads otherwise) and the block's weights beside it (up to 48 KiB of static shared
//! memory, at least 4 CTAs per SM). Each output's sum runs in the same order either way: the same bits.
//! The floor at conv_out's size is the FMA rate, not memory: 480×832×4 frames × 3 × 27 × 96
//! multiply-adds are 12.4·10^9 FMAs, 0.37 ms at an H100's 67 TFLOP/s f32, against 0.1 ms to read the
//! input once.
//!
//! [`refusal`] says why a call cannot take this path (Cout above 8, spatial kernel other than 3×3,
//! spatial stride other than 1, sizes past the kernel's i32 coordinates); [`conv3d_narrow`] runs it,
//! fully checked.

use super::{check, ConvArgs, ConvShape};
use crate::gpu::kernels::{Key, CONV3D_NARROW};
use crate::gpu::params::Conv3dDims;
use crate::gpu::LaunchConfig;
use crate::ops::range;
use crate::{DType, Error, Result};

const OP: &str = "conv3d_narrow";

/// The widest output this path takes.
pub const MAX_COUT: usize = 8;

/// The instantiated channel counts (`conv3d_narrow_{dtype}_c{n}`): a call runs the smallest that holds
/// its Cout (5..7 run the 8-wide entry, whose extra channels have zero weights and are not stored).
pub const COUT_ENTRIES: [usize; 5] = [1, 2, 3, 4, 8];

/// Output frames per CTA of the frame-group entries (`conv3d_narrow_{dtype}_c{n}f4`, n ≤ 3).
pub const FRAMES: usize = 4;

/// Threads per CTA and output columns per CTA (`narrow::THREADS`, `narrow::TW` in the kernel).
const THREADS: u32 = 128;
const TILE_W: usize = 32;

/// Output rows per CTA (`Shape<COUT>::TH`, the same for every entry).
const TILE_H: usize = 16;

/// An entry of kernels/conv3d_narrow.cu: `conv3d_narrow_{dtype}_c{cout}`, and with output frames
/// per CTA other than 1, `..._c{cout}f{frames}`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NarrowKey(pub DType, pub usize, pub usize);
impl Key for NarrowKey {
    fn suffix(&self) -> String {
        let f = if self.2 > 1 { format!("f{}", self.2) } else { String::new() };
        format!("{}_c{}{f}", self.0.kernel_suffix(), self.1)
    }
}

/// The widest entry with a frame-group variant (`..._c{n}f4`).
pub const MAX_GROUP_COUT: usize = 3;

/// Every entry of the kernel file.
pub(crate) fn conv_narrow_keys() -> Vec<NarrowKey> {
    let entries = COUT_ENTRIES.iter().flat_map(|&n| [(n, 1)].into_iter().chain((n <= MAX_GROUP_COUT).then_some((n, FRAMES))));
    let entries: Vec<(usize, usize)> = entries.collect();
    [DType::F32, DType::BF16, DType::F16].iter().flat_map(|&dt| entries.iter().map(move |&(n, f)| NarrowKey(dt, n, f))).collect()
}

/// A checked call: the kernel's geometry, its entry and CTA count (`None` when the output is empty).
struct Plan {
    dims: Conv3dDims,
    entry: usize,
    frames: usize,
    ctas: u32,
}

fn refuse(why: String) -> Error {
    Error::invalid(format!("{OP}: {why}"))
}

fn plan(args: &ConvArgs, frames: Option<usize>) -> Result<Option<Plan>> {
    let geom = &args.geom;
    let s: ConvShape = check(args)?;
    let Some(entry) = COUT_ENTRIES.iter().copied().find(|&n| n >= s.cout) else {
        return Err(refuse(format!(
            "Cout = {} is above {MAX_COUT} (each thread keeps every output channel of its pixels in registers)",
            s.cout
        )));
    };
    if (s.k.1, s.k.2) != (3, 3) {
        return Err(refuse(format!("spatial kernel {}×{} (the kernel is unrolled for 3×3)", s.k.1, s.k.2)));
    }
    if (geom.stride.1, geom.stride.2) != (1, 1) {
        return Err(refuse(format!("spatial stride {:?} (stride 1 only)", (geom.stride.1, geom.stride.2))));
    }
    // The kernel keeps rows, columns, channels and paddings in i32 (offsets in i64): each, plus a
    // tile and its halo, must fit.
    let lim = i32::MAX as usize - 256;
    let sizes = [s.h, s.w, s.cin, s.out.1, s.out.2, s.k.0, geom.pad_h.0, geom.pad_w.0];
    if sizes.iter().any(|&v| v > lim) || s.h.saturating_add(geom.pad_h.0) > lim || s.w.saturating_add(geom.pad_w.0) > lim {
        return Err(refuse(format!("sizes past its i32 coordinates (H {}, W {}, Cin {}, padding {geom:?})", s.h, s.w, s.cin)));
    }
    let (to, ho, wo) = s.out;
    let frames = frames.unwrap_or_else(|| default_frames(s.cout, to));
    if frames != 1 && (frames != FRAMES || entry > MAX_GROUP_COUT) {
        return Err(refuse(format!("{frames} output frames per CTA at Cout {}: 1, or {FRAMES} up to Cout {MAX_GROUP_COUT}", s.cout)));
    }
    if s.b * to == 0 || ho == 0 || wo == 0 || s.cout == 0 {
        return Ok(None);
    }
    let groups = s.b * to.div_ceil(frames);
    let ctas = groups.checked_mul(ho.div_ceil(TILE_H)).and_then(|v| v.checked_mul(wo.div_ceil(TILE_W)));
    let ctas = match ctas {
        Some(c) if c <= i32::MAX as usize => c as u32,
        _ => return Err(refuse(format!("{} output frames of {ho}×{wo} exceed one launch's 2^31 - 1 CTAs", s.b * to))),
    };
    let dims = s.dims(geom);
    Ok(Some(Plan { dims, entry, frames, ctas }))
}

/// Why [`conv3d_narrow`] cannot take this call (an argument error of the contract, Cout above 8, a
/// spatial kernel other than 3×3, a spatial stride other than 1, sizes past its i32 coordinates),
/// `None` when it can. Any device, any time kernel, time stride and padding.
pub fn refusal(args: &ConvArgs) -> Option<Error> {
    plan(args, None).err()
}

/// [`super::conv3d`]'s contract on the narrow-output kernel: f32, bf16 or f16, Cout ≤ 8, 3×3 spatial
/// taps, spatial stride 1 (any kt, time stride and padding). Products and sums in f32 (the sum of each
/// output in a fixed order: time tap, input channel, kernel row, kernel column), bias then residual
/// added in f32, one rounding. Returns [`refusal`]'s error for a call it does not take. Output frames
/// per CTA: [`default_frames`] (the same bits either way, tests/gpu_ops_conv_narrow.rs).
pub fn conv3d_narrow(args: &ConvArgs) -> Result<()> {
    conv3d_narrow_with_frames(args, None)
}

/// Output frames per CTA [`conv3d_narrow`] takes: [`FRAMES`] where a frame-group entry exists (Cout ≤
/// [`MAX_GROUP_COUT`]) and there are at least two output frames to share the staged input; else one.
/// conv_bench (`narrow-f1` / `narrow-f4`, 96 → 3 channels, 4 frames, bf16, H200): 1.350 → 0.916 ms at
/// 480p, 3.123 → 2.265 ms at 720p.
pub fn default_frames(cout: usize, out_frames: usize) -> usize {
    if cout <= MAX_GROUP_COUT && out_frames >= 2 {
        FRAMES
    } else {
        1
    }
}

/// [`conv3d_narrow`] with `frames` output frames per CTA (1, or [`FRAMES`] at Cout ≤ 3, any time
/// stride; `None`: [`default_frames`]): the same bits whatever the choice; `Some` for tests and benches.
pub fn conv3d_narrow_with_frames(args: &ConvArgs, frames: Option<usize>) -> Result<()> {
    let _r = range("conv3d_narrow");
    let Some(p) = plan(args, frames)? else {
        return Ok(());
    };
    let &ConvArgs { x, prev, w, bias, residual, out, .. } = args;
    let cfg = LaunchConfig { grid: (p.ctas, 1, 1), block: (THREADS, 1, 1), shared_mem: 0 };
    CONV3D_NARROW.launch(x.device(), NarrowKey(x.dtype(), p.entry, p.frames), cfg, (x, prev, w, bias, residual, out, p.dims))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_default_to_four_where_an_entry_shares_them() {
        assert_eq!(default_frames(3, 4), FRAMES);
        assert_eq!(default_frames(3, 2), FRAMES);
        assert_eq!(default_frames(3, 1), 1, "one output frame: nothing to share");
        assert_eq!(default_frames(4, 4), 1, "no frame-group entry past Cout 3");
    }

    #[test]
    fn entries_cover_every_narrow_cout() {
        for cout in 1..=MAX_COUT {
            let e = COUT_ENTRIES.iter().copied().find(|&n| n >= cout).unwrap();
            assert!(e >= cout && e <= MAX_COUT);
        }
        assert_eq!(conv_narrow_keys().len(), 3 * (COUT_ENTRIES.len() + 3));
        assert_eq!(NarrowKey(DType::BF16, 3, 1).suffix(), "bf16_c3");
        assert_eq!(NarrowKey(DType::BF16, 3, FRAMES).suffix(), "bf16_c3f4");
        // The decoder's conv_out at 480×832: 30 × 26 tiles of 16×32 per frame.
        assert_eq!(480usize.div_ceil(TILE_H) * 832usize.div_ceil(TILE_W), 780);
    }
}
