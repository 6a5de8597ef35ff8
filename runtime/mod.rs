//! The runtime: GPU layer, kernel registry, tensors, op launchers and weight loading.

pub mod arena;
pub mod dist;
pub mod dtype;
pub mod error;
pub mod gpu;
pub mod offload;
pub mod ops;
pub mod registry;
pub mod settings;
pub mod tensor;
pub mod weights;

pub use dtype::DType;
pub use error::{Error, Result};
pub use gpu::Device;
pub use tensor::Tensor;
