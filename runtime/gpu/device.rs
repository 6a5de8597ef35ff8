//! Device context, its two streams, its memory pool and its cuBLASLt handle.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use cudarc::driver::sys;
use parking_lot::Mutex;

use super::blas::BlasLt;
use super::memory::Pool;
use super::pinned::PinnedPool;
use super::stream::{Event, Stream};
use super::{check, driver_available};
use crate::{Error, Result};

/// Compute capability. `sm_90` parts get the `a` (arch-specific) target so wgmma can be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Arch {
    pub major: u32,
    pub minor: u32,
}

impl Arch {
    pub const fn new(major: u32, minor: u32) -> Arch {
        Arch { major, minor }
    }

    /// The NVRTC `--gpu-architecture` value producing SASS for this arch (`sm_90a` on Hopper).
    pub fn sm_target(self) -> String {
        let a = if self.major == 9 && self.minor == 0 { "a" } else { "" };
        format!("sm_{}{}{}", self.major, self.minor, a)
    }

    pub fn number(self) -> u32 {
        self.major * 10 + self.minor
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.sm_target())
    }
}

/// The primary context of one device. Every driver call binds it to the calling thread first.
pub(crate) struct Context {
    pub(crate) raw: sys::CUcontext,
    pub(crate) dev: sys::CUdevice,
}

// SAFETY: a CUcontext is a process-wide handle; binding it on several threads is allowed by CUDA.
unsafe impl Send for Context {}
// SAFETY: as above.
unsafe impl Sync for Context {}

thread_local! {
    static CURRENT: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

impl Context {
    pub(crate) fn bind(&self) -> Result<()> {
        let raw = self.raw as usize;
        if CURRENT.with(|c| c.get()) == raw {
            return Ok(());
        }
        // SAFETY: `raw` is a retained primary context, valid for the process lifetime.
        check("cuCtxSetCurrent", unsafe { sys::cuCtxSetCurrent(self.raw) })?;
        CURRENT.with(|c| c.set(raw));
        Ok(())
    }
}

/// One GPU: its context, the compute and copy streams, the device memory pool, the pinned host
/// pool and the cuBLASLt handle (its loaded kernels are the registry's). Shared as `Arc<Device>`; one
/// per ordinal per process (see [`Device::get`]).
pub struct Device {
    pub(crate) ctx: Arc<Context>,
    ordinal: usize,
    arch: Arch,
    name: String,
    sm_count: u32,
    total_mem: u64,
    max_smem_optin: u32,
    compute: Stream,
    copy: Stream,
    pub(crate) pool: Pool,
    pinned: Arc<PinnedPool>,
    blas: OnceLock<Result<BlasLt, String>>,
}

static DEVICES: OnceLock<Mutex<HashMap<usize, Arc<Device>>>> = OnceLock::new();

impl Device {
    /// The device with this ordinal, opened once per process. `Error::NoDevice` when there is no
    /// driver, no device, or the ordinal is out of range; `Error::Invalid` when an environment switch
    /// is malformed ([`crate::settings::Settings::check`]), before anything touches the driver.
    pub fn get(ordinal: usize) -> Result<Arc<Device>> {
        crate::settings::settings().check()?;
        let map = DEVICES.get_or_init(|| Mutex::new(HashMap::new()));
        let mut map = map.lock();
        if let Some(d) = map.get(&ordinal) {
            return Ok(d.clone());
        }
        let d = Arc::new(Device::open(ordinal)?);
        map.insert(ordinal, d.clone());
        Ok(d)
    }

    /// Number of CUDA devices (0 when the driver is missing or fails to initialize).
    pub fn count() -> usize {
        if !driver_available() {
            return 0;
        }
        // SAFETY: the driver library is present; cuInit and cuDeviceGetCount take plain out-pointers.
        unsafe {
            if sys::cuInit(0) != sys::CUresult::CUDA_SUCCESS {
                return 0;
            }
            let mut n = 0;
            if sys::cuDeviceGetCount(&mut n) != sys::CUresult::CUDA_SUCCESS {
                return 0;
            }
            n.max(0) as usize
        }
    }

    fn open(ordinal: usize) -> Result<Device> {
        if !driver_available() {
            return Err(Error::NoDevice("the CUDA driver library (libcuda.so.1) is not installed".into()));
        }
        // SAFETY: the driver library is loaded; cuInit has no preconditions.
        if let Err(e) = check("cuInit", unsafe { sys::cuInit(0) }) {
            return Err(Error::NoDevice(e.to_string()));
        }
        let n = Device::count();
        if ordinal >= n {
            return Err(Error::NoDevice(format!("device {ordinal} requested, {n} present")));
        }
        let mut dev = 0;
        // SAFETY: ordinal < device count; out-pointer valid.
        check("cuDeviceGet", unsafe { sys::cuDeviceGet(&mut dev, ordinal as i32) })?;
        let mut raw = std::ptr::null_mut();
        // SAFETY: `dev` is a valid device; the primary context is retained for the process lifetime.
        check("cuDevicePrimaryCtxRetain", unsafe { sys::cuDevicePrimaryCtxRetain(&mut raw, dev) })?;
        let ctx = Arc::new(Context { raw, dev });
        ctx.bind()?;
        let attr = |a: sys::CUdevice_attribute| -> Result<i32> {
            let mut v = 0;
            // SAFETY: valid device and attribute enum; out-pointer valid.
            check("cuDeviceGetAttribute", unsafe { sys::cuDeviceGetAttribute(&mut v, a, dev) })?;
            Ok(v)
        };
        use sys::CUdevice_attribute as A;
        let arch = Arch::new(
            attr(A::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)? as u32,
            attr(A::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)? as u32,
        );
        if arch.major < 8 {
            return Err(Error::NoDevice(format!(
                "device {ordinal} is {arch}; wanrt needs compute capability 8.0 or newer (Ampere, Ada, Hopper)"
            )));
        }
        let sm_count = attr(A::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)? as u32;
        let max_smem_optin = attr(A::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN)? as u32;
        let mut name_buf = [0i8; 256];
        // SAFETY: buffer of the given length.
        check("cuDeviceGetName", unsafe { sys::cuDeviceGetName(name_buf.as_mut_ptr(), 256, dev) })?;
        // SAFETY: the driver wrote a NUL-terminated string into the buffer.
        let name = unsafe { std::ffi::CStr::from_ptr(name_buf.as_ptr()) }.to_string_lossy().into_owned();
        let mut total = 0usize;
        // SAFETY: valid device, out-pointer valid.
        check("cuDeviceTotalMem", unsafe { sys::cuDeviceTotalMem_v2(&mut total, dev) })?;
        let compute = Stream::new(ctx.clone(), "compute")?;
        let copy = Stream::new(ctx.clone(), "copy")?;
        let pool = Pool::new(ctx.clone())?;
        let pinned = Arc::new(PinnedPool::new(ctx.clone()));
        Ok(Device {
            ctx,
            ordinal,
            arch,
            name,
            sm_count,
            total_mem: total as u64,
            max_smem_optin,
            compute,
            copy,
            pool,
            pinned,
            blas: OnceLock::new(),
        })
    }

    pub fn ordinal(&self) -> usize {
        self.ordinal
    }
    pub fn arch(&self) -> Arch {
        self.arch
    }
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn sm_count(&self) -> u32 {
        self.sm_count
    }
    pub fn total_memory(&self) -> u64 {
        self.total_mem
    }
    /// Largest dynamic shared memory a block may opt into.
    pub fn max_shared_memory_optin(&self) -> u32 {
        self.max_smem_optin
    }

    /// The stream all compute runs on.
    pub fn compute(&self) -> &Stream {
        &self.compute
    }
    /// The stream host-to-device weight uploads run on.
    pub fn copy(&self) -> &Stream {
        &self.copy
    }

    /// A new fencing event (no timing), not yet recorded.
    pub fn event(&self) -> Result<Event> {
        Event::new(&self.ctx, false)
    }

    pub fn pinned(&self) -> &Arc<PinnedPool> {
        &self.pinned
    }

    /// The cuBLASLt handle, created on first use.
    pub fn blas(&self) -> Result<&BlasLt> {
        self.blas
            .get_or_init(|| BlasLt::new(self.ctx.clone(), &self.compute).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| Error::Cublas { call: "cublasLtCreate", msg: e.clone() })
    }

    /// Free and total device memory as the driver reports them.
    pub fn mem_info(&self) -> Result<(u64, u64)> {
        self.ctx.bind()?;
        let (mut free, mut total) = (0usize, 0usize);
        // SAFETY: out-pointers valid; context bound.
        check("cuMemGetInfo", unsafe { sys::cuMemGetInfo_v2(&mut free, &mut total) })?;
        Ok((free as u64, total as u64))
    }

    /// Blocks until all work on every stream of this device is done.
    pub fn synchronize(&self) -> Result<()> {
        self.ctx.bind()?;
        // SAFETY: context bound.
        check("cuCtxSynchronize", unsafe { sys::cuCtxSynchronize() })
    }
}
