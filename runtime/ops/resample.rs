//! Channels-last resampling and layout changes (the Wan VAE's, diffusers autoencoder_kl_wan.py):
//! nearest 2× spatial upsampling, the temporal interleave of `WanResample`'s upsample3d, and
//! [B, C, T, H, W] ↔ [B, T, H, W, C]. Data movement only (conversions round once); all contiguous.

use crate::gpu::kernels::{Pair, COPY_WINDOW, FROM_CHANNELS_LAST, TIME_INTERLEAVE, TIME_INTERLEAVE_V8, TO_CHANNELS_LAST, UPSAMPLE2X, UPSAMPLE2X_V8};
use crate::gpu::LaunchConfig;
use crate::{Error, Result, Tensor};

use super::checks::{contiguous, packs_of_8, same_device};
use super::range;

fn prologue(op: &'static str, x: &Tensor, out: &Tensor) -> Result<()> {
    contiguous(op, &[("x", x), ("out", out)])?;
    same_device(op, &[("x", x), ("out", out)])?;
    if std::sync::Arc::ptr_eq(x.buffer(), out.buffer())
        && x.byte_offset() < out.byte_offset() + out.byte_len()
        && out.byte_offset() < x.byte_offset() + x.byte_len()
    {
        return Err(Error::invalid(format!("{op}: out {out:?} overlaps x {x:?}")));
    }
    Ok(())
}

fn shape_err(op: &'static str, name: &str, expected: String, t: &Tensor) -> Error {
    Error::Shape { op, name: name.into(), expected, got: t.shape().to_vec() }
}

/// `out [N, 2H, 2W, C]` from `x [N, H, W, C]` (or any rank ≥ 3 whose last three axes are H, W, C):
/// every pixel repeated 2×2, i.e. `nn.Upsample(scale_factor=2, mode="nearest-exact")`.
pub fn upsample_nearest2x(x: &Tensor, out: &Tensor) -> Result<()> {
    const OP: &str = "upsample_nearest2x";
    let _r = range(OP);
    let r = x.rank();
    if r < 3 {
        return Err(shape_err(OP, "x", "[.., H, W, C]".into(), x));
    }
    let (h, w, c) = (x.dim(r - 3), x.dim(r - 2), x.dim(r - 1));
    let mut want = x.shape().to_vec();
    want[r - 3] *= 2;
    want[r - 2] *= 2;
    out.expect(OP, "out", x.dtype(), &want)?;
    prologue(OP, x, out)?;
    let n = x.numel() / ((h * w * c).max(1) as u64);
    if out.numel() == 0 {
        return Ok(());
    }
    let cfg = LaunchConfig::elementwise(out.numel(), 256);
    let args = (x, out, n, h as u64, w as u64, c as u64);
    if packs_of_8(c as u64, &[Some(x), Some(out)]) {
        let cfg = LaunchConfig::elementwise(x.numel() / 8, 256);
        return UPSAMPLE2X_V8.launch(x.device(), x.dtype(), cfg, args);
    }
    UPSAMPLE2X.launch(x.device(), x.dtype(), cfg, args)
}

/// `out [B, 2T, H, W, C]` from `x [B, T, H, W, 2C]`: output frame 2t + j is channels [jC, (j+1)C) of
/// input frame t (upsample3d's `time_conv` output, reshaped (b, 2, c, t, h, w) and stacked on time).
pub fn time_interleave(x: &Tensor, out: &Tensor) -> Result<()> {
    const OP: &str = "time_interleave";
    let _r = range(OP);
    let [b, t, h, w, c2] = *x.shape() else {
        return Err(shape_err(OP, "x", "[B, T, H, W, 2C]".into(), x));
    };
    if c2 % 2 != 0 {
        return Err(shape_err(OP, "x", "[B, T, H, W, 2C] with an even channel count".into(), x));
    }
    out.expect(OP, "out", x.dtype(), &[b, 2 * t, h, w, c2 / 2])?;
    prologue(OP, x, out)?;
    if out.numel() == 0 {
        return Ok(());
    }
    let args = (x, out, b as u64, t as u64, (h * w) as u64, (c2 / 2) as u64);
    if packs_of_8((c2 / 2) as u64, &[Some(x), Some(out)]) {
        return TIME_INTERLEAVE_V8.launch(x.device(), x.dtype(), LaunchConfig::elementwise(out.numel() / 8, 256), args);
    }
    TIME_INTERLEAVE.launch(x.device(), x.dtype(), LaunchConfig::elementwise(out.numel(), 256), args)
}

/// Copies a spatial window between channels-last frames: `x` and `out` are [B, T, h, w, C] views of
/// one dtype, each dense except along H and W (a `narrow(2, ..)` / `narrow(3, ..)` of a contiguous
/// [B, T, H, W, C] tensor, or contiguous), not overlapping. The VAE decoder's spatial tiles crop their
/// halo'd input from a full frame and write their interior back into one with it.
pub fn copy_window(x: &Tensor, out: &Tensor) -> Result<()> {
    const OP: &str = "copy_window";
    let _r = range(OP);
    let [b, t, h, w, c] = *x.shape() else {
        return Err(shape_err(OP, "x", "[B, T, h, w, C]".into(), x));
    };
    out.expect(OP, "out", x.dtype(), x.shape())?;
    same_device(OP, &[("x", x), ("out", out)])?;
    // (row stride, frame stride) in elements of a view dense in C and across B and T.
    let strides = |name: &str, v: &Tensor| -> Result<(u64, u64)> {
        let s = v.strides();
        let dense = (c <= 1 || s[4] == 1) && (w <= 1 || s[3] == c) && (b <= 1 || s[0] == t * s[1]) && s[2] >= w * c && s[1] >= h * s[2];
        if !dense {
            return Err(Error::invalid(format!("{OP}: {name} {v:?} is not a window of channels-last frames (strides {s:?})")));
        }
        Ok((s[2] as u64, s[1] as u64))
    };
    let (x_row, x_frame) = strides("x", x)?;
    let (o_row, o_frame) = strides("out", out)?;
    // Byte spans of the two windows (first to last element), which must not overlap.
    let span = |v: &Tensor, row: u64, frame: u64| -> (u64, u64) {
        let last = ((b * t) as u64 - 1) * frame + (h as u64 - 1) * row + (w * c) as u64;
        (v.byte_offset(), v.byte_offset() + last * v.dtype().size() as u64)
    };
    if x.numel() == 0 {
        return Ok(());
    }
    let ((xs, xe), (os, oe)) = (span(x, x_row, x_frame), span(out, o_row, o_frame));
    if std::sync::Arc::ptr_eq(x.buffer(), out.buffer()) && xs < oe && os < xe {
        return Err(Error::invalid(format!("{OP}: out {out:?} overlaps x {x:?}")));
    }
    let cfg = LaunchConfig::elementwise(out.numel(), 256);
    let u = |v: usize| v as u64;
    COPY_WINDOW.launch(x.device(), x.dtype(), cfg, (x, out, u(b * t), u(h), u(w), u(c), x_row, x_frame, o_row, o_frame))
}

/// `out [B, T, H, W, C]` from PyTorch's `x [B, C, T, H, W]`, converted to `out`'s dtype (any).
pub fn to_channels_last(x: &Tensor, out: &Tensor) -> Result<()> {
    to_channels_last_frames(x, 0, out)
}

/// `out [B, n, H, W, C]` from frames `start .. start + n` of PyTorch's `x [B, C, T, H, W]`, converted
/// to `out`'s dtype: one chunk of a video without a channels-last copy of all of it (the VAE encoder).
pub fn to_channels_last_frames(x: &Tensor, start: usize, out: &Tensor) -> Result<()> {
    const OP: &str = "to_channels_last";
    let _r = range(OP);
    let [b, c, t, h, w] = *x.shape() else {
        return Err(shape_err(OP, "x", "[B, C, T, H, W]".into(), x));
    };
    let n = match *out.shape() {
        [_, n, ..] => n,
        _ => 0,
    };
    let want = [b, n, h, w, c];
    if out.shape() != want || start + n > t {
        return Err(shape_err(OP, "out", format!("[{b}, n, {h}, {w}, {c}] with {start} + n ≤ {t} frames"), out));
    }
    prologue(OP, x, out)?;
    if out.numel() == 0 {
        return Ok(());
    }
    let cfg = LaunchConfig::elementwise(out.numel(), 256);
    let u = |v: usize| v as u64;
    TO_CHANNELS_LAST.launch(x.device(), Pair(x.dtype(), out.dtype()), cfg, (x, out, u(b), u(c), u(n), u(h * w), u(t), u(start)))
}

/// `out [B, C, T, H, W]` from channels-last `x [B, T, H, W, C]`, converted to `out`'s dtype (any),
/// clamped to `[lo, hi]` first when `clamp` is given (the VAE decoder's final `torch.clamp`; a NaN
/// stays NaN, as there).
pub fn from_channels_last(x: &Tensor, clamp: Option<(f32, f32)>, out: &Tensor) -> Result<()> {
    const OP: &str = "from_channels_last";
    let _r = range(OP);
    let [b, t, h, w, c] = *x.shape() else {
        return Err(shape_err(OP, "x", "[B, T, H, W, C]".into(), x));
    };
    let want = [b, c, t, h, w];
    if out.shape() != want {
        return Err(shape_err(OP, "out", format!("{want:?}"), out));
    }
    prologue(OP, x, out)?;
    if out.numel() == 0 {
        return Ok(());
    }
    let (on, lo, hi) = match clamp {
        Some((lo, hi)) if lo <= hi => (1, lo, hi),
        Some((lo, hi)) => return Err(Error::invalid(format!("{OP}: clamp range [{lo}, {hi}] is empty"))),
        None => (0, 0.0, 0.0),
    };
    let cfg = LaunchConfig::elementwise(out.numel(), 256);
    FROM_CHANNELS_LAST.launch(x.device(), Pair(x.dtype(), out.dtype()), cfg, (x, out, b as u64, c as u64, t as u64, (h * w) as u64, on, lo, hi))
}
