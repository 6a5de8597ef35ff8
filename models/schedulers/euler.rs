//! FlowMatchEulerDiscreteScheduler (diffusers `scheduling_flow_match_euler_discrete.py` `step`):
//! x_{k+1} = x_k + (σ_{k+1} − σ_k)·v, cast to v's dtype. The pipelines' type hint, not the shipped
//! config; kept for comparison runs.

use wanrt_runtime::{DType, Error, Result};

use super::backend::LatentBackend;
use super::plan::{bf16_round, EulerUpdate};
use super::sigmas::{euler_schedule, EulerSchedule, NUM_TRAIN_TIMESTEPS};
use super::unipc::check_sizes;

/// Host state of a FlowMatchEuler run.
#[derive(Clone, Debug)]
pub struct EulerPlanner {
    schedule: EulerSchedule,
    step_index: usize,
}

impl EulerPlanner {
    pub fn new(steps: usize, shift: f64) -> Result<Self> {
        Self::with_train_timesteps(steps, shift, NUM_TRAIN_TIMESTEPS)
    }

    pub fn with_train_timesteps(
        steps: usize,
        shift: f64,
        num_train_timesteps: u32,
    ) -> Result<Self> {
        Ok(EulerPlanner {
            schedule: euler_schedule(steps, shift, num_train_timesteps)?,
            step_index: 0,
        })
    }

    pub fn num_steps(&self) -> usize {
        self.schedule.timesteps.len()
    }

    pub fn step_index(&self) -> usize {
        self.step_index
    }

    /// N+1 float32 sigmas, the last 0.
    pub fn sigmas(&self) -> &[f32] {
        &self.schedule.sigmas
    }

    /// N float timesteps.
    pub fn timesteps(&self) -> &[f32] {
        &self.schedule.timesteps
    }

    pub fn reset(&mut self) {
        self.step_index = 0;
    }

    /// The plan of the current step for a model output of dtype `v_dtype` (F32 or BF16).
    pub fn plan(&self, v_dtype: DType) -> Result<EulerUpdate> {
        let (k, n) = (self.step_index, self.num_steps());
        if k >= n {
            return Err(Error::invalid(format!(
                "Euler step {} asked for, but the {n}-step schedule is finished (reset it to start again)",
                k + 1
            )));
        }
        let dt = self.schedule.sigmas[k + 1] - self.schedule.sigmas[k];
        match v_dtype {
            DType::F32 => Ok(EulerUpdate { v_bf16: 0, dt }),
            // dt·v runs in bf16: torch casts the 0-dim fp32 dt to bf16 first (on CPU as a leading
            // scalar, on CUDA as a device tensor, where the pipeline puts the sigmas).
            DType::BF16 => Ok(EulerUpdate {
                v_bf16: 1,
                dt: bf16_round(dt),
            }),
            other => Err(Error::DType {
                op: "Euler step",
                name: "model output".into(),
                expected: "f32 or bf16".into(),
                got: other,
            }),
        }
    }

    fn advance(&mut self) {
        self.step_index += 1;
    }
}

/// A FlowMatchEuler run over latents of one backend (it keeps no history, only the run's size).
pub struct Euler<B: LatentBackend> {
    planner: EulerPlanner,
    len: Option<usize>,
    _backend: std::marker::PhantomData<fn(&mut B)>,
}

impl<B: LatentBackend> Euler<B> {
    pub fn new(steps: usize, shift: f64) -> Result<Self> {
        Ok(Self::from_planner(EulerPlanner::new(steps, shift)?))
    }

    pub fn from_planner(planner: EulerPlanner) -> Self {
        Euler {
            planner,
            len: None,
            _backend: std::marker::PhantomData,
        }
    }

    pub fn planner(&self) -> &EulerPlanner {
        &self.planner
    }

    pub fn reset(&mut self) {
        self.planner.reset();
        self.len = None;
    }

    /// One step on `x` in place.
    pub fn step(
        &mut self,
        backend: &mut B,
        v: B::ModelOutput<'_>,
        x: &mut B::Buffer,
    ) -> Result<()> {
        let n = backend.latent_len(x);
        check_sizes("Euler step", n, backend.model_output_len(&v), self.len)?;
        let plan = self.planner.plan(backend.model_output_dtype(&v))?;
        backend.apply_euler(&plan, v, x)?;
        self.len = Some(n);
        self.planner.advance();
        Ok(())
    }
}
