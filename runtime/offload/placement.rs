//! Where streamed group occurrences live in device memory, and which earlier occurrences an upload
//! overwrites. Pure bookkeeping (no CUDA), so the protocol's invariants are tested on the CPU.
//!
//! Two layouts of one device area:
//! - K slots of the largest group's size: occurrence `c` goes to slot `c % K` (the classic double
//!   buffer, K >= 2);
//! - a byte ring: occurrences are packed back to back and wrap to offset 0 when the next one does not
//!   fit before the end. Small groups then take little room, so the copy stream can run many groups
//!   ahead in the memory K slots of the largest would take (leaf streaming, where one unit is 300 MiB
//!   and most are 50-135 MiB).
//!
//! An upload may only overwrite occurrences that are released (their compute is queued and fenced by
//! their `consumed` event); [`Placement::probe`] names the first unreleased one it would overwrite.

/// One uploaded occurrence still occupying part of the area.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Held {
    /// Position in the engine's cycle of streamed groups (0, 1, 2, ... across forwards).
    pub occ: u64,
    pub off: u64,
    pub len: u64,
    /// Live guards handed out for its units.
    pub live: usize,
    /// Its last unit has been requested (or skipped).
    pub complete: bool,
    /// Complete with no live guard: its region may be overwritten once `consumed` is waited on.
    pub released: bool,
    /// The compute stream already waits for its upload.
    pub waited: bool,
    /// Index of its event pair (uploaded, consumed) in the engine's pool; `None` for synchronous
    /// uploads, which stream order alone fences.
    pub ev: Option<usize>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    Slots { k: u64, slot: u64 },
    Ring,
}

/// The occupancy of the device area that streamed weights pass through.
#[derive(Clone, Debug)]
pub(crate) struct Placement {
    layout: Layout,
    capacity: u64,
    /// Ring: where the next occurrence goes if it fits before the end.
    cursor: u64,
    held: Vec<Held>,
}

impl Placement {
    /// K slots of `slot` bytes each.
    pub fn slots(k: usize, slot: u64) -> Placement {
        Placement { layout: Layout::Slots { k: k as u64, slot }, capacity: k as u64 * slot, cursor: 0, held: Vec::new() }
    }

    /// A byte ring of `capacity` bytes.
    pub fn ring(capacity: u64) -> Placement {
        Placement { layout: Layout::Ring, capacity, cursor: 0, held: Vec::new() }
    }

    /// Bytes of device memory the area needs.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// The offset occurrence `u` of `len` bytes would take if uploaded now, with the indices (into
    /// [`Placement::held`]) of the occurrences it would overwrite; `Err(occ)` names the first of
    /// those that is not released yet.
    pub fn probe(&self, u: u64, len: u64) -> std::result::Result<(u64, Vec<usize>), u64> {
        let off = match self.layout {
            Layout::Slots { k, slot } => {
                debug_assert!(len <= slot, "a group larger than a slot");
                (u % k) * slot
            }
            Layout::Ring if self.cursor + len <= self.capacity => self.cursor,
            Layout::Ring => 0,
        };
        let over: Vec<usize> = (0..self.held.len()).filter(|&j| overlaps(self.layout, &self.held[j], off, len)).collect();
        match over.iter().map(|&j| &self.held[j]).filter(|h| !h.released).min_by_key(|h| h.occ) {
            Some(h) => Err(h.occ),
            None => Ok((off, over)),
        }
    }

    /// Records occurrence `u` at `off` (from [`Placement::probe`]), removing the occurrences it
    /// overwrites; returns them (their event pairs are free again once the caller has queued the
    /// copy's waits on their `consumed` events).
    pub fn commit(&mut self, u: u64, off: u64, len: u64, ev: Option<usize>) -> Vec<Held> {
        let layout = self.layout;
        let (gone, mut keep): (Vec<Held>, Vec<Held>) = std::mem::take(&mut self.held).into_iter().partition(|h| overlaps(layout, h, off, len));
        keep.push(Held { occ: u, off, len, live: 0, complete: false, released: false, waited: false, ev });
        self.held = keep;
        if self.layout == Layout::Ring {
            self.cursor = off + len;
        }
        gone
    }

    /// The occurrences in the area, oldest first.
    pub fn held(&self) -> &[Held] {
        &self.held
    }

    pub fn get_mut(&mut self, occ: u64) -> Option<&mut Held> {
        self.held.iter_mut().find(|h| h.occ == occ)
    }
}

/// Whether held occurrence `h` occupies any of `off..off + len`: with slots, the previous occupant of
/// the same slot whatever its length; in the ring, any overlapping byte.
fn overlaps(layout: Layout, h: &Held, off: u64, len: u64) -> bool {
    match layout {
        Layout::Slots { slot, .. } => h.off / slot == off / slot,
        Layout::Ring => h.off < off + len && off < h.off + h.len,
    }
}

/// The smallest ring for a cycle of streamed groups of these sizes (in upload order, repeating) in
/// which a model may hold one group's guards while the next is uploaded: for each consecutive pair
/// (a, b), wrapping, `a + 2b`. If b does not fit after a, it wraps to offset 0; a then started past
/// `capacity - a - b >= b`, so b's bytes stay clear of it.
pub fn ring_minimum(group_bytes: &[u64]) -> u64 {
    let n = group_bytes.len();
    (0..n).map(|i| group_bytes[i] + 2 * group_bytes[(i + 1) % n]).max().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Drives a placement like the engine does: uploads run ahead as far as released occurrences
    /// allow; the consumer takes occurrences in order, holding each while the next is acquired
    /// (two consecutive at once), then releases it. Checks that unreleased occurrences never overlap,
    /// everything stays inside the area, and the cycle never stalls. Returns how many occurrences
    /// were uploaded ahead of the one being acquired, on average after the first forward.
    fn drive(mut p: Placement, sizes: &[u64], forwards: usize) -> f64 {
        let total = (sizes.len() * forwards) as u64;
        let (mut issued, mut ahead_sum, mut ahead_n) = (0u64, 0u64, 0u64);
        let mut ev_free: Vec<usize> = Vec::new();
        let mut ev_next = 0;
        for c in 0..total {
            // Pump: issue as far ahead as the area allows.
            loop {
                if issued >= total {
                    break;
                }
                let len = sizes[(issued % sizes.len() as u64) as usize];
                match p.probe(issued, len) {
                    Ok((off, _)) => {
                        assert!(off + len <= p.capacity(), "occurrence {issued} at {off}+{len} past {}", p.capacity());
                        let ev = ev_free.pop().unwrap_or_else(|| {
                            ev_next += 1;
                            ev_next - 1
                        });
                        for gone in p.commit(issued, off, len, Some(ev)) {
                            assert!(gone.released, "overwrote unreleased occurrence {}", gone.occ);
                            ev_free.extend(gone.ev);
                        }
                        issued += 1;
                    }
                    Err(_) => break,
                }
            }
            assert!(issued > c, "stalled: occurrence {c} cannot be uploaded while {} is held", c.saturating_sub(1));
            if c >= sizes.len() as u64 && issued < total {
                ahead_sum += issued - c - 1;
                ahead_n += 1;
            }
            // No two unreleased occurrences overlap, and no two live event indices coincide.
            let live: Vec<&Held> = p.held().iter().collect();
            for (i, a) in live.iter().enumerate() {
                for b in &live[i + 1..] {
                    assert_ne!(a.ev, b.ev, "event pair shared by {} and {}", a.occ, b.occ);
                    if !a.released && !b.released {
                        assert!(a.off + a.len <= b.off || b.off + b.len <= a.off, "{} and {} overlap", a.occ, b.occ);
                    }
                }
            }
            // Acquire c (c - 1 is still held), then release c - 1.
            p.get_mut(c).expect("issued occurrence is held").live = 1;
            if c > 0 {
                let prev = p.get_mut(c - 1).expect("previous occurrence still held");
                prev.live = 0;
                prev.complete = true;
                prev.released = true;
            }
        }
        ahead_sum as f64 / ahead_n.max(1) as f64
    }

    #[test]
    fn slots_run_k_ahead_and_never_overwrite_live_weights() {
        let sizes = [10, 300, 40, 50, 135, 135, 50, 50, 50, 1];
        for k in [2usize, 3, 5] {
            // Slot (c - 1) % K is held, the other K - 1 hold c and the uploads after it.
            let ahead = drive(Placement::slots(k, 300), &sizes, 4);
            assert_eq!(ahead, (k - 2) as f64, "K = {k}");
        }
    }

    #[test]
    fn ring_packs_small_groups_and_runs_further_ahead() {
        // The 14B's leaf units in MiB: the 300 MiB time_proj, then block Linears of 50 and 135.
        let mut sizes = vec![1, 5, 100, 300, 40, 50];
        for _ in 0..3 {
            sizes.extend([1, 50, 50, 50, 50, 50, 50, 50, 50, 135, 135]);
        }
        let min = ring_minimum(&sizes);
        assert_eq!(min, 100 + 2 * 300);
        let slots = drive(Placement::slots(2, 300), &sizes, 3);
        let ring = drive(Placement::ring(min), &sizes, 3);
        assert_eq!(slots, 0.0);
        eprintln!("uploads ahead on average: 2 slots {slots}, ring {ring}");
        assert!(ring >= 3.0, "the ring ran only {ring} ahead on average");
    }

    #[test]
    fn ring_at_its_minimum_never_stalls_on_awkward_sizes() {
        // Sizes chosen so wraps leave gaps of every kind; many rotations of the cycle.
        let base = [7u64, 29, 3, 31, 17, 2, 23, 19, 5, 30, 11];
        for rot in 0..base.len() {
            let sizes: Vec<u64> = base.iter().cycle().skip(rot).take(base.len()).copied().collect();
            let min = ring_minimum(&sizes);
            for extra in [0, 1, 13, 40] {
                drive(Placement::ring(min + extra), &sizes, 7);
            }
        }
    }

    #[test]
    fn probe_names_the_unreleased_occurrence_in_the_way() {
        let mut p = Placement::ring(100);
        let (off, over) = p.probe(0, 60).unwrap();
        assert_eq!((off, over.len()), (0, 0));
        p.commit(0, off, 60, Some(0));
        let (off, _) = p.probe(1, 40).unwrap();
        assert_eq!(off, 60);
        p.commit(1, off, 40, Some(1));
        // Occurrence 2 wraps to 0 and would overwrite occurrence 0, which is live.
        assert_eq!(p.probe(2, 30), Err(0));
        p.get_mut(0).unwrap().released = true;
        let (off, over) = p.probe(2, 30).unwrap();
        assert_eq!((off, over.len()), (0, 1));
        let gone = p.commit(2, off, 30, Some(0));
        assert_eq!(gone.iter().map(|h| h.occ).collect::<Vec<_>>(), vec![0]);
        assert_eq!(p.held().iter().map(|h| h.occ).collect::<Vec<_>>(), vec![1, 2]);
    }

    #[test]
    fn slots_wait_for_the_previous_occupant_only() {
        let mut p = Placement::slots(2, 100);
        for u in 0..2 {
            let (off, over) = p.probe(u, 70).unwrap();
            assert!(over.is_empty());
            p.commit(u, off, 70, Some(u as usize));
        }
        assert_eq!(p.probe(2, 10), Err(0));
        p.get_mut(0).unwrap().released = true;
        assert_eq!(p.probe(2, 10).map(|(o, v)| (o, v.len())), Ok((0, 1)));
        assert_eq!(p.probe(3, 10), Err(1), "occurrence 3 goes to slot 1, held by occurrence 1");
    }
}
