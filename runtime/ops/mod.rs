//! Typed op launchers: the safe, public way to run the kernels. Each checks shapes and dtypes (so
//! every element a kernel touches lies inside its tensors), opens an NVTX range, and queues its kernel
//! on the compute stream of the tensors' device through the kernel table (`gpu::kernels`).

pub mod activation;
pub mod attention;
pub mod broadcast;
pub mod cast;
pub(crate) mod checks;
pub mod conv;
pub mod elementwise;
pub mod embedding;
pub mod gemm;
pub mod modulate;
pub mod norm;
pub mod patch;
pub mod permute;
pub mod random;
pub mod relative_bias;
pub mod resample;
pub mod rope;
pub mod scheduler;
pub mod softmax;

pub use activation::{gelu, gelu_new, silu, GeluApprox};
pub use attention::{attention, attention_apply, attention_normalize, attention_scores};
pub use broadcast::add_rows_f32;
pub use cast::cast;
pub use conv::{conv3d, conv3d_norm, Conv3dGeom, ConvArgs};
pub use elementwise::{add, mul, scale};
pub use embedding::embedding;
pub use gemm::{gemm, linear, linear_stack};
pub use modulate::{gated_residual, layer_norm_modulate};
pub use norm::{l2_norm, layer_norm, rms_norm, rms_norm_t5};
pub use patch::{patchify, unpatchify};
pub use permute::transpose_blocks;
pub use random::fill_uniform;
pub use relative_bias::relative_bias_softmax;
pub use resample::{copy_window, from_channels_last, time_interleave, to_channels_last, to_channels_last_frames, upsample_nearest2x};
pub use rope::{rms_norm_rope, rope_3d, rope_tables};
pub use softmax::softmax;

/// An NVTX range on the calling thread, closed on drop. Names show up in Nsight Systems timelines.
pub struct Range(());

/// Opens an NVTX range named `name`.
pub fn range(name: &'static str) -> Range {
    nvtx::range_push!("{}", name);
    Range(())
}

impl Drop for Range {
    fn drop(&mut self) {
        nvtx::range_pop!();
    }
}
