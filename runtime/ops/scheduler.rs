//! Launchers of `kernels/scheduler.cu`: one flow-matching scheduler step over n latent elements,
//! executing a plan block the caller computed on the host (models/schedulers/plan.rs: `UniPcUpdate`,
//! `EulerUpdate`). The blocks' layout is the kernel file's; these launchers check its size and the
//! fields that decide which buffers the kernel reads.

use bytemuck::Pod;

use crate::gpu::kernels::{EULER_STEP, UNIPC_STEP};
use crate::gpu::LaunchConfig;
use crate::{DType, Error, Result, Tensor};

use super::checks::same_device;
use super::range;

/// The plan as the kernel's `N`-byte struct.
fn plan_bytes<'a, P: Pod, const N: usize>(op: &'static str, plan: &'a P) -> Result<&'a [u8; N]> {
    bytemuck::bytes_of(plan)
        .try_into()
        .map_err(|_| Error::invalid(format!("{op}: the plan is {} bytes, the kernel's is {N}", std::mem::size_of::<P>())))
}

/// u32 field `i` of a plan block.
fn field(bytes: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([bytes[4 * i], bytes[4 * i + 1], bytes[4 * i + 2], bytes[4 * i + 3]])
}

/// The model output `v` (f32 or bf16, contiguous, agreeing with the plan's leading `v_bf16` field) and
/// the f32 contiguous buffers of as many elements; returns the element count.
fn check(op: &'static str, v_bf16: u32, v: &Tensor, bufs: &[(&str, &Tensor)]) -> Result<u64> {
    match (v.dtype(), v_bf16) {
        (DType::F32, 0) | (DType::BF16, 1) => {}
        (dt, _) => return Err(Error::invalid(format!("{op}: model output is {dt} but the plan was made for v_bf16 = {v_bf16}"))),
    }
    v.expect_contiguous(op, "model output")?;
    let n = v.numel();
    for (name, t) in bufs {
        t.expect_dtype(op, name, DType::F32)?;
        t.expect_contiguous(op, name)?;
        if t.numel() != n {
            return Err(Error::Shape { op, name: name.to_string(), expected: format!("{n} elements"), got: t.shape().to_vec() });
        }
    }
    let mut all = vec![("model output", v)];
    all.extend_from_slice(bufs);
    same_device(op, &all)?;
    Ok(n)
}

/// One UniPC step (`unipc_step_{f32,bf16}`, by `v`'s dtype): `plan` is the kernel's 60-byte
/// `UniPcUpdate` (u32 v_bf16, corrector_order, predictor_order, then 12 f32 coefficients). `x`,
/// `m_new`, `last`, `m_prev`: f32 latents of `v`'s length; `m_prev` may be absent only for a
/// first-order step without corrector.
pub fn unipc_step<P: Pod>(plan: &P, v: &Tensor, x: &Tensor, m_new: &Tensor, m_prev: Option<&Tensor>, last: &Tensor) -> Result<()> {
    const OP: &str = "unipc_step";
    let _r = range(OP);
    let bytes = plan_bytes::<P, 60>(OP, plan)?;
    let (corrector_order, predictor_order) = (field(bytes, 1), field(bytes, 2));
    let mut bufs = vec![("x", x), ("m_new", m_new), ("last", last)];
    match m_prev {
        Some(m) => bufs.push(("m_prev", m)),
        None if corrector_order == 0 && predictor_order == 1 => {}
        None => return Err(Error::invalid(format!("{OP}: a second-order step needs the previous model output"))),
    }
    let n = check(OP, field(bytes, 0), v, &bufs)?;
    let dev = v.device();
    UNIPC_STEP.launch(dev, v.dtype(), LaunchConfig::elementwise(n, 256), (bytes, v, x, m_new, m_prev, last, n))
}

/// One Euler step (`euler_step_{f32,bf16}`, by `v`'s dtype): `plan` is the kernel's 8-byte
/// `EulerUpdate` (u32 v_bf16, f32 dt); `x`: f32 latents of `v`'s length.
pub fn euler_step<P: Pod>(plan: &P, v: &Tensor, x: &Tensor) -> Result<()> {
    const OP: &str = "euler_step";
    let _r = range(OP);
    let bytes = plan_bytes::<P, 8>(OP, plan)?;
    let n = check(OP, field(bytes, 0), v, &[("x", x)])?;
    EULER_STEP.launch(v.device(), v.dtype(), LaunchConfig::elementwise(n, 256), (bytes, v, x, n))
}
