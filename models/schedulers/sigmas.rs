//! Sigma grids and timesteps, computed the way each reference computes them (diffusers
//! `scheduling_unipc_multistep.py` and `scheduling_flow_match_euler_discrete.py` `set_timesteps`, the
//! original Wan `wan/utils/fm_solvers_unipc.py`): float64
//! where the reference uses numpy, float32 where it uses torch, each operation in the reference's order.
//! Rust's f64/f32 `+ - * /` are the same IEEE operations numpy and torch run, so the tables come out
//! bit-identical to the references' (checked against the fixtures in `tests/schedulers.rs`).

use wanrt_runtime::{Error, Result};

/// `num_train_timesteps` of every Wan2.1 scheduler config.
pub const NUM_TRAIN_TIMESTEPS: u32 = 1000;

/// Starting grid of the UniPC scheduler.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SigmaGrid {
    /// diffusers `UniPCMultistepScheduler` with `use_flow_sigmas`: σ̂ = linspace(1, 1/T, N+1)[:-1],
    /// shifted, then σ₀ = 1 − 1e-6 (diffusers avoids log(0) in λ(σ₀)).
    #[default]
    Diffusers,
    /// Official Wan2.1 `FlowUniPCMultistepScheduler`: σ̂ = linspace(σ_max, 0, N+1)[:-1] with
    /// σ_max = f32(1 − 1/T) = 0.999 from its training table, shifted, no tweak.
    Official,
}

impl SigmaGrid {
    /// Parses `diffusers` or `official` (also `wan`).
    pub fn parse(s: &str) -> Result<SigmaGrid> {
        match s.to_ascii_lowercase().as_str() {
            "diffusers" => Ok(SigmaGrid::Diffusers),
            "official" | "wan" => Ok(SigmaGrid::Official),
            other => Err(Error::invalid(format!(
                "unknown sigma grid {other:?}: expected \"diffusers\" or \"official\""
            ))),
        }
    }
}

/// UniPC schedule: `sigmas` has N+1 entries (the last is 0), `timesteps` N integers.
#[derive(Clone, Debug, PartialEq)]
pub struct UniPcSchedule {
    pub sigmas: Vec<f32>,
    /// σ·T truncated to integers (torch `.to(int64)` of a float64 array): what the transformer receives.
    pub timesteps: Vec<i64>,
}

/// FlowMatchEuler schedule: `sigmas` has N+1 entries (the last is 0), `timesteps` N floats.
#[derive(Clone, Debug, PartialEq)]
pub struct EulerSchedule {
    pub sigmas: Vec<f32>,
    /// f32(σ)·T in float32, not truncated: the transformer receives non-integer timesteps.
    pub timesteps: Vec<f32>,
}

/// The flow shift σ' = s·σ / (1 + (s − 1)·σ), in the references' float64 operation order.
pub fn shift_sigma(sigma: f64, shift: f64) -> f64 {
    (shift * sigma) / (1.0 + (shift - 1.0) * sigma)
}

/// Rejects a shift the schedules cannot use: zero, negative, NaN or infinite.
pub fn validate_shift(shift: f64) -> Result<()> {
    if shift.is_finite() && shift > 0.0 {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "flow shift must be a finite number > 0, got {shift}"
        )))
    }
}

fn validate_args(steps: usize, shift: f64, num_train_timesteps: u32) -> Result<()> {
    if steps == 0 {
        return Err(Error::invalid(
            "number of inference steps must be at least 1, got 0",
        ));
    }
    validate_shift(shift)?;
    if num_train_timesteps < 2 {
        return Err(Error::invalid(format!(
            "num_train_timesteps must be at least 2, got {num_train_timesteps}"
        )));
    }
    Ok(())
}

/// `numpy.linspace(start, stop, num)` (endpoint included), bit for bit: `i·step + start` with
/// `step = (stop − start)/(num − 1)`, and the last point set to `stop` exactly.
pub(crate) fn linspace(start: f64, stop: f64, num: usize) -> Vec<f64> {
    let div = num.saturating_sub(1);
    let delta = stop - start;
    let mut y: Vec<f64> = (0..num).map(|i| i as f64).collect();
    if div > 0 {
        let step = delta / div as f64;
        if step == 0.0 {
            // numpy's branch for denormal steps: divide first, then scale.
            y.iter_mut().for_each(|v| *v = (*v / div as f64) * delta);
        } else {
            y.iter_mut().for_each(|v| *v *= step);
        }
    } else {
        y.iter_mut().for_each(|v| *v *= delta);
    }
    y.iter_mut().for_each(|v| *v += start);
    if num > 1 {
        y[num - 1] = stop;
    }
    y
}

/// UniPC flow-sigma schedule for `steps` steps (diffusers `scheduling_unipc_multistep.py`
/// `UniPCMultistepScheduler.set_timesteps` with `use_flow_sigmas`).
pub fn unipc_schedule(
    steps: usize,
    shift: f64,
    grid: SigmaGrid,
    num_train_timesteps: u32,
) -> Result<UniPcSchedule> {
    validate_args(steps, shift, num_train_timesteps)?;
    let t = num_train_timesteps as f64;
    let mut sig: Vec<f64> = match grid {
        SigmaGrid::Diffusers => linspace(1.0, 1.0 / t, steps + 1),
        SigmaGrid::Official => {
            // The official training table is 1 − linspace(1, 1/T, T) reversed, stored in float32;
            // its first entry is σ_max and its last is 0.
            let sigma_max = (1.0 - 1.0 / t) as f32 as f64;
            linspace(sigma_max, 0.0, steps + 1)
        }
    };
    sig.pop();
    sig.iter_mut().for_each(|s| *s = shift_sigma(*s, shift));
    if grid == SigmaGrid::Diffusers && (sig[0] - 1.0).abs() < 1e-6 {
        sig[0] -= 1e-6;
    }
    let timesteps = sig.iter().map(|&s| (s * t) as i64).collect();
    let mut sigmas: Vec<f32> = sig.iter().map(|&s| s as f32).collect();
    sigmas.push(0.0);
    check_grid(&sigmas, "UniPC", false)?;
    Ok(UniPcSchedule { sigmas, timesteps })
}

/// FlowMatchEulerDiscreteScheduler schedule (diffusers `scheduling_flow_match_euler_discrete.py`
/// `__init__` and `set_timesteps`), including its double shift.
pub fn euler_schedule(steps: usize, shift: f64, num_train_timesteps: u32) -> Result<EulerSchedule> {
    validate_args(steps, shift, num_train_timesteps)?;
    let t32 = num_train_timesteps as f32;
    // __init__ in float32 torch: the python-float scalars are rounded to f32 before each product.
    let (s32, sm1_32) = (shift as f32, (shift - 1.0) as f32);
    let train = |timestep: f32| {
        let s = timestep / t32;
        (s32 * s) / (sm1_32 * s + 1.0)
    };
    let sigma_max = train(t32) as f64;
    let sigma_min = train(1.0) as f64;
    // set_timesteps in float64 numpy, shifted a second time.
    let t = num_train_timesteps as f64;
    let mut sigmas: Vec<f32> = linspace(sigma_max * t, sigma_min * t, steps)
        .into_iter()
        .map(|ts| shift_sigma(ts / t, shift) as f32)
        .collect();
    let timesteps = sigmas.iter().map(|&s| s * t32).collect();
    sigmas.push(0.0);
    check_grid(&sigmas, "FlowMatchEuler", true)?;
    Ok(EulerSchedule { sigmas, timesteps })
}

/// The steps need σ strictly decreasing to 0 and below 1 (UniPC takes log(1 − σ); Euler starts at
/// σ = 1 exactly): equal neighbours would make UniPC divide by h = 0.
fn check_grid(sigmas: &[f32], which: &str, one_allowed: bool) -> Result<()> {
    let n = sigmas.len() - 1;
    for k in 0..n {
        let (s, next) = (sigmas[k], sigmas[k + 1]);
        let below_one = s < 1.0 || (one_allowed && s == 1.0);
        if !(s > 0.0 && below_one && next < s) {
            return Err(Error::invalid(format!(
                "{which} sigma grid is degenerate at step {k} of {n} (sigma {s}, next {next}): \
                 too many steps or an extreme shift for float32 sigmas"
            )));
        }
    }
    Ok(())
}
