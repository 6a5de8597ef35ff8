//! The latent update on the GPU: the same plans as the CPU executor, run by `kernels/scheduler.cu` on
//! the compute stream, so the denoising loop never copies latents to the host.

use std::sync::Arc;

use super::backend::LatentBackend;
use super::plan::{EulerUpdate, UniPcUpdate};
use wanrt_runtime::gpu::{KernelArgs, LaunchConfig};
use wanrt_runtime::{DType, Device, Error, Result, Tensor};

/// Latent buffers as f32 device tensors; model outputs as f32 or bf16 device tensors of the same length.
pub struct DeviceLatents {
    dev: Arc<Device>,
}

impl DeviceLatents {
    pub fn new(dev: Arc<Device>) -> DeviceLatents {
        DeviceLatents { dev }
    }
}

fn check(op: &'static str, v: &Tensor, plan_bf16: u32, bufs: &[(&str, &Tensor)]) -> Result<u64> {
    let n = v.numel();
    match (v.dtype(), plan_bf16) {
        (DType::F32, 0) | (DType::BF16, 1) => {}
        (dt, _) => return Err(Error::invalid(format!("{op}: model output is {dt} but the plan was made for v_bf16 = {plan_bf16}"))),
    }
    v.expect_contiguous(op, "model output")?;
    for (name, t) in bufs {
        t.expect_dtype(op, name, DType::F32)?;
        t.expect_contiguous(op, name)?;
        if t.numel() != n {
            return Err(Error::Shape { op, name: name.to_string(), expected: format!("{n} elements"), got: t.shape().to_vec() });
        }
    }
    Ok(n)
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
        const OP: &str = "unipc_step";
        let _r = wanrt_runtime::ops::range(OP);
        let mut bufs = vec![("x", &*x), ("m_new", &*m_new), ("last", &*last)];
        if let Some(m) = m_prev {
            bufs.push(("m_prev", m));
        } else if !(plan.corrector_order == 0 && plan.predictor_order == 1) {
            return Err(Error::invalid("unipc_step: a second-order step needs the previous model output"));
        }
        let n = check(OP, v, plan.v_bf16, &bufs)?;
        let f = self.dev.function("scheduler", &format!("unipc_step_{}", v.dtype().kernel_suffix()))?;
        let mut args = KernelArgs::new();
        args.pod(plan).ptr(v.ptr()).ptr(x.ptr()).ptr(m_new.ptr()).ptr(m_prev.map_or(0, |m| m.ptr())).ptr(last.ptr()).u64(n);
        self.dev.launch(&f, LaunchConfig::elementwise(n, 256), self.dev.compute(), &args)
    }

    fn apply_euler(&mut self, plan: &EulerUpdate, v: &Tensor, x: &mut Tensor) -> Result<()> {
        const OP: &str = "euler_step";
        let _r = wanrt_runtime::ops::range(OP);
        let n = check(OP, v, plan.v_bf16, &[("x", &*x)])?;
        let f = self.dev.function("scheduler", &format!("euler_step_{}", v.dtype().kernel_suffix()))?;
        let mut args = KernelArgs::new();
        args.pod(plan).ptr(v.ptr()).ptr(x.ptr()).u64(n);
        self.dev.launch(&f, LaunchConfig::elementwise(n, 256), self.dev.compute(), &args)
    }
}
