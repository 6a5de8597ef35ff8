//! What a running generation tells its caller, and how the caller stops it: the stages in order, a
//! progress callback per unit of work, the plan of each stage, the latents after each denoising step
//! (diffusers' `callback_on_step_end`), and a cancellation token checked between units of work.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde::Serialize;
use wanrt_runtime::{Result, Tensor};

/// The stages of a generation, in the order they run; each loads, runs and frees its model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// UMT5: the prompt and the negative prompt.
    EncodeText,
    /// CLIP: the I2V image embedding.
    EncodeImage,
    /// VAE encode of the I2V first-frame video (the condition latents).
    EncodeCondition,
    /// The transformer and the scheduler, one unit per step.
    Denoise,
    /// VAE decode, one unit per latent frame.
    Decode,
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::EncodeText => "encode_text",
            Stage::EncodeImage => "encode_image",
            Stage::EncodeCondition => "encode_condition",
            Stage::Denoise => "denoise",
            Stage::Decode => "decode",
        }
    }
}

/// A cancellation flag shared between the caller (a Ctrl-C handler, a UI) and the generation, which
/// checks it between units of work (each denoising step, each decoded chunk) and then returns a report
/// marked cancelled. Clones share the flag.
#[derive(Clone, Debug, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    pub fn new() -> CancelToken {
        CancelToken::default()
    }

    /// From a flag the caller already owns (e.g. one a signal handler sets).
    pub fn from_flag(flag: Arc<AtomicBool>) -> CancelToken {
        CancelToken(flag)
    }

    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// The shared flag (for a signal handler).
    pub fn flag(&self) -> Arc<AtomicBool> {
        self.0.clone()
    }
}

/// The caller's hooks; every method has a no-op default.
pub trait Callbacks {
    /// `done` of `total` units of `stage` finished (0 of N when the stage starts).
    fn progress(&mut self, _stage: Stage, _done: usize, _total: usize) {}

    /// The device plan a stage runs under, as `wan plan` prints it.
    fn plan(&mut self, _stage: Stage, _plan: &str) {}

    /// The latents (fp32, (1, 16, T, h, w), on the device) after denoising step `step`; an error stops
    /// the generation with that error.
    fn step_end(&mut self, _step: usize, _latents: &Tensor) -> Result<()> {
        Ok(())
    }
}

/// No hooks.
pub struct NoCallbacks;

impl Callbacks for NoCallbacks {}
