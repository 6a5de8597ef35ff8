//! Flow-matching schedulers of the Wan pipelines (diffusers `scheduling_unipc_multistep.py`,
//! `scheduling_flow_match_euler_discrete.py`): UniPC as Wan configures it, and FlowMatchEuler.
//!
//! Split of the work: the host computes, per step, a latent update plan (`UniPcUpdate`,
//! `EulerUpdate`): the reference's elementwise fp32 op sequence with its scalars and bf16 rounding
//! points. A `LatentBackend` executes it where the latents live (`CpuLatents` on the host; a device
//! backend with the `kernels/scheduler.cu` kernels on its compute stream), so the denoising loop never
//! copies latents to the host. The schedulers keep their history as backend buffers.
//!
//! ```no_run
//! use wanrt_models::schedulers::{CpuLatents, HostModelOutput, Scheduler, SchedulerSpec};
//! # fn model(_t: f32, _x: &[f32]) -> Vec<f32> { vec![0.0; 4] }
//! let spec = SchedulerSpec::unipc(3.0);
//! let mut sched = Scheduler::<CpuLatents>::new(&spec, 50)?;
//! let mut x = vec![0.5f32; 4];
//! for k in 0..sched.num_steps() {
//!     let v = model(sched.model_timestep(k)?, &x);
//!     sched.step(&mut CpuLatents, HostModelOutput::F32(&v), &mut x)?;
//! }
//! # Ok::<(), wanrt_runtime::Error>(())
//! ```

mod backend;
mod config;
mod cpu;
mod device;
mod euler;
mod plan;
mod scalar;
mod shift;
mod sigmas;
mod unipc;

pub use backend::LatentBackend;
pub use config::{SchedulerConfig, SchedulerKind, SCHEDULER_CONFIG};
pub use cpu::{apply_euler_cpu, apply_unipc_cpu, CpuLatents, HostModelOutput};
pub use device::DeviceLatents;
pub use euler::{Euler, EulerPlanner};
pub use plan::{bf16_bits_to_f32, bf16_round, f32_to_bf16_bits, EulerUpdate, UniPcUpdate};
pub use shift::{auto_shift, ShiftPolicy, SHIFT_480P, SHIFT_720P};
pub use sigmas::{
    euler_schedule, shift_sigma, unipc_schedule, validate_shift, EulerSchedule, SigmaGrid,
    UniPcSchedule, NUM_TRAIN_TIMESTEPS,
};
pub use unipc::{ReferenceDevice, UniPc, UniPcOptions, UniPcPlanner};

use wanrt_runtime::{Error, Result};

/// Which scheduler to build, with its settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SchedulerSpec {
    pub kind: SchedulerKind,
    pub shift: f64,
    /// UniPC only.
    pub grid: SigmaGrid,
    pub num_train_timesteps: u32,
    /// UniPC only.
    pub reference: ReferenceDevice,
}

impl SchedulerSpec {
    /// UniPC on the diffusers grid, reproducing diffusers on CUDA.
    pub fn unipc(shift: f64) -> Self {
        let o = UniPcOptions::new(shift);
        SchedulerSpec {
            kind: SchedulerKind::UniPc,
            shift,
            grid: o.grid,
            num_train_timesteps: o.num_train_timesteps,
            reference: o.reference,
        }
    }

    pub fn euler(shift: f64) -> Self {
        SchedulerSpec {
            kind: SchedulerKind::FlowMatchEuler,
            ..Self::unipc(shift)
        }
    }

    /// The model folder's scheduler with the shift the policy picked.
    pub fn from_config(config: &SchedulerConfig, shift: f64) -> Self {
        SchedulerSpec {
            kind: config.kind,
            num_train_timesteps: config.num_train_timesteps,
            ..Self::unipc(shift)
        }
    }

    fn unipc_options(&self) -> UniPcOptions {
        UniPcOptions {
            shift: self.shift,
            grid: self.grid,
            num_train_timesteps: self.num_train_timesteps,
            reference: self.reference,
        }
    }
}

/// Either scheduler, for the pipelines.
pub enum Scheduler<B: LatentBackend> {
    UniPc(UniPc<B>),
    Euler(Euler<B>),
}

impl<B: LatentBackend> Scheduler<B> {
    pub fn new(spec: &SchedulerSpec, steps: usize) -> Result<Self> {
        Ok(match spec.kind {
            SchedulerKind::UniPc => Scheduler::UniPc(UniPc::new(steps, &spec.unipc_options())?),
            SchedulerKind::FlowMatchEuler => {
                let planner = EulerPlanner::with_train_timesteps(
                    steps,
                    spec.shift,
                    spec.num_train_timesteps,
                )?;
                Scheduler::Euler(Euler::from_planner(planner))
            }
        })
    }

    pub fn num_steps(&self) -> usize {
        match self {
            Scheduler::UniPc(s) => s.planner().num_steps(),
            Scheduler::Euler(s) => s.planner().num_steps(),
        }
    }

    pub fn step_index(&self) -> usize {
        match self {
            Scheduler::UniPc(s) => s.planner().step_index(),
            Scheduler::Euler(s) => s.planner().step_index(),
        }
    }

    /// N+1 float32 sigmas, the last 0.
    pub fn sigmas(&self) -> &[f32] {
        match self {
            Scheduler::UniPc(s) => s.planner().sigmas(),
            Scheduler::Euler(s) => s.planner().sigmas(),
        }
    }

    /// The timestep the transformer receives at step `k`, as the float its sinusoid starts from
    /// (UniPC's integers are exact in f32).
    pub fn model_timestep(&self, k: usize) -> Result<f32> {
        let t = match self {
            Scheduler::UniPc(s) => s.planner().timesteps().get(k).map(|&t| t as f32),
            Scheduler::Euler(s) => s.planner().timesteps().get(k).copied(),
        };
        t.ok_or_else(|| {
            Error::invalid(format!(
                "timestep {k} asked for, but the schedule has {} steps",
                self.num_steps()
            ))
        })
    }

    pub fn step(
        &mut self,
        backend: &mut B,
        v: B::ModelOutput<'_>,
        x: &mut B::Buffer,
    ) -> Result<()> {
        match self {
            Scheduler::UniPc(s) => s.step(backend, v, x),
            Scheduler::Euler(s) => s.step(backend, v, x),
        }
    }

    pub fn reset(&mut self) {
        match self {
            Scheduler::UniPc(s) => s.reset(),
            Scheduler::Euler(s) => s.reset(),
        }
    }
}
