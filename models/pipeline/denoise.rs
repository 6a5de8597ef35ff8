//! The denoising loop of diffusers' Wan pipelines (`__call__`): per step, the latents (fp32) cast to
//! the transformer dtype (after them, for I2V, the constant condition channels), the transformer's
//! conditional and unconditional predictions, their guided combination in the transformer dtype, and
//! the scheduler step on the fp32 latents, all on the device.
//!
//! Guidance runs as diffusers does (two batch-1 forwards) or as one batch-2 forward (prompt row 0,
//! negative prompt row 1); each sample of a batch is computed as it is alone, so both give the same
//! predictions (tests/pipeline_gpu.rs checks it bit for bit).

use std::sync::Arc;

use wanrt_runtime::{DType, Device, Result, Tensor};

use super::cfg::combine;
use super::encode::{engine, keep};
use super::load::Pipeline;
use super::progress::{Callbacks, CancelToken, Stage};
use super::request::{GenerateRequest, SchedulerChoice};
use crate::checkpoint::SharedStore;
use crate::schedulers::{DeviceLatents, Scheduler, SchedulerSpec};
use crate::wan::run::PlannedRun;
use crate::wan::Inputs;

/// What the loop conditions on, on the device.
pub(crate) struct Conditioning {
    /// (1 or 2, 512, text_dim): prompt, then negative prompt.
    pub text: Tensor,
    /// (1, tokens, image_dim) (I2V).
    pub image: Option<Tensor>,
    /// (1, 20, T, h, w) f32 on the host (I2V).
    pub condition: Option<Vec<f32>>,
}

/// The scheduler of a request, with the model folder's training timesteps.
pub fn scheduler_spec(p: &Pipeline, req: &GenerateRequest) -> SchedulerSpec {
    let base = SchedulerSpec::from_config(p.scheduler_config(), req.shift);
    match req.scheduler {
        SchedulerChoice::UniPc => SchedulerSpec { kind: crate::schedulers::SchedulerKind::UniPc, ..base },
        SchedulerChoice::Euler => SchedulerSpec { kind: crate::schedulers::SchedulerKind::FlowMatchEuler, ..base },
    }
}

/// Two copies of a (1, ...) tensor stacked along the batch.
fn twice(t: &Tensor) -> Result<Tensor> {
    let mut shape = t.shape().to_vec();
    shape[0] = 2;
    let out = Tensor::empty_named(t.device(), &shape, t.dtype(), "batch-2 copy")?;
    out.narrow(0, 0, 1)?.copy_from(t)?;
    out.narrow(0, 1, 1)?.copy_from(t)?;
    Ok(out)
}

impl Pipeline {
    /// Runs the loop on `latents` ((1, 16, T, h, w) f32, the initial noise in, the result out).
    /// Returns the host bytes the transformer took, and whether it ran to the end (else it was cancelled).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn denoise(
        &self,
        dev: &Arc<Device>,
        run: PlannedRun,
        batched: bool,
        req: &GenerateRequest,
        cond: &Conditioning,
        latents: &mut Tensor,
        callbacks: &mut dyn Callbacks,
        cancel: &CancelToken,
    ) -> Result<(u64, bool)> {
        let cfg = &self.transformer.cfg;
        let dt = self.options.precision.compute();
        let guided = req.cfg();
        let b = if guided && batched { 2 } else { 1 };
        let lat_shape = latents.shape().to_vec();
        let (z, rest) = (lat_shape[1], &lat_shape[2..]);
        let mut x_shape = vec![b, cfg.in_channels];
        x_shape.extend_from_slice(rest);
        let x_in = Tensor::empty_named(dev, &x_shape, dt, "transformer input")?;
        if let Some(c) = &cond.condition {
            let mut c_shape = vec![1, cfg.in_channels - z];
            c_shape.extend_from_slice(rest);
            // `torch.cat([latents, condition], dim=1).to(transformer_dtype)`: the condition part never changes.
            let ct = Tensor::from_f32(dev, &c_shape, dt, c)?;
            for s in 0..b {
                x_in.narrow(0, s, 1)?.narrow(1, z, cfg.in_channels - z)?.copy_from(&ct)?;
            }
        }
        let image = match (&cond.image, b) {
            (Some(i), 2) => Some(twice(i)?),
            (i, _) => i.clone(),
        };
        let text_row = |r: usize| cond.text.narrow(0, r, 1);
        let engine = engine(dev, run, Arc::new(SharedStore(self.transformer_store.clone())), self.options.low_ram)?;
        let spec = scheduler_spec(self, req);
        let mut sched = Scheduler::<DeviceLatents>::new(&spec, req.steps)?;
        let mut backend = DeviceLatents::new(dev.clone());
        let guided_out = Tensor::empty_named(dev, &lat_shape, dt, "guided prediction")?;
        let scratch = Tensor::empty_named(dev, &lat_shape, dt, "guidance scratch")?;
        let forward = |ctx: Tensor, t: f32| -> Result<Tensor> {
            let inputs = Inputs { hidden_states: x_in.clone(), timestep: vec![t; b], encoder_hidden_states: ctx, encoder_hidden_states_image: image.clone() };
            self.transformer.forward(&engine, &inputs, None)
        };
        callbacks.progress(Stage::Denoise, 0, req.steps);
        for k in 0..req.steps {
            if cancel.is_cancelled() {
                return Ok((engine.host_bytes(), false));
            }
            let t = sched.model_timestep(k)?;
            for s in 0..b {
                wanrt_runtime::ops::cast(latents, &x_in.narrow(0, s, 1)?.narrow(1, 0, z)?)?;
            }
            let v = if !guided {
                forward(text_row(0)?, t)?
            } else if b == 2 {
                let out = forward(cond.text.clone(), t)?;
                combine(&out.narrow(0, 0, 1)?, &out.narrow(0, 1, 1)?, req.guidance, &scratch, &guided_out)?;
                guided_out.clone()
            } else {
                let c = keep(&forward(text_row(0)?, t)?, dt, "conditional prediction")?;
                let u = forward(text_row(1)?, t)?;
                combine(&c, &u, req.guidance, &scratch, &guided_out)?;
                guided_out.clone()
            };
            sched.step(&mut backend, &v, latents)?;
            // One host wait per step: progress and cancellation follow the device, not the queue.
            dev.synchronize()?;
            callbacks.step_end(k, latents)?;
            callbacks.progress(Stage::Denoise, k + 1, req.steps);
        }
        let host = engine.host_bytes();
        drop(engine);
        Ok((host, true))
    }
}

/// The initial latents' dtype (fp32, as the pipelines' `prepare_latents` draws them).
pub const LATENT_DTYPE: DType = DType::F32;
