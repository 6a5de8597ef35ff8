//! 3-D convolution in channels-last layout (the Wan VAE's `WanCausalConv3d` and its 2-D convs, which
//! are kt = 1): one op, its kernels each in a module named after its file.
//!
//! - [`mma`] (`kernels/conv3d_mma.cu`): implicit GEMM on mma.sync tensor cores, bf16/f16, sm_80+;
//! - [`wgmma`] (`kernels/conv3d_wgmma.cu`): the same on Hopper's wgmma, the default on sm_90
//!   (`WANRT_CONV=mma` forces mma.sync: the Wan2.1 480p-81f bf16 decode took 1.15 s with wgmma
//!   against 1.36 s with mma.sync on an H100);
//! - [`wgmma_rows`] (`kernels/conv3d_wgmma_rows.cu`): wgmma with each gathered input row serving the
//!   three kw taps, for 3-wide stride-1 kernels with padding (1, 1) and Cin % 32 == 0 (the VAE's 3×3×3
//!   and 3×3 convs); taken before [`wgmma`] where it does not refuse (`WANRT_CONV=wgmma` runs the
//!   per-tap kernel only): the 480p-81f bf16 decode took 0.88 s against 0.91 s on the per-tap kernel
//!   (H100, before the tile table of [`wgmma_rows::default_row_tile`]);
//! - [`tf32`] (`kernels/conv3d_tf32.cu`): f32 by default (`WANRT_CONV_F32=exact` keeps the FMA kernel),
//!   the same implicit GEMM on mma.sync TF32 tensor cores with the 3xTF32 split (about 22 bits of each
//!   product where fp32 keeps 24, partial sums flushed into f32), sm_80+ (BENCHMARKS.md has its times
//!   against the FMA kernel and cuDNN);
//! - [`wgmma_tf32_rows`] (`kernels/conv3d_wgmma_tf32_rows.cu`): f32 on sm_90 with the 3xTF32 split on
//!   wgmma and the row sharing of [`wgmma_rows`], before [`tf32`] where it does not refuse: per layer
//!   about twice [`tf32`]'s rate; the 480p-81f fp32 decode took 3.48 s against 6.21 s (H100);
//! - [`narrow`] (`kernels/conv3d_narrow.cu`): a direct convolution with f32 FMA math for Cout ≤ 8 (the
//!   decoder's conv_out, 96 → 3 channels), every dtype, 3×3 spatial taps, spatial stride 1: taken
//!   first wherever it does not refuse (the per-tap tensor-core kernels would pad its 3 channels to an
//!   N tile of 96), after [`wgmma_rows`]'s 8-wide tile on sm_90 for bf16/f16 with `WANRT_UNVERIFIED=1`;
//! - [`small_cin`] (`kernels/conv3d_small_cin.cu`): the mirror case, a direct convolution with f32 FMA
//!   math for Cin ≤ 4 (the encoder's conv_in, 3 → 96 channels, which every tensor-core kernel refuses),
//!   every dtype, 3×3 spatial taps, spatial stride 1: taken after [`narrow`] where it does not refuse
//!   (0.71 ms against the portable kernel's 8.8 ms for a 4-frame 480×832 chunk on an H100);
//! - [`portable`] (`kernels/conv3d.cu`): an implicit GEMM with f32 FMA math, every dtype
//!   (`WANRT_CONV=portable` forces it for every dtype).
//!
//! [`conv3d`] picks the kernel in `choose`, as `ops::attention` picks among its kernels: a fast path
//! declined for a reason other than the dtype is reported once per reason on stderr.

pub mod mma;
pub mod narrow;
pub mod portable;
pub mod small_cin;
pub mod tf32;
pub mod wgmma;
pub mod wgmma_rows;
pub mod wgmma_tf32_rows;

use std::sync::Mutex;

use crate::gpu::Arch;
use crate::settings::settings;
use crate::{DType, Error, Result, Tensor};

pub use portable::conv3d_portable;

/// Padding and stride of a [`conv3d`]. The logical time axis is `[pad_t zero frames ; prev ; x]`
/// (causal: nothing is padded after the last frame); height and width get `(before, after)` zeros.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv3dGeom {
    /// Zero frames in front of `prev` and `x` (causal padding).
    pub pad_t: usize,
    /// (top, bottom).
    pub pad_h: (usize, usize),
    /// (left, right).
    pub pad_w: (usize, usize),
    /// (t, h, w).
    pub stride: (usize, usize, usize),
}

impl Conv3dGeom {
    /// Stride 1, no padding.
    pub fn valid() -> Conv3dGeom {
        Conv3dGeom { pad_t: 0, pad_h: (0, 0), pad_w: (0, 0), stride: (1, 1, 1) }
    }
}

/// One [`conv3d`] call's arguments, channels-last: `out = conv(x) [+ bias] [+ residual]`. One dtype
/// (f32, bf16 or f16) for all tensors, all contiguous, `out` overlapping none of `x`, `prev`, `w`.
#[derive(Clone, Copy, Debug)]
pub struct ConvArgs<'a> {
    /// [B, T, H, W, Cin].
    pub x: &'a Tensor,
    /// [B, P, H, W, Cin]: the causal cache, frames logically before `x` (read in place).
    pub prev: Option<&'a Tensor>,
    /// [Cout, kt, kh, kw, Cin] (PyTorch's [Cout, Cin, kt, kh, kw] permuted once, at load).
    pub w: &'a Tensor,
    /// Cout values, one per output channel.
    pub bias: Option<&'a Tensor>,
    /// Like `out`, added after the bias (it may be `out` itself).
    pub residual: Option<&'a Tensor>,
    pub geom: Conv3dGeom,
    /// [B, To, Ho, Wo, Cout] with To = (pad_t + P + T − kt)/st + 1, Ho = (H + top + bottom − kh)/sh + 1,
    /// Wo likewise.
    pub out: &'a Tensor,
}

impl<'a> ConvArgs<'a> {
    /// No `prev`, `bias` or `residual` (the builders below add them).
    pub fn new(x: &'a Tensor, w: &'a Tensor, geom: Conv3dGeom, out: &'a Tensor) -> ConvArgs<'a> {
        ConvArgs { x, prev: None, w, bias: None, residual: None, geom, out }
    }
    pub fn prev(self, prev: Option<&'a Tensor>) -> ConvArgs<'a> {
        ConvArgs { prev, ..self }
    }
    pub fn bias(self, bias: Option<&'a Tensor>) -> ConvArgs<'a> {
        ConvArgs { bias, ..self }
    }
    pub fn residual(self, residual: Option<&'a Tensor>) -> ConvArgs<'a> {
        ConvArgs { residual, ..self }
    }
}

/// `out = conv(x) [+ bias] [+ residual]` for `args` (see [`ConvArgs`]). Products and sums in f32, bias
/// and residual added in f32, one rounding (for f32 on the 3xTF32 kernel each product is off by up to
/// about 3·2^-22 of its magnitude instead of 2^-24: see [`tf32`]).
pub fn conv3d(args: &ConvArgs) -> Result<()> {
    match choose(args) {
        Path::Narrow => narrow::conv3d_narrow(args),
        Path::SmallCin => small_cin::conv3d_small_cin(args),
        Path::WgmmaRows => wgmma_rows::conv3d_wgmma_rows(args),
        Path::Wgmma => wgmma::conv3d_wgmma(args),
        Path::Mma => mma::conv3d_mma(args),
        Path::Tf32 => tf32::conv3d_tf32(args),
        Path::Tf32Rows => wgmma_tf32_rows::conv3d_wgmma_tf32_rows(args),
        Path::Portable => conv3d_portable(args),
    }
}

/// `out = WanRMS_norm(conv(x) + bias)`, then SiLU when `silu` (diffusers `WanResidualBlock`: `conv1`,
/// `norm2`, its SiLU): with `WANRT_UNVERIFIED=1` (it passes its GPU tests, but the 480p-81f bf16 encode
/// took 1.5% longer with it (H200) and the decode 1% with it and the 8-wide tiles (H100): so it stays
/// opt-in) one launch of the
/// row-sharing wgmma kernel with the norm in its epilogue where [`wgmma_rows::norm_refusal`] allows
/// (the norm then sees the f32 sums, not the conv's rounded output), else [`conv3d`] and
/// `ops::l2_norm` in place. `gamma` `[Cout]` in x's dtype; `args.residual` must be `None`.
pub fn conv3d_norm(args: &ConvArgs, gamma: &Tensor, silu: bool) -> Result<()> {
    if let Some(e) = residual_refusal("conv3d_norm", args) {
        return Err(e);
    }
    if settings().unverified && matches!(choose(args), Path::WgmmaRows) {
        match wgmma_rows::norm_refusal(args, gamma) {
            None => return wgmma_rows::conv3d_wgmma_rows_norm(args, gamma, silu),
            Some(why) => refused("fused conv + norm", "conv3d, then l2_norm,", &why),
        }
    }
    conv3d(args)?;
    crate::ops::l2_norm(args.out, gamma, None, silu, args.out)
}

/// The norm functions take no residual: the fused epilogue has none (kernels/conv3d_wgmma_rows.cu).
fn residual_refusal(op: &str, args: &ConvArgs) -> Option<Error> {
    args.residual.map(|r| Error::invalid(format!("{op}: takes no residual (got {r:?})")))
}

enum Path {
    Narrow,
    SmallCin,
    WgmmaRows,
    Wgmma,
    Mma,
    Tf32,
    Tf32Rows,
    Portable,
}

/// The kernel [`conv3d`] would run for these arguments: `"narrow"`, `"small_cin"`, `"wgmma_rows"`, `"wgmma"`, `"mma"`, `"tf32"`,
/// `"tf32_rows"` or `"portable"` (tests check the dispatch with it; it counts refusals as a call does).
pub fn chosen_path(args: &ConvArgs) -> &'static str {
    match choose(args) {
        Path::Narrow => "narrow",
        Path::SmallCin => "small_cin",
        Path::WgmmaRows => "wgmma_rows",
        Path::Wgmma => "wgmma",
        Path::Mma => "mma",
        Path::Tf32 => "tf32",
        Path::Tf32Rows => "tf32_rows",
        Path::Portable => "portable",
    }
}

/// The kernel that takes the call, unless `WANRT_CONV=portable` (the portable kernel for every dtype):
/// on sm_90 the row-sharing wgmma kernel for the bf16/f16 calls it takes (3×3 column taps; Cout ≤ 8
/// too, on its 8-wide tile, with `WANRT_UNVERIFIED=1`: it passes its GPU tests, but the decode took
/// about 1% longer with it and [`conv3d_norm`]'s fused norm on (H100));
/// the narrow kernel for Cout ≤ 8 wherever it does not refuse (every dtype: its f32 math is the
/// portable kernel's FMA, so the fp32 mode keeps fp32 rounding there); the
/// small-input kernel for Cin ≤ 4 wherever it does not refuse (every dtype, f32 FMA math likewise;
/// `WANRT_CONV=portable` still forces the portable kernel); otherwise, on compute capability 8.0+,
/// the tensor-core kernels for bf16/f16 (wgmma on sm_90 unless `WANRT_CONV=mma`), and for f32 the
/// 3xTF32 kernels (on sm_90 the wgmma row kernel where it takes the call, else mma.sync) unless
/// `WANRT_CONV_F32=exact` (with its flushed partial sums the VAE fixture's fp32 encode → decode ends
/// 2.1e-6 (relative RMS) from diffusers' fp32 on an H100, inside tests/gpu_vae.rs's 1e-5 bound); the
/// portable kernel below 8.0 and for calls a fast path refuses (e.g. the encoder's conv_in, Cin = 3,
/// where the small-input kernel does not take it), reported once per reason.
fn choose(args: &ConvArgs) -> Path {
    let want = settings().conv.as_str();
    if want == "portable" {
        return Path::Portable;
    }
    let (x, w) = (args.x, args.w);
    let arch = x.device().arch();
    // Only where its geometry, dtype (bf16/f16) and device (sm_90) fit: every other conv (1×1×1, time
    // convs, stride 2, f32) goes on quietly. Its 8-wide tiles (Cout ≤ 8) pass their GPU tests, but the
    // decode was no faster with them and the fused norm on: those calls take it with WANRT_UNVERIFIED=1.
    let narrow_out = w.shape().first().is_some_and(|&cout| cout <= narrow::MAX_COUT);
    if want == "auto"
        && arch == Arch::new(9, 0)
        && (!narrow_out || settings().unverified)
        && wgmma_rows::refusal(args).is_none()
    {
        return Path::WgmmaRows;
    }
    if w.shape().first().is_some_and(|&cout| cout <= narrow::MAX_COUT) {
        match narrow::refusal(args) {
            None => return Path::Narrow,
            Some(why) => refused("narrow", "next eligible", &why),
        }
    }
    // Cin ≤ 4 (the encoder's conv_in, 3 channels), which every tensor-core kernel refuses.
    if x.shape().last().is_some_and(|&cin| cin <= small_cin::MAX_CIN) {
        match small_cin::refusal(args) {
            None => return Path::SmallCin,
            Some(why) => refused("small-Cin", "next eligible", &why),
        }
    }
    if x.dtype() == DType::F32 {
        // On Hopper the 3xTF32 wgmma row kernel (about twice the mma.sync kernel's rate per layer).
        if settings().conv_f32_tf32x3
            && want == "auto"
            && arch == Arch::new(9, 0)
            && wgmma_tf32_rows::refusal(args).is_none()
        {
            return Path::Tf32Rows;
        }
        if settings().conv_f32_tf32x3 && arch >= Arch::new(8, 0) {
            match tf32::refusal(args) {
                None => return Path::Tf32,
                Some(why) => refused("3xTF32", "portable", &why),
            }
        }
        return Path::Portable;
    }
    if matches!(want, "wgmma" | "auto") && arch == Arch::new(9, 0) {
        match wgmma::refusal(args) {
            None => return Path::Wgmma,
            Some(why) => refused("wgmma", "mma.sync", &why),
        }
    }
    if arch >= Arch::new(8, 0) {
        match mma::refusal(args) {
            None => return Path::Mma,
            Some(why) => refused("mma.sync", "portable", &why),
        }
    }
    Path::Portable
}

/// Refusals so far: (reason, count).
static REFUSALS: Mutex<Vec<(String, u64)>> = Mutex::new(Vec::new());

/// Counts a refusal and reports it on stderr the first time its reason is seen (a Cin that is not a
/// multiple of 8, e.g. the decoder's 16-channel input conv, is one reason however often it comes).
fn refused(path: &str, next: &str, why: &Error) {
    let reason = match why {
        Error::Shape { name, .. } => format!("{path}: {name} has a shape, stride or alignment it does not take"),
        Error::DType { name, got, .. } => format!("{path}: {name} is {got}"),
        other => format!("{path}: {other}"),
    };
    let mut seen = REFUSALS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(entry) = seen.iter_mut().find(|(r, _)| *r == reason) {
        entry.1 += 1;
        return;
    }
    seen.push((reason, 1));
    eprintln!("wanrt: conv3d: the {path} kernel declined ({why}); the {next} kernel runs instead (reported once per reason)");
}

/// The refusals so far, each reason with its count (benchmarks and tests print them).
pub fn refusals() -> Vec<(String, u64)> {
    REFUSALS.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// The checked sizes of one [`conv3d`] call.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConvShape {
    pub b: usize,
    pub t: usize,
    pub p: usize,
    pub h: usize,
    pub w: usize,
    pub cin: usize,
    pub cout: usize,
    pub k: (usize, usize, usize),
    pub out: (usize, usize, usize),
}

impl ConvShape {
    /// The geometry block of the FMA-math kernels (kernels/conv3d.cu, conv3d_narrow.cu, conv3d_small_cin.cu).
    pub(crate) fn dims(&self, geom: &Conv3dGeom) -> crate::gpu::params::Conv3dDims {
        let i = |v: usize| v as i64;
        crate::gpu::params::Conv3dDims {
            batch: i(self.b),
            t: i(self.t),
            p: i(self.p),
            h: i(self.h),
            w: i(self.w),
            cin: i(self.cin),
            cout: i(self.cout),
            to: i(self.out.0),
            ho: i(self.out.1),
            wo: i(self.out.2),
            kt: i(self.k.0),
            kh: i(self.k.1),
            kw: i(self.k.2),
            st: i(geom.stride.0),
            sh: i(geom.stride.1),
            sw: i(geom.stride.2),
            pad_t: i(geom.pad_t),
            pad_h: i(geom.pad_h.0),
            pad_w: i(geom.pad_w.0),
        }
    }
}

fn shape_err(name: &str, expected: impl Into<String>, t: &Tensor) -> Error {
    Error::Shape { op: "conv3d", name: name.into(), expected: expected.into(), got: t.shape().to_vec() }
}

/// Whether the byte ranges of two tensors on one buffer overlap.
fn overlaps(a: &Tensor, b: &Tensor) -> bool {
    std::sync::Arc::ptr_eq(a.buffer(), b.buffer())
        && a.byte_offset() < b.byte_offset() + b.byte_len()
        && b.byte_offset() < a.byte_offset() + a.byte_len()
        && a.byte_len() > 0
        && b.byte_len() > 0
}

/// Checks every argument of [`conv3d`] (shapes, dtypes, contiguity, devices, aliasing) and returns the
/// sizes; every error names the argument and its shape.
pub(crate) fn check(args: &ConvArgs) -> Result<ConvShape> {
    const OP: &str = "conv3d";
    let &ConvArgs { x, prev, w, bias, residual, geom, out } = args;
    let dt = x.dtype();
    let [b, t, h, wd, cin] = *x.shape() else {
        return Err(shape_err("x", "[B, T, H, W, Cin]", x));
    };
    let [cout, kt, kh, kw, wcin] = *w.shape() else {
        return Err(shape_err("w", format!("[Cout, kt, kh, kw, {cin}]"), w));
    };
    w.expect_dtype(OP, "w", dt)?;
    if wcin != cin || cin == 0 || kt == 0 || kh == 0 || kw == 0 {
        return Err(shape_err("w", format!("[Cout, kt ≥ 1, kh ≥ 1, kw ≥ 1, Cin = {cin} ≥ 1] (x is {:?})", x.shape()), w));
    }
    let p = match prev {
        None => 0,
        Some(pv) => {
            pv.expect_dtype(OP, "prev", dt)?;
            match *pv.shape() {
                [pb, pp, ph, pw, pc] if pb == b && ph == h && pw == wd && pc == cin => pp,
                _ => return Err(shape_err("prev", format!("[{b}, P, {h}, {wd}, {cin}] (x is {:?})", x.shape()), pv)),
            }
        }
    };
    let (st, sh, sw) = geom.stride;
    if st == 0 || sh == 0 || sw == 0 {
        return Err(Error::invalid(format!("conv3d: stride {:?} has a zero component", geom.stride)));
    }
    let len = |n: usize, a: usize, b2: usize| n.checked_add(a).and_then(|v| v.checked_add(b2));
    let (lt, lh, lw) = (len(t, p, geom.pad_t), len(h, geom.pad_h.0, geom.pad_h.1), len(wd, geom.pad_w.0, geom.pad_w.1));
    let (Some(lt), Some(lh), Some(lw)) = (lt, lh, lw) else {
        return Err(Error::invalid(format!("conv3d: padding {geom:?} overflows")));
    };
    if lt < kt || lh < kh || lw < kw {
        return Err(shape_err(
            "x",
            format!("a padded extent (t {lt} = pad {} + prev {p} + {t}, h {lh}, w {lw}) at least the kernel's {:?}", geom.pad_t, (kt, kh, kw)),
            x,
        ));
    }
    let (to, ho, wo) = ((lt - kt) / st + 1, (lh - kh) / sh + 1, (lw - kw) / sw + 1);
    out.expect(OP, "out", dt, &[b, to, ho, wo, cout])?;
    if let Some(bi) = bias {
        bi.expect(OP, "bias", dt, &[cout])?;
    }
    if let Some(r) = residual {
        r.expect(OP, "residual", dt, out.shape())?;
        if overlaps(r, out) && (r.byte_offset() != out.byte_offset()) {
            return Err(Error::invalid(format!("conv3d: residual {r:?} partly overlaps out {out:?} (it may be out itself)")));
        }
    }
    let mut all = vec![("x", x), ("w", w), ("out", out)];
    all.extend(prev.map(|t| ("prev", t)));
    all.extend(bias.map(|t| ("bias", t)));
    all.extend(residual.map(|t| ("residual", t)));
    crate::ops::checks::contiguous(OP, &all)?;
    crate::ops::checks::same_device(OP, &all)?;
    for (name, t) in [("x", Some(x)), ("prev", prev), ("w", Some(w))] {
        if let Some(t) = t {
            if overlaps(t, out) {
                return Err(Error::invalid(format!("conv3d: out {out:?} overlaps {name} {t:?}")));
            }
        }
    }
    Ok(ConvShape { b, t, p, h, w: wd, cin, cout, k: (kt, kh, kw), out: (to, ho, wo) })
}
