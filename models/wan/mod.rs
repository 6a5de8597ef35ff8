//! Wan2.1 as diffusers implements it (`WanTransformer3DModel`, diffusers transformer_wan.py).

pub mod block;
pub mod config;
pub mod embeddings;
pub mod io;
pub mod load;
pub mod parallel;
pub mod run;
pub mod transformer;
pub mod weights;

pub use config::{Precision, WanConfig};
pub use transformer::{InputShape, Inputs, WanTransformer3DModel};
