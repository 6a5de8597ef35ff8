//! Wan2.1 as diffusers implements it (`WanTransformer3DModel`); see `shared/docs/wan-spec.md` §1.

pub mod block;
pub mod cli_offload;
pub mod config;
pub mod embeddings;
pub mod io;
pub mod load;
pub mod transformer;
pub mod weights;

pub use config::{Precision, WanConfig};
pub use transformer::{InputShape, Inputs, WanTransformer3DModel};
