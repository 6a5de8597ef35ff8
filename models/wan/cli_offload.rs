//! Offload options as the `wan` CLI takes them, turned into a plan for the transformer.

use super::config::{Precision, WanConfig};
use super::transformer::{InputShape, WanTransformer3DModel};
use wanrt_runtime::offload::{fmt_bytes, parse_size, plan_for, Area, Budget, ModelUnits, Mode, Plan, Prefs};
use wanrt_runtime::{Error, Result};

/// `--offload resident|block[:N]|leaf|auto`, `--sync`, `--slots K`, `--ring`, `--vram SIZE`, `--low-ram`.
#[derive(Clone, Debug, PartialEq)]
pub struct OffloadArgs {
    pub offload: String,
    pub sync: bool,
    pub slots: Option<usize>,
    pub ring: bool,
    pub vram: Option<String>,
    pub low_ram: bool,
}

impl OffloadArgs {
    /// The mode the user fixed, if any (`auto` lets the planner choose).
    pub fn mode(&self) -> Result<Option<Mode>> {
        let streamed = !self.sync;
        let s = self.offload.to_ascii_lowercase();
        Ok(match s.as_str() {
            "auto" => {
                if self.sync {
                    return Err(Error::invalid("--sync needs an explicit --offload mode (block[:N] or leaf)"));
                }
                None
            }
            "resident" => Some(Mode::Resident),
            "leaf" => Some(Mode::Leaf { streamed }),
            "block" => Some(Mode::Block { n: 1, streamed }),
            _ => match s.strip_prefix("block:").map(str::parse::<usize>) {
                Some(Ok(n)) if n > 0 => Some(Mode::Block { n, streamed }),
                _ => return Err(Error::invalid(format!("--offload {:?}: expected resident, block, block:N (N ≥ 1), leaf or auto", self.offload))),
            },
        })
    }

    /// `--ring` forces the byte ring, `--slots K` alone K equal slots; neither lets the planner pick
    /// (a ring for streamed leaves and blocks when it fits, see [`Area::Auto`]).
    pub fn area(&self) -> Area {
        match (self.ring, self.slots) {
            (true, _) => Area::Ring,
            (false, Some(_)) => Area::Slots,
            (false, None) => Area::Auto,
        }
    }

    /// The VRAM budget in bytes; `auto` (or no `--vram`) needs the device's free memory.
    pub fn budget(&self, free_bytes: Option<u64>) -> Result<u64> {
        let b = match &self.vram {
            Some(v) => parse_size(v)?,
            None => Budget::Auto,
        };
        match (b, free_bytes) {
            (Budget::Bytes(n), _) => Ok(n),
            (Budget::Auto, Some(free)) => b.resolve(free),
            (Budget::Auto, None) => Err(Error::invalid("--vram auto needs a GPU to read free memory; give a size like --vram 8GiB")),
        }
    }
}

/// The transformer's units and the plan for a run of (frames, height, width) latents.
pub struct PlannedRun {
    pub units: ModelUnits,
    pub plan: Plan,
    pub activation_peak: u64,
    pub budget: u64,
}

/// Plans a transformer run: latent size from the video size (frames 4k+1, height and width multiples
/// of 16), activation peak from the grid, the plan from the budget and the user's fixed choices.
#[allow(clippy::too_many_arguments)]
pub fn plan_run(cfg: &WanConfig, precision: Precision, batch: usize, frames: usize, height: usize, width: usize, args: &OffloadArgs, free_bytes: Option<u64>) -> Result<PlannedRun> {
    let (t, h, w) = latent_size(frames, height, width)?;
    let model = WanTransformer3DModel::new(cfg, precision)?;
    let act = model.activation_peak(&InputShape::pipeline(cfg, batch, t, h, w))?;
    let units = model.units().clone();
    let budget = args.budget(free_bytes)?;
    let mode = args.mode()?;
    if args.slots.is_some_and(|k| k < 2) {
        return Err(Error::invalid("--slots must be at least 2 (the double buffer)"));
    }
    if args.ring && args.sync {
        return Err(Error::invalid("--ring packs prefetched groups; it does not combine with --sync"));
    }
    let plan = plan_for(&units, budget, act, Prefs { mode, slots: args.slots, area: args.area() })?;
    Ok(PlannedRun { units, plan, activation_peak: act, budget })
}

/// Latent (T, H, W) for a video of `frames` × `height` × `width` (the VAE's 4× time, 8× space).
pub fn latent_size(frames: usize, height: usize, width: usize) -> Result<(usize, usize, usize)> {
    if frames == 0 || (frames - 1) % 4 != 0 || height == 0 || width == 0 || height % 16 != 0 || width % 16 != 0 {
        return Err(Error::invalid(format!("video {frames}x{height}x{width}: frames must be 4k+1, height and width positive multiples of 16")));
    }
    Ok(((frames - 1) / 4 + 1, height / 8, width / 8))
}

/// One line per fact, for `wan plan` and `wan bench`.
pub fn describe(run: &PlannedRun, low_ram: bool) -> String {
    let host = if low_ram { run.plan.host_bytes_staging(3) } else { run.plan.host_bytes_pinned() };
    format!(
        "{:#}\nbudget {}, activation peak {}, weights {} ({} resident, {} streamed)\nhost RAM ({}): {}",
        run.plan,
        fmt_bytes(run.budget),
        fmt_bytes(run.activation_peak),
        fmt_bytes(run.units.total_bytes()),
        fmt_bytes(run.plan.resident_bytes()),
        fmt_bytes(run.plan.streamed_bytes()),
        if low_ram { "low-RAM staging ring" } else { "pinned arena" },
        fmt_bytes(host)
    )
}

