//! The latent update on the GPU: the same plans as the CPU executor, run by `kernels/scheduler.cu`
//! (through `wanrt_runtime::ops::scheduler`, which checks the buffers against the plan) on the compute
//! stream, so the denoising loop never copies latents to the host.

use std::sync::Arc;

use super::backend::LatentBackend;
use super::plan::{EulerUpdate, UniPcUpdate};
use wanrt_runtime::ops::scheduler;
use wanrt_runtime::{DType, Device, Result, Tensor};

/// Latent buffers as f32 device tensors; model outputs as f32 or bf16 device tensors of the same length.
pub struct DeviceLatents {
    dev: Arc<Device>,
}

impl DeviceLatents {
    pub fn new(dev: Arc<Device>) -> DeviceLatents {
        DeviceLatents { dev }
    }
}

impl LatentBackend for DeviceLatents {
    type Buffer = Tensor;
    type ModelOutput<'a> = &'a Tensor;

    fn alloc_latent(&mut self, len: usize) -> Result<Tensor> {
        Tensor::zeros(&self.dev, &[len], DType::F32)
    }

    fn latent_len(&self, buf: &Tensor) -> usize {
        buf.numel() as usize
    }

    fn model_output_len(&self, v: &&Tensor) -> usize {
        v.numel() as usize
    }

    fn model_output_dtype(&self, v: &&Tensor) -> DType {
        v.dtype()
    }

    fn apply_unipc(
        &mut self,
        plan: &UniPcUpdate,
        v: &Tensor,
        x: &mut Tensor,
        m_new: &mut Tensor,
        m_prev: Option<&Tensor>,
        last: &mut Tensor,
    ) -> Result<()> {
        // The runtime's launcher checks the plan's size and order fields against the buffers given.
        scheduler::unipc_step(plan, v, x, m_new, m_prev, last)
    }

    fn apply_euler(&mut self, plan: &EulerUpdate, v: &Tensor, x: &mut Tensor) -> Result<()> {
        scheduler::euler_step(plan, v, x)
    }
}
