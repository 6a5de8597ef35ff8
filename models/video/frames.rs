//! Decoded video in diffusers' layout and its conversion to 8-bit RGB.
//!
//! `AutoencoderKLWan.decode` returns (B, 3, F, H, W) in [-1, 1]; `VideoProcessor.postprocess_video`
//! (diffusers `video_processor.py` → `image_processor.py` `denormalize`) maps it to
//! `(x / 2 + 0.5).clamp(0, 1)`, and the frames become bytes in one of two ways:
//! - `export_to_video` (`utils/export_utils.py`), the MP4 path of the Wan examples:
//!   `(frame * 255).astype(np.uint8)`, which truncates ([`Quantize::Truncate`]);
//! - `numpy_to_pil` (`output_type="pil"`, then PIL's save): `(images * 255).round().astype("uint8")`,
//!   numpy rounding half to even ([`Quantize::Round`]).

use wanrt_runtime::{Error, Result};

/// How [0, 1] floats become bytes (see the module notes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quantize {
    Truncate,
    Round,
}

/// One byte from a value in [-1, 1], as diffusers' postprocess and `quantize` do in f32.
pub fn to_u8(x: f32, q: Quantize) -> u8 {
    // `clamp` keeps NaN; `as u8` then gives 0, as numpy's cast does on x86.
    let v = (x / 2.0 + 0.5).clamp(0.0, 1.0) * 255.0;
    match q {
        Quantize::Truncate => v as u8,
        Quantize::Round => v.round_ties_even() as u8,
    }
}

/// Frame `f` of a (3, F, H, W) channel-first chunk as packed RGB bytes (H, W, 3).
pub fn frame_rgb(chunk: &[f32], frames: usize, height: usize, width: usize, f: usize, q: Quantize) -> Vec<u8> {
    let plane = height * width;
    let mut out = vec![0u8; plane * 3];
    for c in 0..3 {
        let src = &chunk[(c * frames + f) * plane..][..plane];
        for (i, &x) in src.iter().enumerate() {
            out[i * 3 + c] = to_u8(x, q);
        }
    }
    out
}

/// The shape of a decoded video: (B, 3, F, H, W) as diffusers returns it, or (3, F, H, W) for B = 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VideoShape {
    pub batch: usize,
    pub frames: usize,
    pub height: usize,
    pub width: usize,
}

impl VideoShape {
    /// Checks a tensor shape; `what` names it in errors.
    pub fn from_dims(dims: &[usize], what: &str) -> Result<VideoShape> {
        let (batch, rest) = match dims {
            [b, rest @ ..] if dims.len() == 5 => (*b, rest),
            rest if dims.len() == 4 => (1, rest),
            _ => return Err(Error::invalid(format!("{what} has shape {dims:?}; a video is (B, 3, F, H, W) or (3, F, H, W), values in [-1, 1]"))),
        };
        let [c, frames, height, width] = [rest[0], rest[1], rest[2], rest[3]];
        if c != 3 {
            return Err(Error::invalid(format!("{what} has shape {dims:?}: {c} channels where RGB needs 3 (layout (B, 3, F, H, W))")));
        }
        if batch == 0 || frames == 0 || height == 0 || width == 0 {
            return Err(Error::invalid(format!("{what} has shape {dims:?}: an empty video")));
        }
        Ok(VideoShape { batch, frames, height, width })
    }

    pub fn numel(&self) -> usize {
        self.batch * 3 * self.frames * self.height * self.width
    }

    /// (B, 3, F, H, W).
    pub fn dims(&self) -> [usize; 5] {
        [self.batch, 3, self.frames, self.height, self.width]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantize_as_diffusers() {
        // x/2+0.5 = 0.5 → 127.5: truncated 127, rounded half to even 128.
        assert_eq!((to_u8(0.0, Quantize::Truncate), to_u8(0.0, Quantize::Round)), (127, 128));
        assert_eq!((to_u8(-1.0, Quantize::Truncate), to_u8(1.0, Quantize::Truncate)), (0, 255));
        assert_eq!((to_u8(-7.0, Quantize::Round), to_u8(3.0, Quantize::Round)), (0, 255));
        assert_eq!(to_u8(f32::NAN, Quantize::Round), 0);
        // 1/255 steps: (k/255)*2-1 maps back to k when rounded.
        for k in 0..=255u32 {
            let x = (k as f32 / 255.0) * 2.0 - 1.0;
            assert_eq!(to_u8(x, Quantize::Round) as u32, k);
        }
    }

    #[test]
    fn channel_first_frames_become_rgb() {
        // (3, F=2, H=1, W=2): R plane then G then B, per frame.
        let chunk = [-1.0, 1.0, 1.0, 1.0, /*G*/ 1.0, -1.0, -1.0, -1.0, /*B*/ -1.0, -1.0, 1.0, 1.0];
        assert_eq!(frame_rgb(&chunk, 2, 1, 2, 0, Quantize::Round), vec![0, 255, 0, 255, 0, 0]);
        assert_eq!(frame_rgb(&chunk, 2, 1, 2, 1, Quantize::Round), vec![255, 0, 255, 255, 0, 255]);
    }

    #[test]
    fn shapes() {
        assert_eq!(VideoShape::from_dims(&[1, 3, 9, 48, 64], "v").unwrap(), VideoShape { batch: 1, frames: 9, height: 48, width: 64 });
        assert_eq!(VideoShape::from_dims(&[3, 9, 48, 64], "v").unwrap().batch, 1);
        assert!(VideoShape::from_dims(&[9, 48, 64, 3], "v").unwrap_err().to_string().contains("channels"));
        assert!(VideoShape::from_dims(&[48, 64, 3], "v").unwrap_err().to_string().contains("(B, 3, F, H, W)"));
        assert!(VideoShape::from_dims(&[1, 3, 0, 48, 64], "v").unwrap_err().to_string().contains("empty"));
    }
}
