//! `scheduler/scheduler_config.json` of a diffusers model folder: which scheduler, its flow shift, and
//! a check that every setting that changes the math is one these implementations reproduce.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use wanrt_runtime::{Error, Result};

use super::sigmas::{validate_shift, NUM_TRAIN_TIMESTEPS};

/// Path of the scheduler config inside a diffusers model folder.
pub const SCHEDULER_CONFIG: &str = "scheduler/scheduler_config.json";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SchedulerKind {
    /// `UniPCMultistepScheduler` (what the Wan2.1 diffusers repositories ship).
    UniPc,
    /// `FlowMatchEulerDiscreteScheduler`.
    FlowMatchEuler,
}

/// The parts of a scheduler config wanrt uses, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct SchedulerConfig {
    pub kind: SchedulerKind,
    /// `flow_shift` (UniPC) or `shift` (FlowMatchEuler).
    pub flow_shift: f64,
    pub num_train_timesteps: u32,
}

/// The JSON keys read; absent keys take diffusers' defaults, unknown keys are ignored.
#[derive(Deserialize)]
struct Raw {
    #[serde(rename = "_class_name")]
    class_name: Option<String>,
    num_train_timesteps: Option<u32>,
    flow_shift: Option<f64>,
    shift: Option<f64>,
    prediction_type: Option<String>,
    use_flow_sigmas: Option<bool>,
    solver_order: Option<u32>,
    solver_type: Option<String>,
    predict_x0: Option<bool>,
    lower_order_final: Option<bool>,
    final_sigmas_type: Option<String>,
    thresholding: Option<bool>,
    use_dynamic_shifting: Option<bool>,
    disable_corrector: Option<Vec<serde_json::Value>>,
    use_karras_sigmas: Option<bool>,
    use_exponential_sigmas: Option<bool>,
    use_beta_sigmas: Option<bool>,
    shift_terminal: Option<f64>,
    solver_p: Option<serde_json::Value>,
    invert_sigmas: Option<bool>,
    stochastic_sampling: Option<bool>,
}

impl SchedulerConfig {
    /// Reads `<model_dir>/scheduler/scheduler_config.json`.
    pub fn from_model_dir(model_dir: &Path) -> Result<Self> {
        Self::load(&model_dir.join(SCHEDULER_CONFIG))
    }

    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.into(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses config text; `path` only names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let bad = |msg: String| Error::File {
            path: PathBuf::from(path),
            msg,
        };
        let raw: Raw = serde_json::from_str(text)
            .map_err(|e| bad(format!("not a valid scheduler config: {e}")))?;
        let class = raw
            .class_name
            .as_deref()
            .ok_or_else(|| bad("no \"_class_name\" key".into()))?;
        let (kind, shift_key, shift) = match class {
            "UniPCMultistepScheduler" => (SchedulerKind::UniPc, "flow_shift", raw.flow_shift),
            "FlowMatchEulerDiscreteScheduler" => (SchedulerKind::FlowMatchEuler, "shift", raw.shift),
            other => {
                return Err(bad(format!(
                    "scheduler {other:?} is not supported (UniPCMultistepScheduler or FlowMatchEulerDiscreteScheduler)"
                )))
            }
        };
        let unsupported = raw.unsupported_settings(kind);
        if !unsupported.is_empty() {
            return Err(bad(format!(
                "{class} settings not supported (wanrt implements the Wan flow configuration): {}",
                unsupported.join(", ")
            )));
        }
        // diffusers would silently fall back to 1.0; every Wan config sets the key.
        let flow_shift = shift.ok_or_else(|| {
            bad(format!(
                "no \"{shift_key}\" key: the flow shift must be given"
            ))
        })?;
        validate_shift(flow_shift).map_err(|e| bad(format!("\"{shift_key}\": {e}")))?;
        let num_train_timesteps = raw.num_train_timesteps.unwrap_or(NUM_TRAIN_TIMESTEPS);
        if num_train_timesteps < 2 {
            return Err(bad(format!(
                "\"num_train_timesteps\" must be at least 2, got {num_train_timesteps}"
            )));
        }
        Ok(SchedulerConfig {
            kind,
            flow_shift,
            num_train_timesteps,
        })
    }
}

impl Raw {
    /// `key = value` for each setting that differs from what the implementations compute.
    fn unsupported_settings(&self, kind: SchedulerKind) -> Vec<String> {
        let mut out = Vec::new();
        let mut flag = |key: &str, value: Option<bool>, default: bool, want: bool| {
            let v = value.unwrap_or(default);
            if v != want {
                out.push(format!("{key} = {v}"));
            }
        };
        flag(
            "use_dynamic_shifting",
            self.use_dynamic_shifting,
            false,
            false,
        );
        flag("use_karras_sigmas", self.use_karras_sigmas, false, false);
        flag(
            "use_exponential_sigmas",
            self.use_exponential_sigmas,
            false,
            false,
        );
        flag("use_beta_sigmas", self.use_beta_sigmas, false, false);
        match kind {
            SchedulerKind::UniPc => {
                flag("use_flow_sigmas", self.use_flow_sigmas, false, true);
                flag("predict_x0", self.predict_x0, true, true);
                flag("lower_order_final", self.lower_order_final, true, true);
                flag("thresholding", self.thresholding, false, false);
                let prediction = self.prediction_type.as_deref().unwrap_or("epsilon");
                if prediction != "flow_prediction" {
                    out.push(format!("prediction_type = {prediction:?}"));
                }
                let order = self.solver_order.unwrap_or(2);
                if order != 2 {
                    out.push(format!("solver_order = {order}"));
                }
                // diffusers maps the legacy names to bh2.
                let solver = self.solver_type.as_deref().unwrap_or("bh2");
                if !matches!(solver, "bh2" | "midpoint" | "heun" | "logrho") {
                    out.push(format!("solver_type = {solver:?}"));
                }
                let final_sigmas = self.final_sigmas_type.as_deref().unwrap_or("zero");
                if final_sigmas != "zero" {
                    out.push(format!("final_sigmas_type = {final_sigmas:?}"));
                }
                if self
                    .disable_corrector
                    .as_ref()
                    .is_some_and(|d| !d.is_empty())
                {
                    out.push("disable_corrector not empty".into());
                }
                if self.solver_p.as_ref().is_some_and(|p| !p.is_null()) {
                    out.push("solver_p set".into());
                }
            }
            SchedulerKind::FlowMatchEuler => {
                flag("invert_sigmas", self.invert_sigmas, false, false);
                flag(
                    "stochastic_sampling",
                    self.stochastic_sampling,
                    false,
                    false,
                );
            }
        }
        if let Some(t) = self.shift_terminal {
            out.push(format!("shift_terminal = {t}"));
        }
        out
    }
}
