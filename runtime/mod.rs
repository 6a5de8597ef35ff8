//! The runtime: GPU layer, kernel registry, tensors, op launchers and weight loading.

pub mod dtype;
pub mod error;
pub mod weights;

pub use dtype::DType;
pub use error::{Error, Result};
