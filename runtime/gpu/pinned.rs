//! Page-locked host memory. Async H2D copies only overlap compute when the source is pinned.
//!
//! Buffers return to a per-size free list on drop and are freed to the driver only by
//! [`PinnedPool::release`] after a device synchronization, so a buffer dropped while a copy from it
//! is still in flight never has its pages unmapped under the DMA engine.
//!
//! The host and the copy engine never race on a buffer: each buffer keeps one event, recorded after
//! every copy queued to or from it ([`Device::upload_pinned`], [`Device::download_pinned`]), and host
//! access waits for it where the copy could still be running: [`PinnedBuffer::as_mut_slice`] for any
//! queued copy, [`PinnedBuffer::as_slice`] for a queued download, and a buffer handed out again by the
//! pool for any copy queued before it was dropped. The cost is one event record per copy (no host
//! wait) and a wait only where the host would otherwise race.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use cudarc::driver::sys;
use parking_lot::Mutex;

use super::check;
use super::device::{Context, Device};
use super::memory::{bounds, DeviceBuffer};
use super::stream::{Event, Stream};
use crate::{Error, Result};

/// The last copy queued to or from a buffer.
#[derive(Default)]
struct Fence {
    /// Created on the buffer's first copy, re-recorded after each.
    event: Option<Event>,
    /// The stream of the last record (a raw handle, compared only).
    stream: usize,
    /// A copy may still be running.
    pending: bool,
    /// A pending copy writes the buffer (a download).
    writes: bool,
}

impl Fence {
    /// Before queuing a copy on `stream`: orders it after a pending copy on another stream, so the
    /// one event recorded after it covers both (no host wait; nothing to do on the same stream).
    fn before(&mut self, stream: &Stream) -> Result<()> {
        if let (true, Some(e)) = (self.pending, &self.event) {
            if self.stream != stream.raw as usize && !e.is_done()? {
                stream.wait(e)?;
            }
        }
        Ok(())
    }

    /// After queuing a copy on `stream` (`writes`: a download into the buffer).
    fn after(&mut self, ctx: &Arc<Context>, stream: &Stream, writes: bool) -> Result<()> {
        if self.event.is_none() {
            self.event = Some(Event::new(ctx, false)?);
        }
        if let Some(e) = &self.event {
            e.record(stream)?;
        }
        self.writes = writes || (self.pending && self.writes);
        self.pending = true;
        self.stream = stream.raw as usize;
        Ok(())
    }

    /// Waits on the host for the pending copies (only downloads when `writes_only`).
    fn wait(&mut self, writes_only: bool) -> Result<()> {
        if !self.pending || (writes_only && !self.writes) {
            return Ok(());
        }
        if let Some(e) = &self.event {
            e.synchronize()?;
        }
        self.pending = false;
        self.writes = false;
        Ok(())
    }
}

struct Block {
    ptr: usize,
    len: usize,
    /// `Some` for memory the process mapped and then registered with the driver
    /// ([`PinnedPool::alloc_filled`]); `None` for `cuMemHostAlloc` memory.
    mapping: Option<memmap2::MmapMut>,
    /// Copies queued while the block was last handed out, waited for before it is handed out again.
    fence: Fence,
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
        let reused = self.free.lock().get_mut(&(len, write_combined)).and_then(|v| v.pop());
        if let Some(mut b) = reused {
            // A copy queued before the last owner dropped it may still read or write the pages.
            if let Err(e) = b.fence.wait(false) {
                self.free.lock().entry((len, write_combined)).or_default().push(b);
                return Err(e);
            }
            return Ok(PinnedBuffer::new(b, write_combined, self));
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
        Ok(PinnedBuffer::new(Block { ptr: p as usize, len, mapping: None, fence: Fence::default() }, write_combined, self))
    }

    /// A pinned buffer of `len` bytes filled by `fill` before it is pinned: the pages are mapped by the
    /// process, faulted in by `fill` itself (so filling many buffers on many threads also spreads the
    /// page faults), then registered with the driver. On an H100 host this pins 3× faster than
    /// `cuMemHostAlloc`, which zeroes and pins under one driver lock (BENCHMARKS.md, pinning probe).
    /// Falls back to [`PinnedPool::alloc`] where registration is refused. Never write-combined.
    /// `WANRT_PIN_REGISTER=0` ([`crate::settings::Settings::pin_register`]) takes the `cuMemHostAlloc`
    /// path always (to compare DMA rates).
    pub fn alloc_filled(self: &Arc<Self>, len: usize, fill: impl FnOnce(&mut [u8]) -> Result<()>) -> Result<PinnedBuffer> {
        if len == 0 || !crate::settings::settings().pin_register {
            let mut b = self.alloc(len, false)?;
            fill(b.as_mut_slice()?)?;
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
            b.as_mut_slice()?.copy_from_slice(&map[..len]);
            return Ok(b);
        }
        self.held.fetch_add(len as u64, Ordering::Relaxed);
        Ok(PinnedBuffer::new(Block { ptr: ptr as usize, len, mapping: Some(map), fence: Fence::default() }, false, self))
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

/// A pinned host buffer; goes back to its pool when dropped. Host access waits for copies queued
/// on it that could still be running (see the module doc).
pub struct PinnedBuffer {
    block: Option<Block>,
    /// The block's fence while the buffer is handed out (`&self` copies record it).
    fence: Mutex<Fence>,
    wc: bool,
    pool: Arc<PinnedPool>,
}

impl PinnedBuffer {
    fn new(mut block: Block, wc: bool, pool: &Arc<PinnedPool>) -> PinnedBuffer {
        let fence = Mutex::new(std::mem::take(&mut block.fence));
        PinnedBuffer { block: Some(block), fence, wc, pool: pool.clone() }
    }

    pub fn len(&self) -> usize {
        self.block.as_ref().map_or(0, |b| b.len)
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn is_write_combined(&self) -> bool {
        self.wc
    }

    /// Start of the pages (null when empty).
    fn base(&self) -> *mut u8 {
        match &self.block {
            Some(b) if b.len > 0 => b.ptr as *mut u8,
            _ => std::ptr::null_mut(),
        }
    }

    /// The bytes, after any queued download into them has completed (a host wait, only then).
    pub fn as_slice(&self) -> Result<&[u8]> {
        self.fence.lock().wait(true)?;
        let p = self.base();
        if p.is_null() {
            return Ok(&[]);
        }
        // SAFETY: the block is a live allocation of `len` bytes owned by this buffer; no download into
        // it is queued (waited above, and queuing one takes `&mut self`).
        Ok(unsafe { std::slice::from_raw_parts(p, self.len()) })
    }

    /// The bytes for writing, after every queued copy to or from them has completed (a host wait,
    /// only then).
    pub fn as_mut_slice(&mut self) -> Result<&mut [u8]> {
        self.fence.get_mut().wait(false)?;
        let p = self.base();
        if p.is_null() {
            return Ok(&mut []);
        }
        // SAFETY: as above, no copy is queued (waited above), and `&mut self` makes the access exclusive
        // on the host side until it ends (queuing a copy needs a borrow of the buffer).
        Ok(unsafe { std::slice::from_raw_parts_mut(p, self.len()) })
    }
}

impl Drop for PinnedBuffer {
    fn drop(&mut self) {
        if let Some(mut b) = self.block.take() {
            // The fence goes with the block: the pool waits for it before handing the block out again.
            b.fence = std::mem::take(self.fence.get_mut());
            self.pool.free.lock().entry((b.len, self.wc)).or_default().push(b);
        }
    }
}

impl Device {
    /// Queues an asynchronous copy from pinned host memory. The copy reads `src` after this returns;
    /// `src` records it (one event record), so writing `src` through [`PinnedBuffer::as_mut_slice`]
    /// waits for it.
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
        same_device("upload", &self.ctx, dst, stream)?;
        self.ctx.bind()?;
        let mut fence = src.fence.lock();
        fence.before(stream)?;
        let p = src.base().wrapping_add(src_range.start);
        // SAFETY: ranges checked; pinned pages stay mapped until the pool is released after a sync; host
        // writes to them wait for the event recorded below (as_mut_slice), and so does reuse by the pool.
        check("cuMemcpyHtoDAsync", unsafe { sys::cuMemcpyHtoDAsync_v2(dst.ptr() + dst_off, p as *const _, len, stream.raw) })?;
        dst.used_on(stream)?;
        fence.after(&self.ctx, stream, false)
    }

    /// Queues an asynchronous copy from device memory into a pinned buffer; `dst` records it, so
    /// reading it ([`PinnedBuffer::as_slice`]) waits for the copy.
    pub fn download_pinned(&self, dst: &mut PinnedBuffer, src: &DeviceBuffer, src_off: u64, stream: &Stream) -> Result<()> {
        let len = dst.len();
        bounds("download", src, src_off, len as u64)?;
        if len == 0 {
            return Ok(());
        }
        same_device("download", &self.ctx, src, stream)?;
        self.ctx.bind()?;
        let p = dst.base();
        let fence = dst.fence.get_mut();
        fence.before(stream)?;
        // SAFETY: ranges checked; the pinned pages stay mapped (see the module note); host access and
        // reuse by the pool wait for the event recorded below.
        check("cuMemcpyDtoHAsync", unsafe { sys::cuMemcpyDtoHAsync_v2(p as *mut _, src.ptr() + src_off, len, stream.raw) })?;
        src.used_on(stream)?;
        fence.after(&self.ctx, stream, true)
    }
}

/// The device buffer and the stream of a copy belong to the device queuing it.
fn same_device(what: &str, ctx: &Arc<Context>, buf: &DeviceBuffer, stream: &Stream) -> Result<()> {
    if !Arc::ptr_eq(&buf.device().ctx, ctx) || !Arc::ptr_eq(&stream.ctx, ctx) {
        return Err(Error::invalid(format!("{what}: the device buffer or the stream belongs to another device")));
    }
    Ok(())
}
