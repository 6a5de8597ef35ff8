//! What the Wan pipelines (diffusers `pipelines/wan/pipeline_wan.py`, `pipeline_wan_i2v.py`) do around
//! the models: seeded initial noise, model folders as users have them, and the checked generation request.

mod avx_mathfun;
#[cfg(feature = "hub-download")]
pub mod download;
pub mod folder;
pub mod noise;
pub mod request;

pub use folder::{ModelFolder, PipelineKind};
pub use noise::TorchGenerator;
pub use request::{GenerateRequest, ModelDefaults, SchedulerChoice, Tier, WAN_NEGATIVE_PROMPT};
