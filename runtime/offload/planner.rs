//! The planner: the fastest plan that fits a VRAM budget.
//!
//! Preference order, first that fits wins: resident; hybrid with the largest resident part (prefix
//! plus suffix; the rest streamed by blocks or by leaves, whichever leaves more resident); block
//! streaming (one block per group); leaf streaming. Streamed always beats synchronous: both need the
//! same K >= 2 slots, so synchronous is only planned when asked for.
//!
//! K is 2 unless the caller asks for more. A third slot only fits by displacing resident weights of
//! at least its size (whatever is left after the resident part is smaller than the next unit, hence
//! than a slot), and a resident byte saves its whole transfer, while a third slot saves at most the
//! copy-engine idle time after a compute-heavy group, which is shorter than that group's transfer
//! when the run is transfer-bound and irrelevant when it is compute-bound.

use super::layout::ModelUnits;
use super::plan::{group_range, Grouping, Mode, Plan};
use super::size::fmt_bytes;
use crate::runtime::{Error, Result};

/// What the caller wants fixed. `mode: None` lets the planner choose; `slots: None` picks K; `ring`
/// packs streamed groups into a byte ring ([`Plan::with_ring`]) instead of K equal slots.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Prefs {
    pub mode: Option<Mode>,
    pub slots: Option<usize>,
    pub ring: bool,
}

/// The smallest budget any plan of this model fits: the activation peak plus two slots holding the
/// largest unit (leaf-level streaming), or plus all weights if that is less (resident).
pub fn minimum_budget(units: &ModelUnits, activation_peak: u64) -> u64 {
    activation_peak + (2 * units.largest_unit().1).min(units.total_bytes())
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
    let fits = |p: &Plan| p.expected_vram() <= budget;
    // With `ring`, every streamed candidate is judged with its ring (at least the K slots' size).
    let shaped = |p: Plan| if prefs.ring { p.with_ring() } else { Ok(p) };
    if let Some(mode) = prefs.mode {
        let p = shaped(Plan::new(units, mode, prefs.slots.unwrap_or(2), activation_peak)?)?;
        if !fits(&p) {
            return Err(Error::invalid(format!(
                "VRAM budget {} is too small for {mode}: it needs {} (weights {} + activations {}); the smallest plan for this model needs {}",
                sizes(budget),
                sizes(p.expected_vram()),
                fmt_bytes(p.weight_vram()),
                fmt_bytes(activation_peak),
                sizes(minimum_budget(units, activation_peak))
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
        if let Some(p) = best_hybrid(units, budget, activation_peak, group, k, prefs.ring)? {
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
    // Leaf streaming with K = 2 fits whenever the minimum does; reached only with more slots or a
    // ring (which may need more than 2 slots' worth) forced.
    Err(Error::invalid(format!(
        "VRAM budget {} cannot hold {k} slots of the largest unit{} besides the activations; the smallest plan for this model needs {}",
        if prefs.ring { " (or the byte ring, which may need more)" } else { "" },
        sizes(budget),
        sizes(minimum_budget(units, activation_peak))
    )))
}

/// The hybrid with the most resident bytes whose streamed part uses `group` and `k` slots, or `None`
/// when no unit can be kept resident. Slots are sized for the whole model's largest group, an upper
/// bound of the streamed part's, so the chosen plan fits.
fn best_hybrid(units: &ModelUnits, budget: u64, act: u64, group: Grouping, k: usize, ring: bool) -> Result<Option<Plan>> {
    let n = units.len();
    let slot = group_range(units, 0..n, group).into_iter().map(|r| units.range_bytes(r)).max().unwrap_or(0);
    let Some(avail) = budget.checked_sub(act + k as u64 * slot) else { return Ok(None) };
    let mut pre = vec![0u64; n + 1];
    for i in 0..n {
        pre[i + 1] = pre[i] + units.unit_bytes(i);
    }
    let suf = |s: usize| pre[n] - pre[n - s];
    // Two pointers: the longest suffix that still fits shrinks as the prefix grows.
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
    if best.2 == 0 {
        return Ok(None);
    }
    let mode = Mode::Hybrid { prefix: best.0, suffix: best.1, group, streamed: true };
    let mut p = Plan::new(units, mode, k, act)?;
    if ring {
        // A ring larger than K slots (its pair rule) may not fit where the slots did: no hybrid then.
        p = p.with_ring()?;
    }
    Ok((p.expected_vram() <= budget).then_some(p))
}
