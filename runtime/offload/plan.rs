//! Offload plans: which consecutive units are uploaded together (groups), which groups stay resident,
//! and how many device slots stream the rest. Pure CPU: a plan can be built and printed without a GPU.

use std::ops::Range;

use super::layout::ModelUnits;
use super::size::fmt_bytes;
use crate::{Error, Result};

/// How streamed units are grouped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grouping {
    /// `n` consecutive blocks per group. Units outside any block are groups of their own.
    Blocks(usize),
    /// Every unit its own group.
    Leaf,
}

/// Where the weights live during a forward.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Every unit on the device for the engine's lifetime.
    Resident,
    /// Groups of `n` blocks through the slots; `streamed` prefetches on the copy stream, otherwise
    /// each group is uploaded on the compute stream just before use.
    Block { n: usize, streamed: bool },
    /// Each unit through the slots on its own.
    Leaf { streamed: bool },
    /// The first `prefix` and last `suffix` units resident, the rest through the slots.
    Hybrid { prefix: usize, suffix: usize, group: Grouping, streamed: bool },
}

impl Mode {
    /// Whether streamed groups are prefetched on the copy stream (false: resident, or uploaded on
    /// the compute stream just before use).
    pub fn prefetches(&self) -> bool {
        match *self {
            Mode::Resident => false,
            Mode::Block { streamed, .. } | Mode::Leaf { streamed } | Mode::Hybrid { streamed, .. } => streamed,
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let how = |s: bool| if s { "streamed" } else { "synchronous" };
        match *self {
            Mode::Resident => write!(f, "resident"),
            Mode::Block { n, streamed } => write!(f, "block level, {n} block(s) per group, {}", how(streamed)),
            Mode::Leaf { streamed } => write!(f, "leaf level, {}", how(streamed)),
            Mode::Hybrid { prefix, suffix, group, streamed } => {
                let g = match group {
                    Grouping::Blocks(n) => format!("{n} block(s) per group"),
                    Grouping::Leaf => "leaf units".to_string(),
                };
                write!(f, "hybrid, first {prefix} and last {suffix} units resident, the rest {} in {g}", how(streamed))
            }
        }
    }
}

/// Consecutive units uploaded (or kept) together, packed back to back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    pub units: Range<usize>,
    pub resident: bool,
    pub bytes: u64,
    /// The unit name, or `first .. last` for several units (for printing).
    pub label: String,
}

/// A mode applied to a model: groups in declared order, K slots sized to the largest streamed group
/// (or, with [`Plan::with_ring`], one byte ring the streamed groups are packed into).
#[derive(Clone, Debug)]
pub struct Plan {
    mode: Mode,
    groups: Vec<Group>,
    unit_group: Vec<usize>,
    slots: usize,
    slot_bytes: u64,
    /// Bytes of the byte ring; 0 when streamed groups use the K slots.
    ring_bytes: u64,
    resident_bytes: u64,
    streamed_bytes: u64,
    activation_peak: u64,
    budget: Option<u64>,
    unit_names: (String, String),
}

/// Splits `r` into groups: single units (leaf), or runs of `n` blocks where each unit without a block
/// stands alone.
pub(crate) fn group_range(units: &ModelUnits, r: Range<usize>, g: Grouping) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let n = match g {
        Grouping::Leaf => return r.map(|i| i..i + 1).collect(),
        Grouping::Blocks(n) => n.max(1),
    };
    let block = |i: usize| units.unit(i).block;
    let mut i = r.start;
    while i < r.end {
        let start = i;
        if block(i).is_none() {
            out.push(i..i + 1);
            i += 1;
            continue;
        }
        // Take up to n block runs, stopping at a unit outside any block.
        let mut runs = 0;
        while i < r.end && runs < n && block(i).is_some() {
            let b = block(i);
            while i < r.end && block(i) == b {
                i += 1;
            }
            runs += 1;
        }
        out.push(start..i);
    }
    out
}

impl Plan {
    /// The plan for `mode` with `slots` device slots (ignored when nothing is streamed; at least 2
    /// otherwise, so the next group can upload while the current one computes and a model may hold
    /// two consecutive units at once). `activation_peak` is the run's own peak of non-weight device
    /// memory, counted in [`Plan::expected_vram`].
    pub fn new(units: &ModelUnits, mode: Mode, slots: usize, activation_peak: u64) -> Result<Plan> {
        let n = units.len();
        let (prefix, suffix, grouping) = match mode {
            Mode::Resident => (n, 0, Grouping::Blocks(1)),
            Mode::Block { n: 0, .. } | Mode::Hybrid { group: Grouping::Blocks(0), .. } => {
                return Err(Error::invalid("offload plan: block groups need at least one block (n >= 1)"))
            }
            Mode::Block { n, .. } => (0, 0, Grouping::Blocks(n)),
            Mode::Leaf { .. } => (0, 0, Grouping::Leaf),
            Mode::Hybrid { prefix, suffix, group, .. } => {
                if prefix.checked_add(suffix).is_none_or(|s| s >= n) {
                    return Err(Error::invalid(format!(
                        "offload plan: hybrid keeps {prefix} + {suffix} of the {n} units resident; at least one must be streamed (use resident mode instead)"
                    )));
                }
                (prefix, suffix, group)
            }
        };
        let mut groups = Vec::new();
        let mut push = |rs: Vec<Range<usize>>, resident: bool| {
            for r in rs {
                let first = &units.unit(r.start).name;
                let label = if r.len() == 1 { first.clone() } else { format!("{first} .. {}", units.unit(r.end - 1).name) };
                groups.push(Group { bytes: units.range_bytes(r.clone()), units: r, resident, label });
            }
        };
        push(group_range(units, 0..prefix, Grouping::Blocks(1)), true);
        push(group_range(units, prefix..n - suffix, grouping), false);
        push(group_range(units, n - suffix..n, Grouping::Blocks(1)), true);
        let streamed_groups = groups.iter().filter(|g| !g.resident);
        let slot_bytes = streamed_groups.clone().map(|g| g.bytes).max().unwrap_or(0);
        let any_streamed = streamed_groups.count() > 0;
        if any_streamed && slots < 2 {
            return Err(Error::invalid(format!("offload plan: {slots} slot(s) requested; streaming needs at least 2")));
        }
        let mut unit_group = vec![0; n];
        for (gi, g) in groups.iter().enumerate() {
            unit_group[g.units.clone()].fill(gi);
        }
        let resident_bytes = groups.iter().filter(|g| g.resident).map(|g| g.bytes).sum();
        Ok(Plan {
            mode,
            unit_group,
            slots: if any_streamed { slots } else { 0 },
            slot_bytes,
            ring_bytes: 0,
            resident_bytes,
            streamed_bytes: units.total_bytes() - resident_bytes,
            activation_peak,
            budget: None,
            unit_names: (units.unit(0).name.clone(), units.unit(n - 1).name.clone()),
            groups,
        })
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }
    pub fn groups(&self) -> &[Group] {
        &self.groups
    }
    /// Group index of unit `i`.
    pub fn group_of(&self, unit: usize) -> usize {
        self.unit_group[unit]
    }
    pub fn unit_count(&self) -> usize {
        self.unit_group.len()
    }
    /// Indices of the streamed groups, in the cyclic order the engine uploads them.
    pub fn streamed_groups(&self) -> Vec<usize> {
        (0..self.groups.len()).filter(|&g| !self.groups[g].resident).collect()
    }
    /// Whether streamed groups are prefetched on the copy stream (false: uploaded on the compute
    /// stream just before use; also false when nothing is streamed).
    pub fn prefetch(&self) -> bool {
        self.mode.prefetches()
    }
    /// K, the number of device slots (0 when nothing is streamed).
    pub fn slots(&self) -> usize {
        self.slots
    }
    pub fn slot_bytes(&self) -> u64 {
        self.slot_bytes
    }
    pub fn resident_bytes(&self) -> u64 {
        self.resident_bytes
    }
    /// Bytes uploaded per forward.
    pub fn streamed_bytes(&self) -> u64 {
        self.streamed_bytes
    }
    pub fn activation_peak(&self) -> u64 {
        self.activation_peak
    }
    /// The budget the planner chose this plan for, if any.
    pub fn budget(&self) -> Option<u64> {
        self.budget
    }
    /// The byte ring's size, when streamed groups are packed into one ([`Plan::with_ring`]).
    pub fn ring_bytes(&self) -> Option<u64> {
        (self.ring_bytes > 0).then_some(self.ring_bytes)
    }
    /// Device bytes streamed weights pass through: the ring, or K slots.
    pub fn stream_area_bytes(&self) -> u64 {
        if self.ring_bytes > 0 {
            self.ring_bytes
        } else {
            self.slots as u64 * self.slot_bytes
        }
    }
    /// This plan with its streamed groups packed into one byte ring instead of K equal slots: the
    /// size of the K slots, or the smallest ring in which the model can hold one group while the
    /// next uploads ([`super::ring_minimum`]), whichever is larger. Small groups then take little
    /// room and the copy stream runs further ahead in the same memory. Streamed (prefetching) plans
    /// only; a plan without streamed groups is returned as it is.
    pub fn with_ring(mut self) -> Result<Plan> {
        let sizes: Vec<u64> = self.groups.iter().filter(|g| !g.resident).map(|g| g.bytes).collect();
        if sizes.is_empty() {
            return Ok(self);
        }
        if !self.prefetch() {
            return Err(Error::invalid(format!(
                "offload plan: a byte ring serves prefetching on the copy stream; {} uploads each group right before use",
                self.mode
            )));
        }
        self.ring_bytes = (self.slots as u64 * self.slot_bytes).max(super::placement::ring_minimum(&sizes));
        Ok(self)
    }
    /// Weight bytes on the device: resident groups plus the slots or the ring.
    pub fn weight_vram(&self) -> u64 {
        self.resident_bytes + self.stream_area_bytes()
    }
    /// Peak device memory of a run: weights plus the activation peak.
    pub fn expected_vram(&self) -> u64 {
        self.weight_vram() + self.activation_peak
    }
    /// Host RAM with a pinned arena: the streamed units, once.
    pub fn host_bytes_pinned(&self) -> u64 {
        self.streamed_bytes
    }
    /// Host RAM (pinned) of the low-RAM mode with `buffers` staging buffers, page cache not counted.
    pub fn host_bytes_staging(&self, buffers: usize) -> u64 {
        buffers as u64 * self.slot_bytes
    }
    pub(crate) fn with_budget(mut self, budget: u64) -> Plan {
        self.budget = Some(budget);
        self
    }
    /// Whether this plan was built for `units` (same count, same packed sizes, same ends).
    pub(crate) fn matches(&self, units: &ModelUnits) -> bool {
        units.len() == self.unit_count()
            && self.groups.iter().all(|g| g.units.end <= units.len() && units.range_bytes(g.units.clone()) == g.bytes)
            && units.unit(0).name == self.unit_names.0
            && units.unit(units.len() - 1).name == self.unit_names.1
    }
}

impl std::fmt::Display for Plan {
    /// A summary; the alternate form (`{:#}`) also lists every group.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let streamed = self.groups.iter().filter(|g| !g.resident).count();
        writeln!(f, "offload plan: {}", self.mode)?;
        writeln!(
            f,
            "  units {}, groups {} ({} resident, {streamed} streamed)",
            self.unit_count(),
            self.groups.len(),
            self.groups.len() - streamed
        )?;
        writeln!(f, "  resident weights  {}", fmt_bytes(self.resident_bytes))?;
        if self.ring_bytes > 0 {
            writeln!(f, "  byte ring         {} (groups packed back to back, largest {})", fmt_bytes(self.ring_bytes), fmt_bytes(self.slot_bytes))?;
            writeln!(f, "  uploaded/forward  {}", fmt_bytes(self.streamed_bytes))?;
        } else if self.slots > 0 {
            let total = self.slots as u64 * self.slot_bytes;
            writeln!(f, "  slots             {} x {} = {}", self.slots, fmt_bytes(self.slot_bytes), fmt_bytes(total))?;
            writeln!(f, "  uploaded/forward  {}", fmt_bytes(self.streamed_bytes))?;
        }
        writeln!(f, "  activation peak   {}", fmt_bytes(self.activation_peak))?;
        let budget = self.budget.map(|b| format!(" (budget {})", fmt_bytes(b))).unwrap_or_default();
        writeln!(f, "  expected VRAM     {}{budget}", fmt_bytes(self.expected_vram()))?;
        if self.slots > 0 {
            write!(
                f,
                "  host RAM          {} pinned arena, or {} in low-RAM mode (3 staging buffers, disk-bound)",
                fmt_bytes(self.host_bytes_pinned()),
                fmt_bytes(self.host_bytes_staging(3))
            )?;
        } else {
            write!(f, "  host RAM          none kept (weights are uploaded once through a staging buffer)")?;
        }
        if f.alternate() {
            for (i, g) in self.groups.iter().enumerate() {
                let kind = if g.resident { "resident" } else { "streamed" };
                let r = format!("{:?}", g.units);
                write!(f, "\n    group {i:>4} {kind} units {r:<12} {:>12}  {}", fmt_bytes(g.bytes), g.label)?;
            }
        }
        Ok(())
    }
}
