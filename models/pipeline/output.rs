//! Where decoded frames go: a [`FrameSink`] receives each chunk of frames as the VAE decodes it, so
//! the whole video never sits on the device (diffusers decodes it whole, then post-processes).

use wanrt_runtime::{Error, Result};

use crate::video::{VideoShape, VideoWriter};

/// Receives the video in order, chunk by chunk: `data` is (3, frames, H, W) f32 in [-1, 1] (the VAE
/// output, clamped as `_decode` clamps it).
pub trait FrameSink {
    fn frames(&mut self, data: Vec<f32>, frames: usize) -> Result<()>;
}

/// The MP4 / PNG / safetensors writer thread of `crate::video`.
impl FrameSink for VideoWriter {
    fn frames(&mut self, data: Vec<f32>, frames: usize) -> Result<()> {
        self.push(data, frames)
    }
}

/// Keeps the whole video on the host as (1, 3, F, H, W) f32 (tests, callers that post-process).
pub struct CollectFrames {
    pub shape: VideoShape,
    pub data: Vec<f32>,
    placed: usize,
}

impl CollectFrames {
    pub fn new(frames: usize, height: usize, width: usize) -> CollectFrames {
        let shape = VideoShape { batch: 1, frames, height, width };
        CollectFrames { shape, data: vec![0.0; shape.numel()], placed: 0 }
    }

    /// Frames received so far.
    pub fn received(&self) -> usize {
        self.placed
    }

    /// Frame-last layout (F, H, W, 3) with diffusers' `postprocess_video` to [0, 1]
    /// (`(x / 2 + 0.5).clamp(0, 1)`), as the pipelines' `output_type="np"` returns it.
    pub fn to_np(&self) -> Vec<f32> {
        let s = self.shape;
        let plane = s.height * s.width;
        let mut out = vec![0f32; s.frames * plane * 3];
        for c in 0..3 {
            for f in 0..s.frames {
                for p in 0..plane {
                    let v = self.data[(c * s.frames + f) * plane + p];
                    out[(f * plane + p) * 3 + c] = (v / 2.0 + 0.5).clamp(0.0, 1.0);
                }
            }
        }
        out
    }
}

impl FrameSink for CollectFrames {
    fn frames(&mut self, data: Vec<f32>, frames: usize) -> Result<()> {
        let s = self.shape;
        let plane = s.height * s.width;
        if data.len() != 3 * frames * plane || self.placed + frames > s.frames {
            return Err(Error::invalid(format!("{frames} frames ({} values) do not fit a {}-frame {}x{} video at frame {}", data.len(), s.frames, s.height, s.width, self.placed)));
        }
        for c in 0..3 {
            let src = &data[c * frames * plane..][..frames * plane];
            self.data[(c * s.frames + self.placed) * plane..][..frames * plane].copy_from_slice(src);
        }
        self.placed += frames;
        Ok(())
    }
}
