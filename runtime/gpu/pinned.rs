//! Page-locked host memory. Async H2D copies only overlap compute when the source is pinned.
//!
//! Buffers return to a per-size free list on drop and are freed to the driver only by
//! [`PinnedPool::release`] after a device synchronization, so a buffer dropped while a copy from it
//! is still in flight never has its pages unmapped under the DMA engine. Refilling a buffer while a
//! copy from it is in flight is the caller's race to fence (the offload engine waits on its events).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use cudarc::driver::sys;
use parking_lot::Mutex;

use super::check;
use super::device::{Context, Device};
use super::memory::{bounds, DeviceBuffer};
use super::stream::Stream;
use crate::{Error, Result};

struct Block {
    ptr: usize,
    len: usize,
    /// `Some` for memory the process mapped and then registered with the driver
    /// ([`PinnedPool::alloc_filled`]); `None` for `cuMemHostAlloc` memory.
    mapping: Option<memmap2::MmapMut>,
}

impl Block {
    /// Hands the pages back: unregisters and unmaps a registered block, frees a driver allocation.
    /// The caller has synchronized the device, so no copy still reads them.
    fn free(self) {
        if self.len == 0 {
            return;
        }
        match self.mapping {
            Some(map) => {
                // SAFETY: `ptr` was registered by cuMemHostRegister and is not referenced any more;
                // the mapping is dropped (unmapped) only after the driver lets go of it.
                unsafe {
                    sys::cuMemHostUnregister(self.ptr as *mut std::ffi::c_void);
                }
                drop(map);
            }
            None => {
                // SAFETY: the block came from cuMemHostAlloc and is no longer referenced.
                unsafe {
                    sys::cuMemFreeHost(self.ptr as *mut std::ffi::c_void);
                }
            }
        }
    }
}

/// `WANRT_PIN_REGISTER=0`: [`PinnedPool::alloc_filled`] pins with `cuMemHostAlloc` instead of
/// registering the process's pages.
pub const REGISTER_ENV: &str = "WANRT_PIN_REGISTER";

/// Pool of pinned host buffers keyed by (size, write-combined).
pub struct PinnedPool {
    ctx: Arc<Context>,
    free: Mutex<HashMap<(usize, bool), Vec<Block>>>,
    held: AtomicU64,
}

impl PinnedPool {
    pub(crate) fn new(ctx: Arc<Context>) -> PinnedPool {
        PinnedPool { ctx, free: Mutex::new(HashMap::new()), held: AtomicU64::new(0) }
    }

    /// Bytes of pinned memory allocated from the driver (in use plus cached).
    pub fn held_bytes(&self) -> u64 {
        self.held.load(Ordering::Relaxed)
    }

    /// A pinned buffer of `len` bytes. `write_combined` makes H2D faster on some systems but CPU reads
    /// from it very slow: use it only for buffers the CPU writes once and never reads.
    pub fn alloc(self: &Arc<Self>, len: usize, write_combined: bool) -> Result<PinnedBuffer> {
        if let Some(b) = self.free.lock().get_mut(&(len, write_combined)).and_then(|v| v.pop()) {
            return Ok(PinnedBuffer { block: Some(b), wc: write_combined, pool: self.clone() });
        }
        self.ctx.bind()?;
        let mut p = std::ptr::null_mut();
        let mut flags = sys::CU_MEMHOSTALLOC_PORTABLE;
        if write_combined {
            flags |= sys::CU_MEMHOSTALLOC_WRITECOMBINED;
        }
        if len > 0 {
            // SAFETY: out-pointer valid; context bound.
            check("cuMemHostAlloc", unsafe { sys::cuMemHostAlloc(&mut p, len, flags) }).map_err(|e| {
                Error::Cuda { call: "cuMemHostAlloc", msg: format!("{e}; pinning {len} bytes of host memory") }
            })?;
        }
        self.held.fetch_add(len as u64, Ordering::Relaxed);
        Ok(PinnedBuffer { block: Some(Block { ptr: p as usize, len, mapping: None }), wc: write_combined, pool: self.clone() })
    }

    /// A pinned buffer of `len` bytes filled by `fill` before it is pinned: the pages are mapped by the
    /// process, faulted in by `fill` itself (so filling many buffers on many threads also spreads the
    /// page faults), then registered with the driver. On an H100 host this pins 3× faster than
    /// `cuMemHostAlloc`, which zeroes and pins under one driver lock (BENCHMARKS.md, pinning probe).
    /// Falls back to [`PinnedPool::alloc`] where registration is refused. Never write-combined.
    /// `WANRT_PIN_REGISTER=0` ([`REGISTER_ENV`]) takes the `cuMemHostAlloc` path always (to compare
    /// DMA rates).
    pub fn alloc_filled(self: &Arc<Self>, len: usize, fill: impl FnOnce(&mut [u8]) -> Result<()>) -> Result<PinnedBuffer> {
        if len == 0 || std::env::var(REGISTER_ENV).is_ok_and(|v| v == "0") {
            let mut b = self.alloc(len, false)?;
            fill(b.as_mut_slice())?;
            return Ok(b);
        }
        // Whole pages: older drivers required page-aligned registrations, and the mapping is whole pages.
        let mapped = len.div_ceil(4096) * 4096;
        let mut map = memmap2::MmapMut::map_anon(mapped)
            .map_err(|e| Error::invalid(format!("mapping {len} bytes of host memory for pinned weights: {e}")))?;
        // Huge pages make both the faults and the registration cheaper; a kernel without THP ignores it.
        #[cfg(target_os = "linux")]
        let _ = map.advise(memmap2::Advice::HugePage);
        fill(&mut map[..len])?;
        self.ctx.bind()?;
        let ptr = map.as_mut_ptr();
        // SAFETY: `ptr..ptr+mapped` is a live mapping owned by the block built below, which unregisters
        // it before unmapping (Block::free); the context is bound.
        let r = check("cuMemHostRegister", unsafe {
            sys::cuMemHostRegister_v2(ptr as *mut std::ffi::c_void, mapped, sys::CU_MEMHOSTREGISTER_PORTABLE)
        });
        if r.is_err() {
            // Some platforms refuse to register ordinary pages: pin through the driver and copy.
            let mut b = self.alloc(len, false)?;
            b.as_mut_slice().copy_from_slice(&map[..len]);
            return Ok(b);
        }
        self.held.fetch_add(len as u64, Ordering::Relaxed);
        Ok(PinnedBuffer { block: Some(Block { ptr: ptr as usize, len, mapping: Some(map) }), wc: false, pool: self.clone() })
    }

    /// Returns cached buffers to the driver, after waiting for the device so no copy still reads them.
    pub fn release(&self) -> Result<()> {
        self.ctx.bind()?;
        // SAFETY: context bound.
        check("cuCtxSynchronize", unsafe { sys::cuCtxSynchronize() })?;
        let mut free = self.free.lock();
        for (_, blocks) in free.drain() {
            for b in blocks {
                self.held.fetch_sub(b.len as u64, Ordering::Relaxed);
                b.free();
            }
        }
        Ok(())
    }
}

/// A pinned host buffer; goes back to its pool when dropped.
pub struct PinnedBuffer {
    block: Option<Block>,
    wc: bool,
    pool: Arc<PinnedPool>,
}

impl PinnedBuffer {
    pub fn len(&self) -> usize {
        self.block.as_ref().map_or(0, |b| b.len)
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn is_write_combined(&self) -> bool {
        self.wc
    }

    pub fn as_slice(&self) -> &[u8] {
        match &self.block {
            Some(b) if b.len > 0 => {
                // SAFETY: the block is a live allocation of `len` bytes owned by this buffer.
                unsafe { std::slice::from_raw_parts(b.ptr as *const u8, b.len) }
            }
            _ => &[],
        }
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        match &self.block {
            Some(b) if b.len > 0 => {
                // SAFETY: as above, and `&mut self` makes the access exclusive on the host side.
                unsafe { std::slice::from_raw_parts_mut(b.ptr as *mut u8, b.len) }
            }
            _ => &mut [],
        }
    }
}

impl Drop for PinnedBuffer {
    fn drop(&mut self) {
        if let Some(b) = self.block.take() {
            self.pool.free.lock().entry((b.len, self.wc)).or_default().push(b);
        }
    }
}

impl Device {
    /// Queues an asynchronous copy from pinned host memory. The copy reads `src` after this returns:
    /// the caller must not modify it until an event recorded after this call on `stream` completes.
    pub fn upload_pinned(
        &self,
        dst: &DeviceBuffer,
        dst_off: u64,
        src: &PinnedBuffer,
        src_range: std::ops::Range<usize>,
        stream: &Stream,
    ) -> Result<()> {
        if src_range.start > src_range.end || src_range.end > src.len() {
            return Err(Error::invalid(format!(
                "upload: source range {src_range:?} is outside the {}-byte pinned buffer",
                src.len()
            )));
        }
        let len = src_range.end - src_range.start;
        bounds("upload", dst, dst_off, len as u64)?;
        if len == 0 {
            return Ok(());
        }
        self.ctx.bind()?;
        let p = src.as_slice()[src_range].as_ptr();
        // SAFETY: ranges checked; pinned pages stay mapped until the pool is released after a sync.
        check("cuMemcpyHtoDAsync", unsafe { sys::cuMemcpyHtoDAsync_v2(dst.ptr() + dst_off, p as *const _, len, stream.raw) })
    }

    /// Queues an asynchronous copy from device memory into a pinned buffer; read it only after an
    /// event recorded after this call on `stream` completes.
    pub fn download_pinned(&self, dst: &mut PinnedBuffer, src: &DeviceBuffer, src_off: u64, stream: &Stream) -> Result<()> {
        let len = dst.len();
        bounds("download", src, src_off, len as u64)?;
        if len == 0 {
            return Ok(());
        }
        self.ctx.bind()?;
        let p = dst.as_mut_slice().as_mut_ptr();
        // SAFETY: ranges checked; the pinned pages stay mapped (see the module note).
        check("cuMemcpyDtoHAsync", unsafe { sys::cuMemcpyDtoHAsync_v2(p as *mut _, src.ptr() + src_off, len, stream.raw) })
    }
}
