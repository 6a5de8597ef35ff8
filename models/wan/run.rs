//! Planning a transformer run from typed choices: where the weights live (`--offload`, `--sync`,
//! `--slots`, `--ring`), the VRAM budget, and the run's size. The `wan` program parses its flags
//! into these types (each has `FromStr`); everything is checked here before any device work.

use std::str::FromStr;

use serde::Serialize;

use super::config::{Precision, WanConfig, MAX_TOKENS};
use super::transformer::{InputShape, WanTransformer3DModel};
use wanrt_runtime::offload::{fmt_bytes, plan_for, Area, Budget, ModelUnits, Mode, Plan, Prefs, MAX_SLOTS};
use wanrt_runtime::{Error, Result};

/// `--offload`: a fixed placement, or `Auto` for the planner's choice within the budget.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ModeChoice {
    #[default]
    Auto,
    Resident,
    /// `block[:N]`: N blocks per streamed group (N ≥ 1).
    Block(usize),
    Leaf,
}

impl FromStr for ModeChoice {
    type Err = Error;
    /// `resident`, `block`, `block:N` (N ≥ 1), `leaf` or `auto`, case-insensitive.
    fn from_str(s: &str) -> Result<ModeChoice> {
        let l = s.trim().to_ascii_lowercase();
        Ok(match l.as_str() {
            "auto" => ModeChoice::Auto,
            "resident" => ModeChoice::Resident,
            "leaf" => ModeChoice::Leaf,
            "block" => ModeChoice::Block(1),
            _ => match l.strip_prefix("block:").map(str::parse::<usize>) {
                Some(Ok(n)) if n > 0 => ModeChoice::Block(n),
                _ => return Err(Error::invalid(format!("--offload {s:?}: expected resident, block, block:N (N ≥ 1), leaf or auto"))),
            },
        })
    }
}

/// Where the weights live during a run, as the user chose it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OffloadChoice {
    pub mode: ModeChoice,
    /// Upload each group on the compute stream just before use (no prefetch).
    pub sync: bool,
    /// K device slots (2..=[`MAX_SLOTS`]); `None` lets the planner pick.
    pub slots: Option<usize>,
    /// Force the byte ring for every streamed plan.
    pub ring: bool,
    pub budget: Budget,
}

impl OffloadChoice {
    /// The planner's preferences; contradictory or out-of-range choices are errors naming the flag.
    pub fn prefs(&self) -> Result<Prefs> {
        let streamed = !self.sync;
        let mode = match self.mode {
            ModeChoice::Auto if self.sync => return Err(Error::invalid("--sync needs an explicit --offload mode (block[:N] or leaf)")),
            ModeChoice::Auto => None,
            ModeChoice::Resident => Some(Mode::Resident),
            ModeChoice::Block(n) => Some(Mode::Block { n: n.max(1), streamed }),
            ModeChoice::Leaf => Some(Mode::Leaf { streamed }),
        };
        match self.slots {
            Some(k) if k < 2 => return Err(Error::invalid(format!("--slots {k}: at least 2 are needed (the double buffer)"))),
            Some(k) if k > MAX_SLOTS => return Err(Error::invalid(format!("--slots {k}: at most {MAX_SLOTS} are supported"))),
            _ => {}
        }
        if self.ring && self.sync {
            return Err(Error::invalid("--ring packs prefetched groups; it does not combine with --sync"));
        }
        // --ring forces the byte ring, --slots K alone K equal slots; neither lets the planner pick
        // (a ring for streamed leaves and blocks when it fits, see `Area::Auto`).
        let area = match (self.ring, self.slots) {
            (true, _) => Area::Ring,
            (false, Some(_)) => Area::Slots,
            (false, None) => Area::Auto,
        };
        Ok(Prefs { mode, slots: self.slots, area })
    }

    /// The budget in bytes; `auto` needs the device's free memory.
    pub fn budget_bytes(&self, free_bytes: Option<u64>) -> Result<u64> {
        match (self.budget, free_bytes) {
            (Budget::Bytes(n), _) => Ok(n),
            (Budget::Auto, Some(free)) => Budget::Auto.resolve(free),
            (Budget::Auto, None) => Err(Error::invalid("--vram auto needs a GPU to read free memory; give a size like --vram 8GiB")),
        }
    }
}

/// The transformer's units and the plan for one run.
#[derive(Debug)]
pub struct PlannedRun {
    pub units: ModelUnits,
    pub plan: Plan,
    pub activation_peak: u64,
}

impl PlannedRun {
    /// The VRAM budget the plan was made for (the plan holds it; `expected_vram` for a plan made
    /// without one).
    pub fn budget(&self) -> u64 {
        self.plan.budget().unwrap_or_else(|| self.plan.expected_vram())
    }
}

/// Plans a run on a video of `frames` × `height` × `width` (frames 4k+1, height and width multiples
/// of 16), as `wan plan` and `wan bench` take it.
#[allow(clippy::too_many_arguments)]
pub fn plan_run(cfg: &WanConfig, precision: Precision, batch: usize, frames: usize, height: usize, width: usize, choice: &OffloadChoice, free_bytes: Option<u64>) -> Result<PlannedRun> {
    let latent = latent_size(frames, height, width)?;
    plan_latents(cfg, precision, batch, latent, choice, free_bytes)
}

/// Plans a run on `batch` latents of (T, H, W), as `wan forward`'s inputs hold them. Every choice
/// and size is checked before anything is built: the token count is bounded by [`MAX_TOKENS`], so
/// the activation estimate cannot overflow.
pub fn plan_latents(cfg: &WanConfig, precision: Precision, batch: usize, (t, h, w): (usize, usize, usize), choice: &OffloadChoice, free_bytes: Option<u64>) -> Result<PlannedRun> {
    cfg.validate()?;
    let prefs = choice.prefs()?;
    let (gt, gh, gw) = cfg.grid(t, h, w)?;
    let tokens = [batch, gt, gh, gw].iter().try_fold(1usize, |a, &d| a.checked_mul(d)).filter(|&n| n <= MAX_TOKENS);
    if batch == 0 || tokens.is_none() {
        return Err(Error::invalid(format!(
            "a batch of {batch} latents of {t}x{h}x{w} ({gt}x{gh}x{gw} tokens each): the batch must be positive and at most {MAX_TOKENS} tokens in all are supported"
        )));
    }
    let budget = choice.budget_bytes(free_bytes)?;
    let model = WanTransformer3DModel::new(cfg, precision)?;
    // The pipeline's text and image token counts (the most `wan forward` inputs carry).
    let act = model.activation_peak(&InputShape::pipeline(cfg, batch, t, h, w))?;
    let units = model.units().clone();
    let plan = plan_for(&units, budget, act, prefs)?;
    Ok(PlannedRun { units, plan, activation_peak: act })
}

/// Latent (T, H, W) for a video of `frames` × `height` × `width` (the VAE's 4× time, 8× space).
pub fn latent_size(frames: usize, height: usize, width: usize) -> Result<(usize, usize, usize)> {
    if frames == 0 || (frames - 1) % 4 != 0 || height == 0 || width == 0 || height % 16 != 0 || width % 16 != 0 {
        return Err(Error::invalid(format!("video {frames}x{height}x{width}: frames must be 4k+1, height and width positive multiples of 16")));
    }
    Ok(((frames - 1) / 4 + 1, height / 8, width / 8))
}

/// The plan's summary, one line per fact, for `wan plan`, `wan forward` and `wan bench`; `groups`
/// also lists every group (hundreds of lines for 14B).
pub fn describe(run: &PlannedRun, low_ram: bool, groups: bool) -> String {
    let host = if low_ram { run.plan.host_bytes_staging(3) } else { run.plan.host_bytes_pinned() };
    let plan = if groups { format!("{:#}", run.plan) } else { run.plan.to_string() };
    format!(
        "{plan}\nbudget {}, activation peak {}, weights {} ({} resident, {} streamed)\nhost RAM ({}): {}",
        fmt_bytes(run.budget()),
        fmt_bytes(run.activation_peak),
        fmt_bytes(run.units.total_bytes()),
        fmt_bytes(run.plan.resident_bytes()),
        fmt_bytes(run.plan.streamed_bytes()),
        if low_ram { "low-RAM staging ring" } else { "pinned arena" },
        fmt_bytes(host)
    )
}

/// `wan bench`'s JSON line (keys read by benches/forward_table.py and scripts/gpu-round.sh).
#[derive(Clone, Debug, Serialize)]
pub struct BenchRecord {
    pub bench: &'static str,
    #[serde(rename = "impl")]
    pub implementation: &'static str,
    pub preset: String,
    pub mode: String,
    pub frames: usize,
    pub height: usize,
    pub width: usize,
    pub tokens: usize,
    /// Median seconds per forward.
    pub s: f64,
    pub peak_gib: f64,
    pub weight_gib: f64,
    pub host_gib: f64,
    pub setup_s: f64,
    pub h2d_gbps: f64,
    pub h2d_registered_gbps: f64,
    pub h2d_sustained_gbps: f64,
    pub transfer_floor_s: f64,
    pub sweep_s: f64,
}

impl BenchRecord {
    /// One JSON line; a value that is not finite (no timing) is written as `null`, which JSON has.
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string(self).map_err(|e| Error::invalid(format!("bench record: {e}")))
    }
}

/// `x` rounded to `digits` decimals, as the JSON line has always printed them.
pub fn round_to(x: f64, digits: i32) -> f64 {
    let m = 10f64.powi(digits);
    (x * m).round() / m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offload_choices_parse() {
        assert_eq!("auto".parse::<ModeChoice>().unwrap(), ModeChoice::Auto);
        assert_eq!("Block:3".parse::<ModeChoice>().unwrap(), ModeChoice::Block(3));
        assert_eq!("block".parse::<ModeChoice>().unwrap(), ModeChoice::Block(1));
        for bad in ["block:0", "blocks:x", "block:", "", "hybrid"] {
            assert!(bad.parse::<ModeChoice>().unwrap_err().to_string().contains("--offload"), "{bad}");
        }
        let c = |mode, sync, slots, ring| OffloadChoice { mode, sync, slots, ring, budget: Budget::Bytes(1 << 30) };
        assert!(c(ModeChoice::Auto, true, None, false).prefs().is_err());
        assert!(c(ModeChoice::Leaf, true, None, true).prefs().is_err());
        assert!(c(ModeChoice::Leaf, false, Some(1), false).prefs().is_err());
        assert!(c(ModeChoice::Leaf, false, Some(usize::MAX), false).prefs().unwrap_err().to_string().contains("at most"));
        let p = c(ModeChoice::Block(2), true, Some(3), false).prefs().unwrap();
        assert_eq!(p, Prefs { mode: Some(Mode::Block { n: 2, streamed: false }), slots: Some(3), area: Area::Slots });
        assert!(c(ModeChoice::Auto, false, None, false).budget_bytes(None).is_ok());
        assert!(OffloadChoice::default().budget_bytes(None).unwrap_err().to_string().contains("--vram"));
    }

    #[test]
    fn runs_beyond_the_token_bound_are_refused() {
        let cfg = WanConfig::preset("wan2.1-t2v-14b").unwrap();
        let choice = OffloadChoice { budget: Budget::Bytes(1 << 40), ..OffloadChoice::default() };
        assert!(plan_latents(&cfg, Precision::Bf16, 1, (21, 60, 104), &choice, None).is_ok());
        for (b, lat) in [(0, (1, 2, 2)), (usize::MAX, (1, 2, 2)), (1 << 20, (21, 60, 104))] {
            let e = plan_latents(&cfg, Precision::Bf16, b, lat, &choice, None).unwrap_err().to_string();
            assert!(e.contains("tokens"), "{e}");
        }
    }

    #[test]
    fn bench_record_is_json_with_the_table_keys() {
        let r = BenchRecord {
            bench: "forward",
            implementation: "wanrt",
            preset: "wan2.1-t2v-1.3b".into(),
            mode: "resident".into(),
            frames: 81,
            height: 480,
            width: 832,
            tokens: 32760,
            s: f64::NAN,
            peak_gib: round_to(12.3456, 3),
            weight_gib: 2.0,
            host_gib: 0.0,
            setup_s: 1.0,
            h2d_gbps: 50.0,
            h2d_registered_gbps: 50.0,
            h2d_sustained_gbps: 49.0,
            transfer_floor_s: 0.0,
            sweep_s: 0.0,
        };
        let line = r.to_json().unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["impl"], "wanrt");
        assert_eq!(v["s"], serde_json::Value::Null);
        assert_eq!(v["peak_gib"], 12.346);
        for key in ["bench", "preset", "mode", "frames", "height", "width", "tokens", "weight_gib", "host_gib", "setup_s", "h2d_gbps", "h2d_registered_gbps", "h2d_sustained_gbps", "transfer_floor_s", "sweep_s"] {
            assert!(v.get(key).is_some(), "{key}");
        }
    }
}
