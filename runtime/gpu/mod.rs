//! The GPU layer: the only module with `unsafe` CUDA calls. Everything above it is safe Rust.
//!
//! The raw entry points that trust their caller are `unsafe fn`s with their contract written:
//! [`Device::launch`] (a kernel with a free-form argument list) and [`BlasLt::matmul_raw`] (a GEMM over
//! raw addresses). Their safe wrappers take tensors: the typed kernel launchers of [`kernels`]
//! (crate-private, called by the checked ops of `runtime::ops`) and [`BlasLt::matmul`].
//!
//! Built on cudarc's thin `result`/`sys` levels rather than its safe layer, so that streams, events and
//! memory are explicit: no implicit per-buffer event tracking, every cross-stream dependency is an
//! [`Event`] recorded on one stream and waited on by another.

mod blas;
mod device;
pub mod kernels;
mod launch;
mod memory;
mod nccl;
mod nvrtc;
pub(crate) mod params;
pub(crate) mod params_conv;
mod pinned;
mod stream;
mod tensor_map;

pub use blas::{BlasLt, GemmDesc, GemmEpilogue};
pub use device::{Arch, Device};
pub(crate) use launch::Module;
pub use launch::{Function, KernelArgs, LaunchConfig};
pub use memory::{DeviceBuffer, MemoryStats};
pub use nccl::{nccl_available, Comm, NcclId};
pub use nvrtc::{nvrtc_available, nvrtc_compile, nvrtc_supported_archs, nvrtc_version, CompileOutput};
pub use pinned::{PinnedBuffer, PinnedPool};
pub use stream::{Event, Stream};
pub use tensor_map::{Swizzle, TensorMap, TiledMap};

use cudarc::driver::sys::CUresult;

use crate::{Error, Result};

/// Turns a driver status into an error naming the call.
pub(crate) fn check(call: &'static str, status: CUresult) -> Result<()> {
    if status == CUresult::CUDA_SUCCESS {
        return Ok(());
    }
    // SAFETY: cuGetErrorString writes a pointer to a static string (or leaves it null).
    let msg = unsafe {
        let mut p: *const std::ffi::c_char = std::ptr::null();
        cudarc::driver::sys::cuGetErrorString(status, &mut p);
        if p.is_null() {
            format!("{status:?}")
        } else {
            format!("{:?}: {}", status, std::ffi::CStr::from_ptr(p).to_string_lossy())
        }
    };
    Err(Error::Cuda { call, msg })
}

/// Whether the CUDA driver library can be loaded on this machine (it is loaded at run time, so the
/// crate builds and its CPU tests run without CUDA).
pub fn driver_available() -> bool {
    // SAFETY: only probes whether the shared library can be dlopen'ed; calls nothing in it.
    unsafe { cudarc::driver::sys::is_culib_present() }
}
