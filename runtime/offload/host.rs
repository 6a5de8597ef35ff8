//! Host storage of the weights: a pinned arena (every streamed unit packed once in page-locked
//! memory, filled straight from the source), or a low-RAM staging ring (a few pinned buffers refilled
//! from the source for every upload).

use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use super::layout::{ModelUnits, TensorSpec};
use crate::gpu::{Device, DeviceBuffer, Event, PinnedBuffer, Stream};
use crate::{Error, Result};

/// Where weight bytes come from (a safetensors store, a synthetic generator in tests).
pub trait WeightSource: Send + Sync {
    /// Writes tensor `t`'s elements, converted to `t.dtype`, as little-endian bytes into `dst`, which
    /// is exactly `t.bytes()` long. Called from several threads at once for different tensors.
    fn read_into(&self, t: &TensorSpec, dst: &mut [u8]) -> Result<()>;
}

/// Fills unit `i`'s packed region (`dst` is exactly its packed length): each tensor at its offset,
/// the alignment padding zeroed so an upload copies only defined bytes.
pub fn fill_unit(units: &ModelUnits, i: usize, source: &dyn WeightSource, dst: &mut [u8]) -> Result<()> {
    let (u, l) = (units.unit(i), units.layout(i));
    if dst.len() as u64 != l.bytes {
        return Err(Error::invalid(format!("unit {}: {}-byte region given for {} packed bytes", u.name, dst.len(), l.bytes)));
    }
    let mut end = 0usize;
    for (t, &off) in u.tensors.iter().zip(&l.offsets) {
        let (off, len) = (off as usize, t.bytes().unwrap_or(0) as usize);
        dst[end..off].fill(0);
        source.read_into(t, &mut dst[off..off + len]).map_err(|e| match e {
            Error::Invalid(m) => Error::invalid(format!("unit {}: reading tensor {}: {m}", u.name, t.name)),
            e => e,
        })?;
        end = off + len;
    }
    dst[end..].fill(0);
    Ok(())
}

/// Every stored unit in its own pinned allocation, packed per the layout. Host RAM is the stored
/// units' packed bytes, once: units are filled in parallel straight into their pinned buffers.
pub struct PinnedArena {
    units: Vec<Option<PinnedBuffer>>,
    bytes: u64,
}

impl PinnedArena {
    /// Pins and fills units `which` (other units are not stored) on all cores, one unit per task.
    pub fn new(dev: &Arc<Device>, units: &ModelUnits, which: &[usize], source: &dyn WeightSource) -> Result<PinnedArena> {
        let slots: Vec<Mutex<Option<PinnedBuffer>>> = (0..units.len()).map(|_| Mutex::new(None)).collect();
        let next = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        let first_err: Mutex<Option<Error>> = Mutex::new(None);
        let threads = std::thread::available_parallelism().map_or(4, |n| n.get()).min(which.len()).max(1);
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    while !stop.load(Ordering::Relaxed) {
                        let k = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&i) = which.get(k) else { break };
                        // Filled before pinning: the fill faults the pages in on this thread, then
                        // the driver registers them (PinnedPool::alloc_filled).
                        let res = dev.pinned().alloc_filled(units.unit_bytes(i) as usize, |dst| fill_unit(units, i, source, dst));
                        match res {
                            Ok(buf) => *slots[i].lock() = Some(buf),
                            Err(e) => {
                                stop.store(true, Ordering::Relaxed);
                                first_err.lock().get_or_insert(e);
                            }
                        }
                    }
                });
            }
        });
        if let Some(e) = first_err.into_inner() {
            return Err(e);
        }
        let units: Vec<Option<PinnedBuffer>> = slots.into_iter().map(|m| m.into_inner()).collect();
        let bytes = units.iter().flatten().map(|b| b.len() as u64).sum();
        Ok(PinnedArena { units, bytes })
    }

    /// Unit `i`'s packed region, if stored.
    pub fn unit(&self, i: usize) -> Option<&PinnedBuffer> {
        self.units.get(i).and_then(|b| b.as_ref())
    }

    /// Pinned bytes held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

/// The low-RAM path: `n` pinned staging buffers used in turn. Before refilling a buffer the host
/// waits for the copy that last read it: these are host waits inside a forward, so this mode runs at
/// the speed of the source (disk or page cache, and the dtype conversion), not of PCIe.
pub struct StagingRing {
    bufs: Vec<PinnedBuffer>,
    done: Vec<Event>,
    recorded: Vec<bool>,
    next: usize,
    waits: u64,
}

impl StagingRing {
    pub fn new(dev: &Arc<Device>, buffers: usize, buffer_bytes: u64) -> Result<StagingRing> {
        if buffers == 0 {
            return Err(Error::invalid("a staging ring needs at least one buffer"));
        }
        let mut bufs = Vec::with_capacity(buffers);
        let mut done = Vec::with_capacity(buffers);
        for _ in 0..buffers {
            bufs.push(dev.pinned().alloc(buffer_bytes as usize, false)?);
            done.push(dev.event()?);
        }
        Ok(StagingRing { bufs, done, recorded: vec![false; buffers], next: 0, waits: 0 })
    }

    /// Pinned bytes held.
    pub fn bytes(&self) -> u64 {
        self.bufs.iter().map(|b| b.len() as u64).sum()
    }

    /// Host waits so far (one per buffer reuse).
    pub fn host_waits(&self) -> u64 {
        self.waits
    }

    /// Fills units `r`, packed back to back, into the next buffer and queues their upload to `dst` at
    /// `dst_off` on `stream`. Waits on the host for the copy that last read that buffer.
    #[allow(clippy::too_many_arguments)]
    pub fn upload(
        &mut self,
        dev: &Device,
        units: &ModelUnits,
        r: Range<usize>,
        source: &dyn WeightSource,
        dst: &DeviceBuffer,
        dst_off: u64,
        stream: &Stream,
    ) -> Result<()> {
        let j = self.next;
        self.next = (j + 1) % self.bufs.len();
        let len = units.range_bytes(r.clone()) as usize;
        if len > self.bufs[j].len() {
            return Err(Error::invalid(format!(
                "staging ring: units {r:?} need {len} bytes, the buffers hold {}",
                self.bufs[j].len()
            )));
        }
        if self.recorded[j] {
            self.done[j].synchronize()?;
            self.waits += 1;
        }
        let buf = self.bufs[j].as_mut_slice()?;
        let mut off = 0usize;
        for i in r.clone() {
            let n = units.unit_bytes(i) as usize;
            fill_unit(units, i, source, &mut buf[off..off + n])?;
            off += n;
        }
        nvtx::range_push!("upload units {}..{} (staged)", r.start, r.end);
        let res = dev.upload_pinned(dst, dst_off, &self.bufs[j], 0..len, stream);
        nvtx::range_pop!();
        res?;
        self.done[j].record(stream)?;
        self.recorded[j] = true;
        Ok(())
    }
}

/// How the engine keeps weights on the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostKind {
    /// A [`PinnedArena`] of the streamed units (fastest; host RAM = streamed bytes).
    Pinned,
    /// A [`StagingRing`] of `buffers` slot-sized buffers (low RAM; disk-bound, host waits).
    Staging { buffers: usize },
}

/// The weight source and how to hold it on the host, handed to [`super::Engine::new`].
#[derive(Clone)]
pub struct HostWeights {
    pub source: Arc<dyn WeightSource>,
    pub kind: HostKind,
}

impl HostWeights {
    pub fn pinned(source: Arc<dyn WeightSource>) -> HostWeights {
        HostWeights { source, kind: HostKind::Pinned }
    }
    pub fn staging(source: Arc<dyn WeightSource>, buffers: usize) -> HostWeights {
        HostWeights { source, kind: HostKind::Staging { buffers } }
    }
}
