//! Decoded chunks on their way to the host, one chunk behind the GPU.

use wanrt_runtime::gpu::PinnedBuffer;
use wanrt_runtime::tensor::bytes_to_f32;
use wanrt_runtime::{DType, Error, Result, Tensor};

/// Decoded chunks on their way to the host one chunk behind the GPU: [`Self::push`] queues a chunk's
/// download into pinned memory on the compute stream (no wait) and returns the chunk before it, whose
/// download finished while the GPU went on to the next one. Converting to f32 and the caller's work
/// then overlap the decode instead of stalling it (a synchronous download per chunk left the GPU idle
/// through the copy and the host's conversion, about 18 ms per 4-frame 480p chunk on an H100).
/// Chunks come out in order and unchanged, each with the tag it went in with; the buffers (two
/// chunks' bytes) go back to the device's pinned pool.
pub struct ChunkDownloads<T = ()> {
    pending: Option<(PinnedBuffer, DType, usize, T)>,
}

/// A chunk back on the host: its values as f32 ((B, 3, frames, H, W) order), frames and tag.
pub type HostChunk<T> = (Vec<f32>, usize, T);

impl<T> Default for ChunkDownloads<T> {
    fn default() -> Self {
        ChunkDownloads { pending: None }
    }
}

impl<T> ChunkDownloads<T> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues the download of `chunk` ((B, 3, frames, H, W), contiguous) and returns the previous
    /// chunk, waiting for its download if the GPU has not reached it yet.
    pub fn push(&mut self, chunk: &Tensor, tag: T) -> Result<Option<HostChunk<T>>> {
        let frames = *chunk.shape().get(2).ok_or_else(|| Error::invalid(format!("decoded chunk {:?}: expected (B, 3, frames, H, W)", chunk.shape())))?;
        let dev = chunk.device();
        let mut buf = dev.pinned().alloc(chunk.byte_len() as usize, false)?;
        chunk.download_pinned(&mut buf, dev.compute())?;
        self.pending.replace((buf, chunk.dtype(), frames, tag)).map(Self::read).transpose()
    }

    /// The last chunk pushed, once its download is done (`None` when every chunk has come out).
    pub fn finish(&mut self) -> Result<Option<HostChunk<T>>> {
        self.pending.take().map(Self::read).transpose()
    }

    fn read((buf, dtype, frames, tag): (PinnedBuffer, DType, usize, T)) -> Result<HostChunk<T>> {
        Ok((bytes_to_f32(buf.as_slice()?, dtype), frames, tag))
    }
}
