//! Loaded modules, kernel functions and launches.

use std::ffi::CString;
use std::sync::Arc;

use cudarc::driver::sys;

use super::check;
use super::device::{Context, Device};
use super::stream::Stream;
use crate::{Error, Result};

/// A module loaded from a CUBIN or PTX image; unloaded with the last function handle.
pub(crate) struct Module {
    raw: sys::CUmodule,
    ctx: Arc<Context>,
    name: String,
}

// SAFETY: module handles are context-wide; used only with the context bound.
unsafe impl Send for Module {}
// SAFETY: as above.
unsafe impl Sync for Module {}

impl Drop for Module {
    fn drop(&mut self) {
        if self.ctx.bind().is_ok() {
            // SAFETY: no Function of this module outlives it (they hold an Arc to it).
            unsafe {
                sys::cuModuleUnload(self.raw);
            }
        }
    }
}

/// A kernel entry point, keeping its module loaded.
#[derive(Clone)]
pub struct Function {
    raw: sys::CUfunction,
    module: Arc<Module>,
    name: String,
}

// SAFETY: function handles are context-wide; launches bind the context.
unsafe impl Send for Function {}
// SAFETY: as above.
unsafe impl Sync for Function {}

impl Function {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Lets the kernel use more than 48 KiB of dynamic shared memory.
    pub fn set_max_dynamic_shared_memory(&self, bytes: u32) -> Result<()> {
        self.module.ctx.bind()?;
        // SAFETY: valid function handle and attribute.
        check("cuFuncSetAttribute", unsafe {
            sys::cuFuncSetAttribute(
                self.raw,
                sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                bytes as i32,
            )
        })
    }
}

/// Grid, block and dynamic shared memory of one launch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LaunchConfig {
    pub grid: (u32, u32, u32),
    pub block: (u32, u32, u32),
    pub shared_mem: u32,
}

impl LaunchConfig {
    /// One thread per element in blocks of `block` threads, grid capped so kernels grid-stride.
    pub fn elementwise(n: u64, block: u32) -> LaunchConfig {
        let blocks = n.div_ceil(block as u64).clamp(1, 65_535 * 16) as u32;
        LaunchConfig { grid: (blocks, 1, 1), block: (block, 1, 1), shared_mem: 0 }
    }
}

/// Kernel arguments, each stored in its own 8-byte-aligned slot (structs take several slots).
///
/// Building a list is harmless; launching one is [`Device::launch`], which is `unsafe` because
/// nothing here ties the list to the kernel's parameters or the addresses to live memory. The typed
/// launchers of the kernel table (`gpu::kernels`) build lists from tensors and declared parameters.
#[derive(Default)]
pub struct KernelArgs {
    slots: Vec<Vec<u64>>,
}

impl KernelArgs {
    pub fn new() -> KernelArgs {
        KernelArgs::default()
    }
    pub fn ptr(&mut self, device_ptr: u64) -> &mut Self {
        self.slots.push(vec![device_ptr]);
        self
    }
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.slots.push(vec![v]);
        self
    }
    pub fn i64(&mut self, v: i64) -> &mut Self {
        self.slots.push(vec![v as u64]);
        self
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.slots.push(vec![v as u64]);
        self
    }
    pub fn i32(&mut self, v: i32) -> &mut Self {
        self.slots.push(vec![v as u32 as u64]);
        self
    }
    pub fn f32(&mut self, v: f32) -> &mut Self {
        self.slots.push(vec![v.to_bits() as u64]);
        self
    }
    /// A plain-old-data struct passed by value (a kernel's parameter block).
    pub fn pod<T: bytemuck::Pod>(&mut self, v: &T) -> &mut Self {
        self.bytes(bytemuck::bytes_of(v))
    }
    /// A parameter passed by value as its bytes.
    pub fn bytes(&mut self, bytes: &[u8]) -> &mut Self {
        let mut slot = vec![0u64; bytes.len().div_ceil(8).max(1)];
        bytemuck::cast_slice_mut::<u64, u8>(&mut slot)[..bytes.len()].copy_from_slice(bytes);
        self.slots.push(slot);
        self
    }
}

impl Device {
    /// Loads a CUBIN or NUL-terminated PTX image as a module.
    pub(crate) fn load_module(&self, name: &str, image: &[u8]) -> Result<Arc<Module>> {
        self.ctx.bind()?;
        let mut raw = std::ptr::null_mut();
        // SAFETY: `image` is a complete CUBIN/PTX image (PTX images are NUL-terminated by the registry).
        check("cuModuleLoadData", unsafe { sys::cuModuleLoadData(&mut raw, image.as_ptr() as *const _) })
            .map_err(|e| Error::Cuda { call: "cuModuleLoadData", msg: format!("{e} (module {name})") })?;
        Ok(Arc::new(Module { raw, ctx: self.ctx.clone(), name: name.to_string() }))
    }

    pub(crate) fn get_function(&self, module: &Arc<Module>, name: &str) -> Result<Function> {
        self.ctx.bind()?;
        let cname = CString::new(name).map_err(|_| Error::UnknownKernel(name.to_string()))?;
        let mut raw = std::ptr::null_mut();
        // SAFETY: live module; NUL-terminated name; out-pointer valid.
        let status = unsafe { sys::cuModuleGetFunction(&mut raw, module.raw, cname.as_ptr()) };
        if status == sys::CUresult::CUDA_ERROR_NOT_FOUND {
            return Err(Error::UnknownKernel(format!("{}::{name}", module.name)));
        }
        check("cuModuleGetFunction", status)?;
        Ok(Function { raw, module: module.clone(), name: name.to_string() })
    }

    /// Queues a kernel on `stream`: the raw launch under the typed launchers of `gpu::kernels`.
    ///
    /// # Safety
    ///
    /// - `args` holds exactly the kernel's parameters, in order, each of the kernel's size (a shorter
    ///   slot makes the driver read past it; a wrong type is reinterpreted by the kernel);
    /// - every device address in `args` points into live device memory of this device, and stays
    ///   live until the kernel has run (memory freed stream-ordered on `stream` or on the compute
    ///   stream after this call is fine), with room for every element the kernel reads or writes
    ///   given the other arguments and `cfg` (grid-striding kernels cover `cfg`'s whole grid);
    /// - memory the kernel writes is not read or written by other streams or the host while it runs;
    /// - `f` and `stream` belong to this device.
    pub unsafe fn launch(&self, f: &Function, cfg: LaunchConfig, stream: &Stream, args: &KernelArgs) -> Result<()> {
        if !Arc::ptr_eq(&f.module.ctx, &self.ctx) || !Arc::ptr_eq(&stream.ctx, &self.ctx) {
            return Err(Error::invalid(format!("launch of {}: the kernel or the stream belongs to another device", f.name)));
        }
        self.ctx.bind()?;
        let mut ptrs: Vec<*mut std::ffi::c_void> =
            args.slots.iter().map(|s| s.as_ptr() as *mut std::ffi::c_void).collect();
        // SAFETY: each pointer addresses a live slot holding one argument by value; the driver copies
        // them before returning. Argument/parameter agreement and live addresses are the caller's
        // contract (see # Safety).
        let status = unsafe {
            sys::cuLaunchKernel(
                f.raw,
                cfg.grid.0,
                cfg.grid.1,
                cfg.grid.2,
                cfg.block.0,
                cfg.block.1,
                cfg.block.2,
                cfg.shared_mem,
                stream.raw,
                ptrs.as_mut_ptr(),
                std::ptr::null_mut(),
            )
        };
        check("cuLaunchKernel", status)
            .map_err(|e| Error::Cuda { call: "cuLaunchKernel", msg: format!("{e} (kernel {}, {cfg:?})", f.name) })
    }
}
