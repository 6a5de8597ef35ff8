//! Checkpoint weights: safetensors files (single or sharded) mapped with memmap2, validated up front,
//! looked up per tensor with a shape check and converted to the compute dtype at load.
//!
//! - [`header`]: the pure header parser ([`parse_header`]), also the fuzz target's entry point.
//! - [`safetensors`]: one mapped file ([`SafeTensorsFile`]).
//! - [`index`]: finding the checkpoint in a folder; a sharded checkpoint's index ([`parse_index`]).
//! - [`store`]: a model folder, single file or `*.safetensors.index.json` ([`WeightStore`]).
//! - [`mod@convert`]: storage dtype -> compute dtype, split across cores for large tensors.
//! - [`mod@write`]: writes valid safetensors files atomically.

pub mod convert;
pub mod dtype;
pub mod header;
pub mod index;
pub mod safetensors;
pub mod store;
pub mod write;

pub use convert::convert;
pub use dtype::StorageDType;
pub use header::{parse_header, Header, TensorInfo};
pub use index::parse_index;
pub use safetensors::SafeTensorsFile;
pub use store::{TensorRef, WeightStore};
pub use write::{serialize_safetensors, write_safetensors};
