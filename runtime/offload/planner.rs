//! The planner: the fastest plan that fits a VRAM budget.
//!
//! Preference order, first that fits wins: resident; hybrid with the largest resident part (prefix
//! plus suffix; the rest streamed by blocks or by leaves, whichever leaves more resident); block
//! streaming (one block per group); leaf streaming. Streamed always beats synchronous: both need the
//! same K >= 2 slots, so synchronous is only planned when asked for.
//!
//! Streaming with prefetch packs its groups into a byte ring by default ([`Area::Auto`]), when the
//! ring fits the budget: leaf units differ in size (a 14B FFN matrix is 135 MiB, a norm a few KiB),
//! and in K slots of the largest the copy stream runs only K units ahead, stalling on runs of small
//! units (1.19x the floor at 5 latent frames on an H100, 1.004x with the ring). Block streaming has
//! small groups too (the embeddings before the blocks, the head after them), each taking a whole
//! slot at the forward boundary: at 5 latent frames on an H100, 14B block:1 ran 1.036-1.037x the
//! floor in 2 slots, 1.026-1.031x in 3, 0.999-1.000x in the ring (whose 3-block reservation equals 3
//! slots); 1.3B 1.036-1.042x, 1.036-1.038x, 1.012-1.016x. Block hybrids keep K slots: their
//! reservation decides how much stays resident.
//!
//! K is 2 unless the caller asks for more. A third slot only fits by displacing resident weights of
//! at least its size (whatever is left after the resident part is smaller than the next unit, hence
//! than a slot), and a resident byte saves its whole transfer, while a third slot saves at most the
//! copy-engine idle time after a compute-heavy group, which is shorter than that group's transfer
//! when the run is transfer-bound and irrelevant when it is compute-bound.

use super::layout::ModelUnits;
use super::plan::{group_range, Grouping, Mode, Plan};
use super::size::fmt_bytes;
use crate::{Error, Result};

/// The most device slots a plan may ask for: K slots of the largest group must stay a representable
/// byte count (a 14B block is 0.8 GiB; 64 of them already exceed any card).
pub const MAX_SLOTS: usize = 64;

/// The device area streamed groups pass through.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Area {
    /// A byte ring for streamed leaves and blocks when it fits the budget, K slots otherwise (block
    /// hybrids keep K slots).
    #[default]
    Auto,
    /// K slots of the largest group's size.
    Slots,
    /// A byte ring ([`Plan::with_ring`]) for every streamed plan; the budget must hold it.
    Ring,
}

/// What the caller wants fixed. `mode: None` lets the planner choose; `slots: None` picks K; `area`
/// chooses between K equal slots and a byte ring.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Prefs {
    pub mode: Option<Mode>,
    pub slots: Option<usize>,
    pub area: Area,
}

/// Whether [`Area::Auto`] takes a ring for this mode: streamed leaves, streamed leaf hybrids and
/// streamed blocks (see the module doc).
fn auto_ring(mode: Mode) -> bool {
    matches!(
        mode,
        Mode::Leaf { streamed: true } | Mode::Block { streamed: true, .. } | Mode::Hybrid { group: Grouping::Leaf, streamed: true, .. }
    )
}

/// `p` with the area `area` asks for: `Auto` keeps the slots when the ring does not fit `budget`.
fn shape(p: Plan, area: Area, budget: u64) -> Result<Plan> {
    match area {
        Area::Slots => Ok(p),
        Area::Ring => p.with_ring(),
        Area::Auto if auto_ring(p.mode()) => {
            let ring = p.clone().with_ring()?;
            Ok(if ring.expected_vram() <= budget { ring } else { p })
        }
        Area::Auto => Ok(p),
    }
}

/// The smallest budget any plan of this model fits: the activation peak plus two slots holding the
/// largest unit (leaf-level streaming), or plus all weights if that is less (resident).
pub fn minimum_budget(units: &ModelUnits, activation_peak: u64) -> u64 {
    activation_peak.saturating_add((2 * units.largest_unit().1).min(units.total_bytes()))
}

fn sizes(n: u64) -> String {
    format!("{} ({n} bytes)", fmt_bytes(n))
}

fn too_small(units: &ModelUnits, budget: u64, activation_peak: u64) -> Error {
    let (i, largest) = units.largest_unit();
    let min = minimum_budget(units, activation_peak);
    let weights = if 2 * largest <= units.total_bytes() {
        format!("2 slots x largest unit {} ({}), leaf-level streaming", units.unit(i).name, fmt_bytes(largest))
    } else {
        format!("all weights ({}), resident", fmt_bytes(units.total_bytes()))
    };
    Error::invalid(format!(
        "VRAM budget {} is below the minimum of {} this model needs: activation peak {} + {weights}",
        sizes(budget),
        sizes(min),
        fmt_bytes(activation_peak),
    ))
}

/// The fastest plan for `units` within `budget` bytes of device memory, the run needing
/// `activation_peak` bytes besides the weights. Errors name the minimum budget when nothing fits.
pub fn plan_for(units: &ModelUnits, budget: u64, activation_peak: u64, prefs: Prefs) -> Result<Plan> {
    if let Some(k) = prefs.slots.filter(|&k| k > MAX_SLOTS) {
        return Err(Error::invalid(format!("--slots {k}: at most {MAX_SLOTS} slots are supported (2 double-buffer; a few more only help small groups)")));
    }
    let fits = |p: &Plan| p.expected_vram() <= budget;
    // With `Area::Ring`, every streamed candidate is judged with its ring (at least the K slots' size).
    let shaped = |p: Plan| shape(p, prefs.area, budget);
    if let Some(mode) = prefs.mode {
        let p = shaped(Plan::new(units, mode, prefs.slots.unwrap_or(2), activation_peak)?)?;
        if !fits(&p) {
            return Err(Error::invalid(format!(
                "VRAM budget {} is too small for {mode}: it needs {} (weights {} + activations {}); {}",
                sizes(budget),
                sizes(p.expected_vram()),
                fmt_bytes(p.weight_vram()),
                fmt_bytes(activation_peak),
                match minimum_budget(units, activation_peak) {
                    min if min <= budget => format!("--offload auto would fit it (the smallest plan for this model needs {})", sizes(min)),
                    min => format!("the smallest plan for this model needs {}", sizes(min)),
                }
            )));
        }
        return Ok(p.with_budget(budget));
    }
    let resident = Plan::new(units, Mode::Resident, 0, activation_peak)?;
    if fits(&resident) {
        return Ok(resident.with_budget(budget));
    }
    if budget < minimum_budget(units, activation_peak) {
        return Err(too_small(units, budget, activation_peak));
    }
    let k = prefs.slots.unwrap_or(2);
    let mut best: Option<Plan> = None;
    for group in [Grouping::Blocks(1), Grouping::Leaf] {
        if let Some(p) = best_hybrid(units, budget, activation_peak, group, k, prefs.area)? {
            if best.as_ref().is_none_or(|b| p.resident_bytes() > b.resident_bytes()) {
                best = Some(p);
            }
        }
    }
    if let Some(p) = best {
        return Ok(p.with_budget(budget));
    }
    for mode in [Mode::Block { n: 1, streamed: true }, Mode::Leaf { streamed: true }] {
        let p = shaped(Plan::new(units, mode, k, activation_peak)?)?;
        if fits(&p) {
            return Ok(p.with_budget(budget));
        }
    }
    // Leaf streaming with K = 2 fits whenever the minimum does, so this is reached only with more
    // slots or a ring forced: the budget holds the minimum, not what those settings add to it.
    let need = [Mode::Block { n: 1, streamed: true }, Mode::Leaf { streamed: true }]
        .into_iter()
        .map(|mode| Ok(shaped(Plan::new(units, mode, k, activation_peak)?)?.expected_vram()))
        .collect::<Result<Vec<u64>>>()?
        .into_iter()
        .min()
        .unwrap_or(u64::MAX);
    let (area, fix) = if prefs.area == Area::Ring {
        ("the byte ring --ring forces (at least 2 slots of the largest unit)".to_string(), "drop --ring")
    } else {
        (format!("{k} slots of the largest unit"), "use fewer --slots")
    };
    Err(Error::invalid(format!(
        "VRAM budget {} cannot hold {area} besides the activations ({}): streaming with these settings needs {}; \
         raise --vram to that, or {fix} (the smallest plan, 2 slots, needs {})",
        sizes(budget),
        fmt_bytes(activation_peak),
        sizes(need),
        sizes(minimum_budget(units, activation_peak))
    )))
}

/// The hybrid with the most resident bytes whose streamed part uses `group` and `k` slots (or the
/// ring `area` asks for), or `None` when no unit can be kept resident. The streamed area is first
/// reserved for the whole model's largest group, an upper bound of the streamed part's: K slots of
/// it, or for a ring 3 of it (the pair rule a + 2b never needs more), so the chosen plan fits; then
/// the room the chosen plan's area leaves unused is given to resident units while it still fits. Under
/// `Area::Auto` a leaf-grouped hybrid keeps a ring at the cost of that extra slot of resident bytes:
/// one 14B leaf slot is ~6 ms of transfer per forward, while K slots stall leaf streaming by far
/// more (see the module doc).
fn best_hybrid(units: &ModelUnits, budget: u64, act: u64, group: Grouping, k: usize, area: Area) -> Result<Option<Plan>> {
    let n = units.len();
    let slot = group_range(units, 0..n, group).into_iter().map(|r| units.range_bytes(r)).max().unwrap_or(0);
    let hybrid = |prefix, suffix| Mode::Hybrid { prefix, suffix, group, streamed: true };
    let ring = area == Area::Ring || (area == Area::Auto && auto_ring(hybrid(0, 0)));
    let reserve = if ring { k.max(3) as u64 * slot } else { k as u64 * slot };
    let Some(avail) = budget.checked_sub(act + reserve) else {
        // Under Auto, a budget too small for the ring's reservation may still hold the slots.
        return if ring && area == Area::Auto { best_hybrid(units, budget, act, group, k, Area::Slots) } else { Ok(None) };
    };
    let mut pre = vec![0u64; n + 1];
    for i in 0..n {
        pre[i + 1] = pre[i] + units.unit_bytes(i);
    }
    let suf = |s: usize| pre[n] - pre[n - s];
    // The prefix and suffix lengths keeping the most bytes within `avail`. Two pointers: the longest
    // suffix that still fits shrinks as the prefix grows.
    let split = |avail: u64| {
        let (mut best, mut s) = ((0usize, 0usize, 0u64), n);
        for (p, &head) in pre.iter().enumerate().take(n) {
            if head > avail {
                break;
            }
            while s > 0 && (p + s >= n || head + suf(s) > avail) {
                s -= 1;
            }
            let bytes = head + suf(s);
            if bytes >= best.2 && bytes > 0 {
                best = (p, s, bytes);
            }
        }
        best
    };
    let build = |(prefix, suffix, _): (usize, usize, u64)| -> Result<Plan> {
        let p = Plan::new(units, hybrid(prefix, suffix), k, act)?;
        if ring {
            p.with_ring()
        } else {
            Ok(p)
        }
    };
    let mut best = split(avail);
    if best.2 == 0 {
        return Ok(None);
    }
    let mut plan = build(best)?;
    if plan.expected_vram() > budget {
        return Ok(None);
    }
    // The reservation was an upper bound (the whole model's largest group, the ring's worst case):
    // the room the chosen plan's area leaves unused goes to resident units. More resident units can
    // move the largest group into the streamed part and grow the area (the bytes kept are not
    // monotone in the room), so 64 room sizes up to the unused room are tried; the most resident
    // bytes among those that fit win.
    let (lo, hi) = (avail, budget.saturating_sub(act + plan.stream_area_bytes()));
    if hi > lo {
        for j in 1..=64u64 {
            let more = split(lo + (hi - lo) * j / 64);
            if more.2 <= best.2 {
                continue;
            }
            let p = build(more)?;
            if p.expected_vram() <= budget {
                (best, plan) = (more, p);
            }
        }
    }
    Ok(Some(plan))
}
