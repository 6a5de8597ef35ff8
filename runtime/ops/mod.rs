//! Typed op launchers. Each checks shapes and dtypes, opens an NVTX range, and queues its kernel on
//! the compute stream of the tensors' device.

pub mod attention_fast;
pub mod cast;
pub mod gemm;

pub use cast::cast;
pub use gemm::{gemm, linear};

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
