//! The offload engine: resident groups, a device area for streamed groups (K slots or a byte ring,
//! see `placement`), and the upload protocol.
//!
//! Streamed groups are uploaded in the model's declared order, cyclically across forwards: occurrence
//! `c` of the cycle is group `streamed[c % S]`, placed in slot `c % K` or at the ring's cursor. With
//! prefetch, the copy stream runs ahead as far as the area allows:
//!
//! ```text
//! copy:    wait(consumed[o]) for every occurrence o the upload overwrites; upload c; record(uploaded[c])
//! compute: wait(uploaded[c]); ... the model's kernels read c's weights ...; record(consumed[c])
//! ```
//!
//! `consumed[c]` is recorded when an occurrence is released: all its units requested and every guard
//! dropped. Only released occurrences may be overwritten, so no copy ever overwrites weights that
//! queued compute still reads, and the host never waits (except in the low-RAM staging mode, which
//! waits for its staging buffers by design). Synchronous plans upload on the compute stream right
//! before use; stream order is their only fence.

use std::sync::Arc;

use parking_lot::Mutex;

use super::host::{HostKind, HostWeights, PinnedArena, StagingRing, WeightSource};
use super::layout::ModelUnits;
use super::declare::{Param, UnitId};
use super::placement::{Held, Placement};
use super::plan::{Group, Plan};
use crate::gpu::{Device, DeviceBuffer, Event, Stream};
use crate::tensor::Lease;
use crate::{Error, Result, Tensor};

enum Storage {
    Arena(PinnedArena),
    Ring(StagingRing),
}

/// A pair of events fencing one occurrence: its upload done (copy stream), its weights no longer
/// read (compute stream).
struct Fences {
    uploaded: Event,
    consumed: Event,
}

struct State {
    storage: Storage,
    /// The unit the declared order expects next.
    next_unit: usize,
    /// Streamed occurrences entered / whose upload is queued.
    entered: u64,
    issued: u64,
    /// Which occurrences occupy which bytes of the stream area.
    place: Placement,
    /// Event pairs (prefetch only), reused once their occurrence is overwritten: a stream wait
    /// captures an event's state when it is queued, so recording it again later is safe.
    fences: Vec<Fences>,
    free_fences: Vec<usize>,
    failed: Option<String>,
    uploads: u64,
    /// A [`Forward`] is open (one at a time), and how many units it has passed (taken or skipped).
    in_forward: bool,
    passed: usize,
}

/// Streams a model's weight units through device slots according to a [`Plan`].
pub struct Engine {
    dev: Arc<Device>,
    units: ModelUnits,
    plan: Plan,
    source: Arc<dyn WeightSource>,
    /// Device region of each resident group (`None` for streamed groups).
    regions: Vec<Option<Arc<DeviceBuffer>>>,
    /// Offset of each unit inside its group's packing.
    unit_offset: Vec<u64>,
    /// The device area streamed groups pass through (slots or ring); `None` when nothing streams.
    area: Option<Arc<DeviceBuffer>>,
    /// Streamed group indices in declared order.
    cycle: Vec<usize>,
    device_bytes: u64,
    state: Mutex<State>,
}

impl Engine {
    /// Allocates the resident regions and the stream area, uploads the resident units, builds the
    /// host storage, synchronizes the device once (so the copy stream may use memory the compute
    /// stream's pool handed out) and queues the first uploads.
    pub fn new(dev: &Arc<Device>, units: ModelUnits, plan: Plan, host: HostWeights) -> Result<Engine> {
        if !plan.matches(&units) {
            return Err(Error::invalid(format!(
                "offload engine: the plan was made for other units ({} units planned, {} given)",
                plan.unit_count(),
                units.len()
            )));
        }
        let groups = plan.groups();
        let mut unit_offset = vec![0u64; units.len()];
        for g in groups {
            let mut off = 0;
            for i in g.units.clone() {
                unit_offset[i] = off;
                off += units.unit_bytes(i);
            }
        }
        let mut device_bytes = 0;
        let mut regions = Vec::with_capacity(groups.len());
        for g in groups {
            regions.push(if g.resident {
                device_bytes += g.bytes;
                Some(Arc::new(dev.alloc(g.bytes, &format!("resident weights {}", g.label))?))
            } else {
                None
            });
        }
        let place = match plan.ring_bytes() {
            Some(bytes) => Placement::ring(bytes),
            None => Placement::slots(plan.slots(), plan.slot_bytes()),
        };
        let area = if place.capacity() > 0 {
            let what = if plan.ring_bytes().is_some() { "offload ring".to_string() } else { format!("offload slots ({})", plan.slots()) };
            device_bytes += place.capacity();
            Some(Arc::new(dev.alloc(place.capacity(), &what)?))
        } else {
            None
        };
        upload_resident(dev, &units, &plan, &regions, &unit_offset, &*host.source)?;
        let cycle = plan.streamed_groups();
        let streamed_units: Vec<usize> = cycle.iter().flat_map(|&g| groups[g].units.clone()).collect();
        let storage = match host.kind {
            HostKind::Pinned => Storage::Arena(PinnedArena::new(dev, &units, &streamed_units, &*host.source)?),
            HostKind::Staging { buffers } => Storage::Ring(StagingRing::new(dev, buffers, plan.slot_bytes())?),
        };
        dev.synchronize()?;
        let state = State {
            storage,
            next_unit: 0,
            entered: 0,
            issued: 0,
            place,
            fences: Vec::new(),
            free_fences: Vec::new(),
            failed: None,
            uploads: 0,
            in_forward: false,
            passed: 0,
        };
        let engine = Engine {
            dev: dev.clone(),
            units,
            plan,
            source: host.source,
            regions,
            unit_offset,
            area,
            cycle,
            device_bytes,
            state: Mutex::new(state),
        };
        if engine.plan.prefetch() {
            let mut st = engine.state.lock();
            engine.pump(&mut st)?;
        }
        Ok(engine)
    }

    pub fn device(&self) -> &Arc<Device> {
        &self.dev
    }
    pub fn plan(&self) -> &Plan {
        &self.plan
    }
    pub fn units(&self) -> &ModelUnits {
        &self.units
    }
    /// Device bytes of weights held: resident regions plus the stream area.
    pub fn device_bytes(&self) -> u64 {
        self.device_bytes
    }
    /// Pinned host bytes held (arena or staging ring).
    pub fn host_bytes(&self) -> u64 {
        match &self.state.lock().storage {
            Storage::Arena(a) => a.bytes(),
            Storage::Ring(r) => r.bytes(),
        }
    }
    /// Group uploads queued so far (prefetched ones included).
    pub fn uploads(&self) -> u64 {
        self.state.lock().uploads
    }
    /// Times the host waited for the device inside the protocol (only the staging ring ever does).
    pub fn host_waits(&self) -> u64 {
        match &self.state.lock().storage {
            Storage::Arena(_) => 0,
            Storage::Ring(r) => r.host_waits(),
        }
    }

    /// Runs one forward pass: `f` takes each unit it uses through the [`Forward`] handle, in declared
    /// order. Whatever happens inside (an op error, an allocation over the budget, a panic in `f`),
    /// the engine is consistent afterwards: every guard is dropped with `f`'s borrows, and the units
    /// `f` did not reach are passed over (their uploads still follow the declared order), so the next
    /// forward starts at the first unit with the prefetch pipeline intact and nothing re-pinned.
    pub fn forward<T>(&self, f: impl FnOnce(&Forward<'_>) -> Result<T>) -> Result<T> {
        {
            let mut st = self.state.lock();
            if st.in_forward {
                return Err(Error::invalid("offload engine: a forward is already running on this engine (one at a time)"));
            }
            if let Some(e) = &st.failed {
                return Err(Error::invalid(format!("offload engine: unusable after an earlier device failure: {e}")));
            }
            st.in_forward = true;
            st.passed = 0;
        }
        let fw = Forward { engine: self };
        let out = f(&fw);
        let finished = fw.finish();
        std::mem::forget(fw);
        match (out, finished) {
            (Ok(v), Ok(())) => Ok(v),
            (Err(e), _) | (Ok(_), Err(e)) => Err(e),
        }
    }

    /// Index of the unit named `name`.
    pub fn index_of(&self, name: &str) -> Result<UnitId> {
        self.units.id_of(name).ok_or_else(|| Error::invalid(format!("offload engine: no unit named {name}")))
    }

    /// The weights of unit `i`, which must be the next unit in declared order.
    fn unit(&self, i: usize) -> Result<UnitGuard<'_>> {
        let mut st = self.state.lock();
        let occ = self.advance(&mut st, i, true)?;
        let (buf, base) = match occ {
            None => (self.regions[self.plan.group_of(i)].clone(), 0),
            Some(c) => (self.area.clone(), self.held(&mut st, c)?.off),
        };
        drop(st);
        let lease = Lease::new(format!("unit {}", self.units.unit(i).name));
        let mut guard = UnitGuard { engine: self, unit: i, occ, tensors: Vec::new(), lease };
        let buf = buf.ok_or_else(|| Error::invalid(format!("offload engine: no device region for unit {i}")))?;
        let (u, l) = (self.units.unit(i), self.units.layout(i));
        for (t, &off) in u.tensors.iter().zip(&l.offsets) {
            let view = Tensor::from_buffer(buf.clone(), base + self.unit_offset[i] + off, &t.shape, t.dtype)?;
            guard.tensors.push(view.with_lease(&guard.lease));
        }
        Ok(guard)
    }

    /// Passes over unit `i` (the next in declared order) without using it.
    fn skip(&self, i: usize) -> Result<()> {
        let mut st = self.state.lock();
        self.advance(&mut st, i, false)?;
        Ok(())
    }

    /// Moves the declared-order cursor onto unit `i`; for a streamed unit returns its occurrence, with
    /// a live guard counted when `use_it` (else the occurrence may be released at once).
    fn advance(&self, st: &mut State, i: usize, use_it: bool) -> Result<Option<u64>> {
        if let Some(f) = &st.failed {
            return Err(Error::invalid(format!("offload engine: unusable after an earlier device failure: {f}")));
        }
        let n = self.units.len();
        if i != st.next_unit {
            let name = |j: usize| self.units.units().get(j).map_or("<out of range>", |u| u.name.as_str());
            return Err(Error::invalid(format!(
                "offload engine: unit {i} ({}) requested, but the declared order expects unit {} ({}) next; a model uses its units in declared order, each at most once per forward (Forward::skip passes over one)",
                name(i),
                st.next_unit,
                name(st.next_unit)
            )));
        }
        let g = self.plan.group_of(i);
        let group = &self.plan.groups()[g];
        let occ = if group.resident {
            None
        } else {
            if group.units.start == i {
                self.enter(st)?;
            }
            let c = st.entered - 1;
            // The first unit used (not skipped) fences compute on the upload.
            let h = *self.held(st, c)?;
            if let (true, false, Some(ev)) = (use_it, h.waited, h.ev) {
                self.guarded(st, |e, st| e.dev.compute().wait(&st.fences[ev].uploaded))?;
            }
            let h = self.held(st, c)?;
            h.waited |= use_it;
            h.live += use_it as usize;
            h.complete = i + 1 == group.units.end;
            if h.complete && h.live == 0 {
                self.release(st, c)?;
            }
            Some(c)
        };
        st.next_unit = (i + 1) % n;
        st.passed += 1;
        Ok(occ)
    }

    /// Occurrence `c`'s place in the stream area.
    fn held<'s>(&self, st: &'s mut State, c: u64) -> Result<&'s mut Held> {
        st.place.get_mut(c).ok_or_else(|| Error::invalid(format!("offload engine: place of occurrence {c} lost (internal)")))
    }

    /// The group occurrence `u` of the cycle uploads.
    fn group_at(&self, u: u64) -> &Group {
        &self.plan.groups()[self.cycle[(u % self.cycle.len() as u64) as usize]]
    }

    /// Where occurrence `u` would go now and which held occurrences it overwrites (see
    /// `Placement::probe`); `Err` names an unreleased one in the way.
    fn probe(&self, st: &State, u: u64) -> std::result::Result<(u64, Vec<usize>), u64> {
        st.place.probe(u, self.group_at(u).bytes)
    }

    /// Enters the next streamed occurrence: its upload must be queued (prefetch) or is queued now on
    /// the compute stream (synchronous).
    fn enter(&self, st: &mut State) -> Result<()> {
        let c = st.entered;
        if self.plan.prefetch() {
            self.guarded(st, |e, st| e.pump(st))?;
        } else if st.issued == c {
            if let Ok(spot) = self.probe(st, c) {
                self.guarded(st, |e, st| e.issue(st, c, spot, e.dev.compute()))?;
            }
        }
        if st.issued <= c {
            let blocker = self.probe(st, st.issued).err();
            let label = blocker.map_or("an earlier group", |o| self.group_at(o).label.as_str());
            let rule = match self.plan.ring_bytes() {
                Some(_) => "with a byte ring, hold units of at most two consecutive groups at once".to_string(),
                None => format!("with {} slots, hold units of at most {} groups at once", self.plan.slots(), self.plan.slots()),
            };
            return Err(Error::invalid(format!(
                "offload engine: the next group ({}) needs device memory still held by a live guard of {label}; {rule}",
                self.group_at(c).label
            )));
        }
        st.entered += 1;
        Ok(())
    }

    /// Queues uploads ahead on the copy stream while the area has released room for them.
    fn pump(&self, st: &mut State) -> Result<()> {
        while let Ok(spot) = self.probe(st, st.issued) {
            self.issue(st, st.issued, spot, self.dev.copy())?;
        }
        Ok(())
    }

    /// Queues occurrence `u`'s upload on `stream` at `spot` (from [`Engine::probe`]: its offset and
    /// the held occurrences it overwrites); the copy stream fences it with events.
    fn issue(&self, st: &mut State, u: u64, (off, over): (u64, Vec<usize>), stream: &Stream) -> Result<()> {
        let group = self.group_at(u);
        let len = group.bytes;
        let prefetch = self.plan.prefetch();
        for j in over {
            if let Some(ev) = st.place.held()[j].ev {
                self.dev.copy().wait(&st.fences[ev].consumed)?;
            }
        }
        let r = group.units.clone();
        let dst = self.area.as_ref().ok_or_else(|| Error::invalid("offload engine: streamed group without a stream area (internal)"))?;
        match &mut st.storage {
            Storage::Arena(a) => {
                for i in r {
                    let buf = a.unit(i).ok_or_else(|| Error::invalid(format!("offload engine: unit {i} missing from the arena")))?;
                    nvtx::range_push!("upload unit {}", i);
                    let res = self.dev.upload_pinned(dst, off + self.unit_offset[i], buf, 0..buf.len(), stream);
                    nvtx::range_pop!();
                    res?;
                }
            }
            Storage::Ring(ring) => ring.upload(&self.dev, &self.units, r, &*self.source, dst, off, stream)?,
        }
        let ev = if prefetch {
            let ev = match st.free_fences.pop() {
                Some(ev) => ev,
                None => {
                    st.fences.push(Fences { uploaded: self.dev.event()?, consumed: self.dev.event()? });
                    st.fences.len() - 1
                }
            };
            st.fences[ev].uploaded.record(stream)?;
            Some(ev)
        } else {
            None
        };
        // The copy's waits on the overwritten occurrences' `consumed` events are queued: their event
        // pairs may be recorded again.
        for gone in st.place.commit(u, off, len, ev) {
            st.free_fences.extend(gone.ev);
        }
        st.issued += 1;
        st.uploads += 1;
        Ok(())
    }

    /// All of occurrence `c`'s units were requested and its guards dropped: fence the slot and let
    /// the copy stream refill it.
    fn release(&self, st: &mut State, c: u64) -> Result<()> {
        let h = self.held(st, c)?;
        h.released = true;
        if let Some(ev) = h.ev {
            self.guarded(st, |e, st| {
                st.fences[ev].consumed.record(e.dev.compute())?;
                e.pump(st)
            })?;
        }
        Ok(())
    }

    /// Runs a step that queues device work; a failure leaves the protocol state unknown, so it marks
    /// the engine unusable.
    fn guarded(&self, st: &mut State, f: impl FnOnce(&Engine, &mut State) -> Result<()>) -> Result<()> {
        let r = f(self, st);
        if let Err(e) = &r {
            st.failed = Some(e.to_string());
        }
        r
    }

    fn drop_guard(&self, unit: usize, occ: Option<u64>) -> Result<()> {
        let Some(c) = occ else { return Ok(()) };
        let mut st = self.state.lock();
        let Some(h) = st.place.get_mut(c) else {
            return Err(Error::invalid(format!("offload engine: guard of unit {unit} outlived its place (internal)")));
        };
        h.live -= 1;
        if h.live == 0 && h.complete {
            self.release(&mut st, c)?;
        }
        Ok(())
    }
}

/// Uploads every resident unit through a two-buffer staging ring on the compute stream (setup: the
/// host waits here are outside any forward).
fn upload_resident(
    dev: &Arc<Device>,
    units: &ModelUnits,
    plan: &Plan,
    regions: &[Option<Arc<DeviceBuffer>>],
    unit_offset: &[u64],
    source: &dyn WeightSource,
) -> Result<()> {
    let resident: Vec<usize> = plan.groups().iter().filter(|g| g.resident).flat_map(|g| g.units.clone()).collect();
    let Some(largest) = resident.iter().map(|&i| units.unit_bytes(i)).max() else { return Ok(()) };
    let mut ring = StagingRing::new(dev, 2, largest)?;
    for i in resident {
        let region = regions[plan.group_of(i)].as_ref().ok_or_else(|| Error::invalid("resident unit without a region"))?;
        ring.upload(dev, units, i..i + 1, source, region, unit_offset[i], dev.compute())?;
    }
    dev.compute().synchronize()?;
    drop(ring);
    // The staging buffers are free again; hand their pinned pages back to the OS.
    dev.pinned().release()
}

impl Drop for Engine {
    fn drop(&mut self) {
        // Teardown, outside any forward: prefetched uploads may still be writing the slots (freed on
        // the compute stream), and uploads may still be reading host buffers that go back to the
        // pinned pool for reuse. Let both streams finish first.
        let _ = self.dev.copy().synchronize();
        let _ = self.dev.compute().synchronize();
    }
}

/// One forward pass on an [`Engine`] (see [`Engine::forward`]): hands out the units' weights in
/// declared order.
pub struct Forward<'e> {
    engine: &'e Engine,
}

impl Forward<'_> {
    /// The weights of unit `id`, which must come after every unit taken so far in declared order;
    /// units in between are passed over. The guard's tensors are valid for device work queued while
    /// it lives: they borrow from the guard, and a clone of one is refused by every launch once the
    /// guard is dropped (its lease ends), since the engine may then overwrite the memory. Guards of
    /// two consecutive streamed groups may be alive at once (with K slots, of K groups).
    ///
    /// A weight cannot be kept past its guard: this does not compile (`w` borrows from `g`).
    ///
    /// ```compile_fail,E0597
    /// # use wanrt_runtime::offload::{Engine, Param};
    /// # use wanrt_runtime::{Result, Tensor};
    /// fn escape<'e>(engine: &'e Engine, p: Param) -> Result<()> {
    ///     let mut kept: Option<&Tensor> = None;
    ///     engine.forward(|fw| {
    ///         let g = fw.unit(p.unit())?;
    ///         kept = Some(g.get(p)?);
    ///         Ok(())
    ///     })?;
    ///     let _ = kept;
    ///     Ok(())
    /// }
    /// ```
    ///
    /// A clone compiles, but every launch, copy and download refuses it once the guard is gone:
    ///
    /// ```no_run
    /// # use wanrt_runtime::offload::{Engine, Param};
    /// # use wanrt_runtime::{Result, Tensor};
    /// fn escape(engine: &Engine, p: Param) -> Result<()> {
    ///     let mut kept: Option<Tensor> = None;
    ///     engine.forward(|fw| {
    ///         let g = fw.unit(p.unit())?;
    ///         kept = Some(g.get(p)?.clone());
    ///         Ok(())
    ///     })?;
    ///     assert!(kept.unwrap().to_bytes().is_err()); // "used after its borrow ended"
    ///     Ok(())
    /// }
    /// ```
    pub fn unit(&self, id: UnitId) -> Result<UnitGuard<'_>> {
        self.skip_to(id.0)?;
        self.engine.unit(id.0)
    }

    /// Passes over unit `id` (and any before it not yet taken) without using it.
    pub fn skip(&self, id: UnitId) -> Result<()> {
        self.skip_to(id.0)?;
        self.engine.skip(id.0)
    }

    pub fn engine(&self) -> &Engine {
        self.engine
    }

    /// Passes over the units before `i` not yet taken; `i` itself must not have been taken.
    fn skip_to(&self, i: usize) -> Result<()> {
        let passed = self.engine.state.lock().passed;
        if i < passed || i >= self.engine.units.len() {
            let name = self.engine.units.units().get(i).map_or("<out of range>", |u| u.name.as_str());
            return Err(Error::invalid(format!(
                "offload engine: unit {i} ({name}) requested after {passed} units were passed in this forward; a model takes its units in declared order, each at most once per forward"
            )));
        }
        (passed..i).try_for_each(|j| self.engine.skip(j))
    }

    /// Passes over every unit not yet taken, so the next forward starts at the first unit.
    fn finish(&self) -> Result<()> {
        let passed = self.engine.state.lock().passed;
        let r = (passed..self.engine.units.len()).try_for_each(|j| self.engine.skip(j));
        let mut st = self.engine.state.lock();
        st.in_forward = false;
        if let Err(e) = &r {
            st.failed.get_or_insert(e.to_string());
        }
        r
    }
}

impl Drop for Forward<'_> {
    /// Reached only when the forward's closure panicked ([`Engine::forward`] finishes and forgets the
    /// handle otherwise): the guards were dropped by the unwinding; pass over the rest.
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

/// Unit weights on the device, valid for device work queued while the guard lives. Dropping it ends
/// the lease of its tensors and lets the engine reuse the memory once the whole group is done.
pub struct UnitGuard<'a> {
    engine: &'a Engine,
    unit: usize,
    occ: Option<u64>,
    tensors: Vec<Tensor>,
    lease: Arc<Lease>,
}

impl UnitGuard<'_> {
    pub fn id(&self) -> UnitId {
        UnitId(self.unit)
    }
    pub fn name(&self) -> &str {
        &self.engine.units.unit(self.unit).name
    }
    /// The unit's tensors in declared order.
    pub fn tensors(&self) -> &[Tensor] {
        &self.tensors
    }
    /// The weight `p` declares; an error when `p` belongs to another unit.
    pub fn get(&self, p: Param) -> Result<&Tensor> {
        match self.tensors.get(p.index) {
            Some(t) if p.unit.0 == self.unit => Ok(t),
            _ => Err(Error::invalid(format!(
                "parameter {} of unit {} read through the guard of unit {}",
                p.index,
                self.engine.units.units().get(p.unit.0).map_or("<out of range>", |u| u.name.as_str()),
                self.name()
            ))),
        }
    }
    /// The tensor with this (checkpoint) name.
    pub fn get_named(&self, name: &str) -> Result<&Tensor> {
        let specs = &self.engine.units.unit(self.unit).tensors;
        specs
            .iter()
            .position(|t| t.name == name)
            .map(|k| &self.tensors[k])
            .ok_or_else(|| Error::invalid(format!("unit {} has no tensor {name}", self.name())))
    }
    /// Drops the guard, returning a failure to fence its slot (dropping reports it on the next call).
    pub fn release(mut self) -> Result<()> {
        self.lease.end();
        let occ = self.occ.take();
        self.engine.drop_guard(self.unit, occ)
    }
}

impl Drop for UnitGuard<'_> {
    fn drop(&mut self) {
        self.lease.end();
        if let Err(e) = self.engine.drop_guard(self.unit, self.occ.take()) {
            let mut st = self.engine.state.lock();
            st.failed.get_or_insert(e.to_string());
        }
    }
}
