//! Wan2.1 models on the runtime: the transformer (T2V and I2V) and its configuration.

pub mod wan;
