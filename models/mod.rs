//! Wan2.1 models on the runtime: the transformer (T2V and I2V), its configuration, and the
//! flow-matching schedulers.

pub mod checkpoint;
pub mod clip;
pub mod nn;
pub mod pipeline;
pub mod schedulers;
pub mod umt5;
pub mod vae;
pub mod video;
pub mod wan;
