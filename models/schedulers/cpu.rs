//! CPU executor of the latent update plans, on host slices: the reference the CUDA kernels are
//! tested against, and the backend of the CPU scheduler tests.

use wanrt_runtime::{DType, Error, Result};

use super::backend::LatentBackend;
use super::plan::{bf16_bits_to_f32, euler_element, unipc_element, EulerUpdate, UniPcUpdate};

/// A model output on the host: f32, or bf16 as raw bits.
#[derive(Clone, Copy, Debug)]
pub enum HostModelOutput<'a> {
    F32(&'a [f32]),
    Bf16(&'a [u16]),
}

impl HostModelOutput<'_> {
    pub fn len(&self) -> usize {
        match self {
            HostModelOutput::F32(v) => v.len(),
            HostModelOutput::Bf16(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn dtype(&self) -> DType {
        match self {
            HostModelOutput::F32(_) => DType::F32,
            HostModelOutput::Bf16(_) => DType::BF16,
        }
    }

    #[inline]
    fn get(&self, i: usize) -> f32 {
        match self {
            HostModelOutput::F32(v) => v[i],
            HostModelOutput::Bf16(v) => bf16_bits_to_f32(v[i]),
        }
    }
}

fn check_len(op: &'static str, name: &str, len: usize, expected: usize) -> Result<()> {
    if len == expected {
        Ok(())
    } else {
        Err(Error::Shape {
            op,
            name: name.into(),
            expected: format!("{expected} elements"),
            got: vec![len],
        })
    }
}

fn check_dtype(op: &'static str, v: &HostModelOutput<'_>, v_bf16: u32) -> Result<()> {
    let expected = if v_bf16 != 0 { DType::BF16 } else { DType::F32 };
    if v.dtype() == expected {
        Ok(())
    } else {
        Err(Error::DType {
            op,
            name: "model output".into(),
            expected: format!("{expected} (the plan's)"),
            got: v.dtype(),
        })
    }
}

/// Runs one UniPC plan over host slices (see `UniPcUpdate` for the buffers' roles).
pub fn apply_unipc_cpu(
    plan: &UniPcUpdate,
    v: HostModelOutput<'_>,
    x: &mut [f32],
    m_new: &mut [f32],
    m_prev: Option<&[f32]>,
    last: &mut [f32],
) -> Result<()> {
    const OP: &str = "apply_unipc_cpu";
    let n = x.len();
    check_dtype(OP, &v, plan.v_bf16)?;
    check_len(OP, "model output", v.len(), n)?;
    check_len(OP, "m_new", m_new.len(), n)?;
    check_len(OP, "last", last.len(), n)?;
    let needs_prev = plan.corrector_order > 0 || plan.predictor_order == 2;
    let m_prev: &[f32] = match (m_prev, needs_prev) {
        (Some(m), _) => {
            check_len(OP, "m_prev", m.len(), n)?;
            m
        }
        (None, false) => &[],
        (None, true) => {
            return Err(Error::invalid(format!(
                "{OP}: the plan reads m_(k-1) but none was given"
            )))
        }
    };
    for i in 0..n {
        let m1 = if needs_prev { m_prev[i] } else { 0.0 };
        let out = unipc_element(plan, v.get(i), x[i], m_new[i], m1, last[i]);
        x[i] = out.x;
        m_new[i] = out.m;
        last[i] = out.last;
    }
    Ok(())
}

/// Runs one Euler plan over a host slice.
pub fn apply_euler_cpu(plan: &EulerUpdate, v: HostModelOutput<'_>, x: &mut [f32]) -> Result<()> {
    const OP: &str = "apply_euler_cpu";
    check_dtype(OP, &v, plan.v_bf16)?;
    check_len(OP, "model output", v.len(), x.len())?;
    for (i, xi) in x.iter_mut().enumerate() {
        *xi = euler_element(plan, v.get(i), *xi);
    }
    Ok(())
}

/// The host backend: latents are `Vec<f32>`, model outputs `HostModelOutput`.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuLatents;

impl LatentBackend for CpuLatents {
    type Buffer = Vec<f32>;
    type ModelOutput<'a> = HostModelOutput<'a>;

    fn alloc_latent(&mut self, len: usize) -> Result<Vec<f32>> {
        Ok(vec![0.0; len])
    }

    fn latent_len(&self, buf: &Vec<f32>) -> usize {
        buf.len()
    }

    fn model_output_len(&self, v: &HostModelOutput<'_>) -> usize {
        v.len()
    }

    fn model_output_dtype(&self, v: &HostModelOutput<'_>) -> DType {
        v.dtype()
    }

    fn apply_unipc(
        &mut self,
        plan: &UniPcUpdate,
        v: HostModelOutput<'_>,
        x: &mut Vec<f32>,
        m_new: &mut Vec<f32>,
        m_prev: Option<&Vec<f32>>,
        last: &mut Vec<f32>,
    ) -> Result<()> {
        apply_unipc_cpu(plan, v, x, m_new, m_prev.map(|m| m.as_slice()), last)
    }

    fn apply_euler(
        &mut self,
        plan: &EulerUpdate,
        v: HostModelOutput<'_>,
        x: &mut Vec<f32>,
    ) -> Result<()> {
        apply_euler_cpu(plan, v, x)
    }
}
