//! Device memory: a stream-ordered pool with accounting and an optional budget.
//!
//! Allocations come from the device's default CUDA memory pool on the compute stream
//! (`cuMemAllocFromPoolAsync`) and are freed on the compute stream when the last owner drops them
//! (`cuMemFreeAsync`), so reuse is ordered after every kernel already queued there. The driver keeps
//! freed memory cached (release threshold = max); [`Device::release_cached`] hands it back.
//!
//! Buffers that another stream touches (the offload engine's slots) must not be dropped before that
//! stream's work is fenced into the compute stream: the owner of such a buffer holds the event.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use cudarc::driver::sys;
use parking_lot::Mutex;

use super::check;
use super::device::{Context, Device};
use crate::{Error, Result};

const ALIGN: u64 = 256;

/// Bytes in use, the peak since the last reset, bytes the driver holds cached, and the budget.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryStats {
    pub in_use: u64,
    pub peak: u64,
    pub reserved: u64,
    pub budget: Option<u64>,
}

pub(crate) struct Pool {
    ctx: Arc<Context>,
    raw: sys::CUmemoryPool,
    in_use: AtomicU64,
    peak: AtomicU64,
    budget: Mutex<Option<u64>>,
}

// SAFETY: the pool handle is process-wide; accounting uses atomics and a mutex.
unsafe impl Send for Pool {}
// SAFETY: as above.
unsafe impl Sync for Pool {}

impl Pool {
    pub(crate) fn new(ctx: Arc<Context>) -> Result<Pool> {
        ctx.bind()?;
        let mut raw = std::ptr::null_mut();
        // SAFETY: valid device; out-pointer valid.
        check("cuDeviceGetDefaultMemPool", unsafe { sys::cuDeviceGetDefaultMemPool(&mut raw, ctx.dev) })?;
        let mut threshold: u64 = u64::MAX;
        // SAFETY: the attribute takes a cuuint64_t by pointer.
        check("cuMemPoolSetAttribute", unsafe {
            sys::cuMemPoolSetAttribute(
                raw,
                sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD,
                &mut threshold as *mut u64 as *mut std::ffi::c_void,
            )
        })?;
        Ok(Pool { ctx, raw, in_use: AtomicU64::new(0), peak: AtomicU64::new(0), budget: Mutex::new(None) })
    }

    fn reserved(&self) -> u64 {
        let mut v: u64 = 0;
        // SAFETY: the attribute writes a cuuint64_t.
        let ok = unsafe {
            sys::cuMemPoolGetAttribute(
                self.raw,
                sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT,
                &mut v as *mut u64 as *mut std::ffi::c_void,
            )
        };
        if ok == sys::CUresult::CUDA_SUCCESS {
            v
        } else {
            0
        }
    }
}

/// A device allocation, freed (stream-ordered, on the compute stream) when dropped.
pub struct DeviceBuffer {
    ptr: sys::CUdeviceptr,
    bytes: u64,
    charged: u64,
    dev: Arc<Device>,
    /// Recorded after the last copy queued on a stream other than the compute stream that touches
    /// this buffer (an upload on the copy stream). The free waits for it: without it, a buffer dropped
    /// while its upload is still queued would be handed to the next compute-stream allocation while
    /// the DMA engine still writes it.
    side: parking_lot::Mutex<Option<super::Event>>,
}

impl DeviceBuffer {
    /// Notes that work touching this buffer was just queued on `stream`: for a stream other than the
    /// compute stream an event is recorded there, and the buffer's free will wait for it.
    pub(crate) fn used_on(&self, stream: &super::Stream) -> Result<()> {
        if stream.raw == self.dev.compute().raw || self.ptr == 0 {
            return Ok(());
        }
        let mut side = self.side.lock();
        if side.is_none() {
            *side = Some(super::Event::new(&self.dev.ctx, false)?);
        }
        match side.as_ref() {
            Some(e) => e.record(stream),
            None => Ok(()),
        }
    }

    pub fn ptr(&self) -> u64 {
        self.ptr
    }
    pub fn len(&self) -> u64 {
        self.bytes
    }
    pub fn is_empty(&self) -> bool {
        self.bytes == 0
    }
    pub fn device(&self) -> &Arc<Device> {
        &self.dev
    }
}

impl std::fmt::Debug for DeviceBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DeviceBuffer({:#x}, {} bytes)", self.ptr, self.bytes)
    }
}

impl Drop for DeviceBuffer {
    fn drop(&mut self) {
        let pool = &self.dev.pool;
        pool.in_use.fetch_sub(self.charged, Ordering::Relaxed);
        if self.ptr != 0 && pool.ctx.bind().is_ok() {
            if let Some(e) = self.side.get_mut().take() {
                // A failed wait leaves only the host to order the free after the side stream's copy.
                if self.dev.compute().wait(&e).is_err() {
                    let _ = e.synchronize();
                }
            }
            // SAFETY: `ptr` came from cuMemAllocFromPoolAsync; freeing on the compute stream orders the
            // reuse after all compute work already queued that may read it, and (the wait above) after
            // the last copy another stream queued on it.
            unsafe {
                sys::cuMemFreeAsync(self.ptr, self.dev.compute().raw);
            }
        }
    }
}

impl Device {
    /// Allocates `bytes` of device memory, usable by work queued on the compute stream from now on.
    /// `what` names the allocation in the budget error.
    pub fn alloc(self: &Arc<Self>, bytes: u64, what: &str) -> Result<DeviceBuffer> {
        let pool = &self.pool;
        let charged = bytes.div_ceil(ALIGN) * ALIGN;
        {
            let budget = pool.budget.lock();
            let now = pool.in_use.load(Ordering::Relaxed);
            if let Some(b) = *budget {
                if now + charged > b {
                    return Err(Error::OutOfBudget { what: what.to_string(), requested: bytes, in_use: now, budget: b });
                }
            }
            let after = pool.in_use.fetch_add(charged, Ordering::Relaxed) + charged;
            pool.peak.fetch_max(after, Ordering::Relaxed);
        }
        if bytes == 0 {
            return Ok(DeviceBuffer { ptr: 0, bytes: 0, charged, dev: self.clone(), side: parking_lot::Mutex::new(None) });
        }
        pool.ctx.bind()?;
        let mut ptr = 0;
        // SAFETY: pool and stream belong to the bound context; out-pointer valid.
        let status = unsafe { sys::cuMemAllocFromPoolAsync(&mut ptr, bytes as usize, pool.raw, self.compute().raw) };
        if let Err(e) = check("cuMemAllocFromPoolAsync", status) {
            pool.in_use.fetch_sub(charged, Ordering::Relaxed);
            let (free, total) = self.mem_info().unwrap_or((0, 0));
            return Err(Error::Cuda {
                call: "cuMemAllocFromPoolAsync",
                msg: format!("{e}; allocating {bytes} bytes for {what} ({free} of {total} bytes free on the device)"),
            });
        }
        Ok(DeviceBuffer { ptr, bytes, charged, dev: self.clone(), side: parking_lot::Mutex::new(None) })
    }

    /// Caps device memory in use by this runtime; `None` removes the cap. Allocations past it fail
    /// with [`Error::OutOfBudget`] naming the request.
    pub fn set_budget(&self, budget: Option<u64>) {
        *self.pool.budget.lock() = budget;
    }

    pub fn memory_stats(&self) -> MemoryStats {
        MemoryStats {
            in_use: self.pool.in_use.load(Ordering::Relaxed),
            peak: self.pool.peak.load(Ordering::Relaxed),
            reserved: self.pool.reserved(),
            budget: *self.pool.budget.lock(),
        }
    }

    /// Restarts peak tracking from the bytes in use now.
    pub fn reset_peak(&self) {
        self.pool.peak.store(self.pool.in_use.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    /// Waits for the compute stream, then returns all cached free memory to the driver.
    pub fn release_cached(&self) -> Result<()> {
        self.compute().synchronize()?;
        // SAFETY: the pool belongs to the bound context (bound by synchronize).
        check("cuMemPoolTrimTo", unsafe { sys::cuMemPoolTrimTo(self.pool.raw, 0) })
    }

    /// Queues a byte fill of `len` bytes at `ptr` on `stream` (bounds are the caller's: see Tensor).
    pub(crate) fn memset_async(&self, ptr: u64, value: u8, len: u64, stream: &super::Stream) -> Result<()> {
        self.ctx.bind()?;
        // SAFETY: callers pass a range inside a live DeviceBuffer (checked by Tensor's bounds).
        check("cuMemsetD8Async", unsafe { sys::cuMemsetD8Async(ptr, value, len as usize, stream.raw) })
    }

    /// Copies host bytes to device memory on `stream`; `src` may be reused as soon as this returns.
    /// For pageable `src` the driver returns once the bytes are staged; page-locked `src` (a pinned
    /// buffer's slice, registered pages) would be read by the DMA engine after the return, so then
    /// this waits for the copy.
    pub(crate) fn h2d_async(&self, dst: &DeviceBuffer, dst_off: u64, src: &[u8], stream: &super::Stream) -> Result<()> {
        bounds("h2d copy", dst, dst_off, src.len() as u64)?;
        if src.is_empty() {
            return Ok(());
        }
        self.ctx.bind()?;
        // SAFETY: destination range checked against the buffer; source is a live slice.
        check("cuMemcpyHtoDAsync", unsafe {
            sys::cuMemcpyHtoDAsync_v2(dst.ptr + dst_off, src.as_ptr() as *const _, src.len(), stream.raw)
        })?;
        dst.used_on(stream)?;
        if page_locked(src.as_ptr()) || page_locked(src.as_ptr().wrapping_add(src.len() - 1)) {
            stream.synchronize()?;
        }
        Ok(())
    }

    /// Copies device bytes to host memory and waits for the copy (the host slice is written when
    /// this returns).
    pub(crate) fn d2h_sync(&self, dst: &mut [u8], src: &DeviceBuffer, src_off: u64, stream: &super::Stream) -> Result<()> {
        bounds("d2h copy", src, src_off, dst.len() as u64)?;
        if dst.is_empty() {
            return Ok(());
        }
        self.ctx.bind()?;
        // SAFETY: source range checked; destination is a live exclusive slice kept until the sync below.
        check("cuMemcpyDtoHAsync", unsafe {
            sys::cuMemcpyDtoHAsync_v2(dst.as_mut_ptr() as *mut _, src.ptr + src_off, dst.len(), stream.raw)
        })?;
        stream.synchronize()
    }

    /// Device-to-device copy on `stream`.
    pub(crate) fn d2d_async(
        &self,
        dst: &DeviceBuffer,
        dst_off: u64,
        src: &DeviceBuffer,
        src_off: u64,
        len: u64,
        stream: &super::Stream,
    ) -> Result<()> {
        bounds("d2d copy (destination)", dst, dst_off, len)?;
        bounds("d2d copy (source)", src, src_off, len)?;
        if len == 0 {
            return Ok(());
        }
        self.ctx.bind()?;
        // SAFETY: both ranges checked against live buffers.
        check("cuMemcpyDtoDAsync", unsafe {
            sys::cuMemcpyDtoDAsync_v2(dst.ptr + dst_off, src.ptr + src_off, len as usize, stream.raw)
        })?;
        dst.used_on(stream)?;
        src.used_on(stream)
    }
}

impl Device {
    /// Device-to-device 2-D copy on `stream`: `rows` rows of `width` bytes, row `r` read at
    /// `src_off + r·src_pitch` and written at `dst_off + r·dst_pitch`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn d2d_2d_async(
        &self,
        dst: &DeviceBuffer,
        dst_off: u64,
        dst_pitch: u64,
        src: &DeviceBuffer,
        src_off: u64,
        src_pitch: u64,
        width: u64,
        rows: u64,
        stream: &super::Stream,
    ) -> Result<()> {
        if rows == 0 || width == 0 {
            return Ok(());
        }
        if width > dst_pitch || width > src_pitch {
            return Err(Error::invalid(format!("2-D copy: row width {width} exceeds a pitch ({src_pitch} / {dst_pitch})")));
        }
        let span = |pitch: u64| (rows - 1).checked_mul(pitch).and_then(|v| v.checked_add(width));
        let (Some(ds), Some(ss)) = (span(dst_pitch), span(src_pitch)) else {
            return Err(Error::invalid("2-D copy: extent overflows"));
        };
        bounds("2-D copy (destination)", dst, dst_off, ds)?;
        bounds("2-D copy (source)", src, src_off, ss)?;
        self.ctx.bind()?;
        let copy = sys::CUDA_MEMCPY2D {
            srcXInBytes: 0,
            srcY: 0,
            srcMemoryType: sys::CUmemorytype::CU_MEMORYTYPE_DEVICE,
            srcHost: std::ptr::null(),
            srcDevice: src.ptr + src_off,
            srcArray: std::ptr::null_mut(),
            srcPitch: src_pitch as usize,
            dstXInBytes: 0,
            dstY: 0,
            dstMemoryType: sys::CUmemorytype::CU_MEMORYTYPE_DEVICE,
            dstHost: std::ptr::null_mut(),
            dstDevice: dst.ptr + dst_off,
            dstArray: std::ptr::null_mut(),
            dstPitch: dst_pitch as usize,
            WidthInBytes: width as usize,
            Height: rows as usize,
        };
        // SAFETY: both extents (rows − 1 pitches plus one row) were checked against live buffers; the
        // descriptor lives until the call returns (the driver copies it).
        check("cuMemcpy2DAsync", unsafe { sys::cuMemcpy2DAsync_v2(&copy, stream.raw) })?;
        dst.used_on(stream)?;
        src.used_on(stream)
    }
}

/// Whether the driver knows `p` as page-locked host memory (allocated or registered with it);
/// ordinary pageable memory is unknown to it (`CUDA_ERROR_INVALID_VALUE`).
fn page_locked(p: *const u8) -> bool {
    let mut kind: u32 = 0;
    // SAFETY: the attribute writes one CUmemorytype (a 32-bit enum) into `kind`; `p` is only looked up.
    let status = unsafe {
        sys::cuPointerGetAttribute(
            &mut kind as *mut u32 as *mut std::ffi::c_void,
            sys::CUpointer_attribute::CU_POINTER_ATTRIBUTE_MEMORY_TYPE,
            p as sys::CUdeviceptr,
        )
    };
    status == sys::CUresult::CUDA_SUCCESS && kind == sys::CUmemorytype::CU_MEMORYTYPE_HOST as u32
}

pub(crate) fn bounds(what: &str, buf: &DeviceBuffer, off: u64, len: u64) -> Result<()> {
    if off.checked_add(len).is_none_or(|end| end > buf.bytes) {
        return Err(Error::invalid(format!(
            "{what}: range {off}..{} is outside the {}-byte device buffer",
            off.saturating_add(len),
            buf.bytes
        )));
    }
    Ok(())
}
