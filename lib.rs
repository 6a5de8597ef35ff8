//! wanrt: a small CUDA tensor runtime and the Wan2.1 video diffusion models written against it.
//!
//! `runtime` knows nothing about Wan (checked by `tests/layout.rs`); `models` builds on it.

#[path = "runtime/mod.rs"]
pub mod runtime;

#[path = "models/mod.rs"]
pub mod models;

pub use runtime::{DType, Device, Error, Result, Tensor};
