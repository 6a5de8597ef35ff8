//! Wan2.1 as diffusers implements it (`WanTransformer3DModel`); see `shared/docs/wan-spec.md` §1.

pub mod run;
pub mod config;
pub mod io;
pub mod load;
pub mod offload;
pub mod transformer;
pub mod weights;

pub use config::{Precision, WanConfig};
