//! Where the latents live. The schedulers keep their history (m_{k−1}, m_{k−2}, the last corrected
//! sample) as buffers of a backend and hand plans to it; the host never reads the latents. The CPU
//! backend (`cpu.rs`) runs the plans on `Vec<f32>`; a device backend runs the same plans as the
//! `kernels/scheduler.cu` kernels on its compute stream.

use wanrt_runtime::{DType, Result};

use super::plan::{EulerUpdate, UniPcUpdate};

/// Latent storage and the two plan executors.
///
/// Contract for the executors: every buffer and the model output have the same element count
/// (the schedulers check it with `latent_len`/`model_output_len` before calling), and the result
/// must equal the op sequence documented on the plan struct, bit for bit.
pub trait LatentBackend {
    /// An f32 latent-sized buffer (a device tensor, or a `Vec<f32>` on the host).
    type Buffer;
    /// A borrowed model output, f32 or bf16.
    type ModelOutput<'a>;

    /// A new buffer of `len` f32 elements; its contents are never read before being written.
    fn alloc_latent(&mut self, len: usize) -> Result<Self::Buffer>;
    fn latent_len(&self, buf: &Self::Buffer) -> usize;
    fn model_output_len(&self, v: &Self::ModelOutput<'_>) -> usize;
    fn model_output_dtype(&self, v: &Self::ModelOutput<'_>) -> DType;

    /// One UniPC step: `x` is the sample in and x_{k+1} out; `m_new` holds m_{k−2} in (read only by
    /// an order-2 corrector) and m_k out; `m_prev` is m_{k−1} (absent on the first step); `last` is
    /// the last corrected sample in (read only by the corrector) and this step's out.
    fn apply_unipc(
        &mut self,
        plan: &UniPcUpdate,
        v: Self::ModelOutput<'_>,
        x: &mut Self::Buffer,
        m_new: &mut Self::Buffer,
        m_prev: Option<&Self::Buffer>,
        last: &mut Self::Buffer,
    ) -> Result<()>;

    /// One Euler step on `x` in place.
    fn apply_euler(
        &mut self,
        plan: &EulerUpdate,
        v: Self::ModelOutput<'_>,
        x: &mut Self::Buffer,
    ) -> Result<()>;
}
