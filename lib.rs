//! wanrt: a small CUDA tensor runtime and the Wan2.1 video diffusion models written against it.
//!
//! Two crates of one workspace, re-exported here: [`runtime`] (`runtime/`, the `wanrt-runtime` crate)
//! knows nothing about Wan, and the compiler holds it to that; [`models`] (`models/`, `wanrt-models`)
//! builds on it.

pub use wanrt_models as models;
pub use wanrt_runtime as runtime;

pub use runtime::{DType, Device, Error, Result, Tensor};
