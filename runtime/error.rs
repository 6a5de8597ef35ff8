//! One error type for the runtime and the models, each variant carrying the context needed to act
//! on it (which call, which tensor, which file, which shape).

use std::path::PathBuf;

use crate::DType;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No usable CUDA driver or device; GPU tests skip on this, the CLI reports it.
    #[error("no CUDA device available: {0}")]
    NoDevice(String),

    /// A CUDA driver/runtime-library call failed.
    #[error("CUDA call {call} failed: {msg}")]
    Cuda { call: &'static str, msg: String },

    #[error("cuBLASLt call {call} failed: {msg}")]
    Cublas { call: &'static str, msg: String },

    /// NVRTC rejected a kernel source; `log` is NVRTC's program log.
    #[error("NVRTC failed to compile kernels/{file} for {arch}: {msg}\n{log}")]
    Compile { file: String, arch: String, msg: String, log: String },

    #[error("kernel {0} is not in the registry")]
    UnknownKernel(String),

    #[error("device memory budget exceeded: {what} asks for {requested} bytes, {in_use} of the {budget}-byte budget are in use")]
    OutOfBudget { what: String, requested: u64, in_use: u64, budget: u64 },

    #[error("{op}: {name} has shape {got:?}, expected {expected}")]
    Shape { op: &'static str, name: String, expected: String, got: Vec<usize> },

    #[error("{op}: {name} has dtype {got}, expected {expected}")]
    DType { op: &'static str, name: String, expected: String, got: DType },

    #[error("{0}")]
    Invalid(String),

    #[error("{path}: {msg}")]
    File { path: PathBuf, msg: String },

    #[error("{path}: tensor {tensor}: {msg}")]
    Tensor { path: PathBuf, tensor: String, msg: String },

    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

impl Error {
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::Invalid(msg.into())
    }
}
