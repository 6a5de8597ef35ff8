//! The Wan2.1 pipelines (diffusers `pipelines/wan/pipeline_wan.py`, `pipeline_wan_i2v.py`) on the
//! runtime: seeded initial noise, model folders as users have them, the checked generation request,
//! and [`Pipeline`]: text-to-video and image-to-video end to end.
//!
//! ```no_run
//! use wanrt_models::pipeline::{CancelToken, CollectFrames, Extras, NoCallbacks, Pipeline, PipelineOptions};
//! use wanrt_models::wan::run::OffloadChoice;
//! use wanrt_runtime::offload::Budget;
//!
//! // Load once: configs read, models declared, every checkpoint tensor checked; no GPU yet.
//! let options = PipelineOptions {
//!     offload: OffloadChoice { budget: Budget::Bytes(12 << 30), ..OffloadChoice::default() },
//!     ..PipelineOptions::default()
//! };
//! let pipe = Pipeline::open("Wan2.1-T2V-1.3B-Diffusers".as_ref(), options)?;
//! // Generate many times.
//! for (i, prompt) in ["a red fox in the snow", "a lighthouse at dusk"].iter().enumerate() {
//!     let mut req = pipe.request(*prompt);
//!     req.seed = Some(i as u64);
//!     req.steps = 30;
//!     let mut frames = CollectFrames::new(req.frames, req.height, req.width);
//!     let report = pipe.generate(&req, &Extras::default(), &mut frames, &mut NoCallbacks, &CancelToken::new())?;
//!     println!("{} frames in {:.1} s", frames.received(), report.total_s);
//! }
//! # Ok::<(), wanrt_runtime::Error>(())
//! ```

mod avx_mathfun;
pub mod cfg;
pub mod components;
mod denoise;
#[cfg(feature = "hub-download")]
pub mod download;
pub mod embeds;
mod encode;
pub mod folder;
mod generate;
pub mod i2v;
pub mod noise;
pub mod output;
mod load;
pub mod progress;
pub mod report;
pub mod request;
pub mod stages;

pub use components::Components;
pub use denoise::scheduler_spec;
pub use embeds::Embeddings;
pub use encode::encode_i2v_condition;
pub use folder::{ModelFolder, PipelineKind};
pub use generate::{device, load_request_image, Extras};
pub use noise::TorchGenerator;
pub use output::{CollectFrames, FrameSink};
pub use load::{CfgBatch, Pipeline, PipelineOptions};
pub use progress::{Callbacks, CancelToken, NoCallbacks, Stage};
pub use report::{GenerateReport, StageReport};
pub use request::{GenerateRequest, ModelDefaults, SchedulerChoice, Tier, WAN_NEGATIVE_PROMPT};
pub use stages::StagePlans;
