//! The transformer over several GPUs by sequence parallelism (Ulysses), as Wan2.1's
//! `wan/distributed/xdit_context_parallel.py` (`usp_attn_forward`, `usp_dit_forward`) and xDiT split
//! it: every rank of a group holds `per_part` of the tokens through the whole block stack; only the
//! self-attention needs all tokens, and gets them for its share of the heads by an all-to-all before
//! and after (`runtime::dist::ulysses`). Cross-attention, norms, FFN and modulation are per token and
//! run on the local tokens unchanged; the rank's RoPE rows are its tokens' rows of the whole grid's
//! table. The output head's rows are all-gathered, so every rank ends with the whole sample.
//!
//! Batches larger than one run the exchange per batch element (contiguous views), so one layout (B = 1)
//! serves every batch.

use wanrt_runtime::dist::{SeqSplit, UlyssesLayout};
use wanrt_runtime::gpu::Comm;
use wanrt_runtime::{ops, Error, Result, Tensor};

/// One rank's part in a sequence-parallel forward.
pub struct SequenceParallel<'a> {
    pub comm: &'a Comm,
    /// Tokens of one forward (the whole grid) split over the communicator's ranks.
    pub split: SeqSplit,
}

impl<'a> SequenceParallel<'a> {
    /// `tokens`: the grid's token count (frames × height × width after patching).
    pub fn new(comm: &'a Comm, tokens: usize) -> Result<SequenceParallel<'a>> {
        Ok(SequenceParallel { comm, split: SeqSplit::new(tokens, comm.world())? })
    }

    pub fn rank(&self) -> usize {
        self.comm.rank() % self.comm.world()
    }

    /// Tokens each rank holds (the padded share).
    pub fn local_tokens(&self) -> usize {
        self.split.per_part
    }

    /// Self-attention of the rank's tokens: q, k, v [B, per_part, H·hd] (RMSNorm and RoPE applied)
    /// are scattered to [B, padded, H/w, hd] in place, attended over the real tokens, gathered back into
    /// `out` [B, per_part, H·hd]; `scratch` (same size, free) carries the exchanges. q, k and v are
    /// overwritten.
    #[allow(clippy::too_many_arguments)]
    pub fn self_attention(&self, q: &Tensor, k: &Tensor, v: &Tensor, out: &Tensor, scratch: &Tensor, heads: usize, hd: usize, scale: f32) -> Result<()> {
        let (b, sr) = (q.dim(0), q.dim(1));
        if sr != self.split.per_part {
            return Err(Error::invalid(format!("sequence parallel: {sr} local tokens, the split gives {}", self.split.per_part)));
        }
        let lay = UlyssesLayout::new(1, sr, heads, hd, self.comm.world())?;
        let (hp, padded, tokens) = (lay.heads_per_rank(), self.split.padded(), self.split.tokens);
        let one = |t: &Tensor, i: usize| t.narrow(0, i, 1);
        for i in 0..b {
            let sc = one(scratch, i)?;
            for t in [q, k, v] {
                let ti = one(t, i)?;
                // Two steps (transpose, exchange) leave the result where it started.
                if lay.run_device(&lay.scatter_heads(), self.comm, &ti, &sc)?.ptr() != ti.ptr() {
                    return Err(Error::invalid("sequence parallel: the head scatter left its result in the scratch buffer"));
                }
            }
            let q4 = one(q, i)?.reshape(&[1, padded, hp, hd])?;
            let k4 = one(k, i)?.reshape(&[1, padded, hp, hd])?.narrow(1, 0, tokens)?;
            let v4 = one(v, i)?.reshape(&[1, padded, hp, hd])?.narrow(1, 0, tokens)?;
            let o = one(out, i)?;
            ops::attention(&q4, &k4, &v4, None, scale, &o.reshape(&[1, padded, hp, hd])?)?;
            if lay.run_device(&lay.gather_heads(), self.comm, &o, &sc)?.ptr() != o.ptr() {
                return Err(Error::invalid("sequence parallel: the head gather left its result in the scratch buffer"));
            }
        }
        Ok(())
    }

    /// The whole sequence's rows from every rank's `local` [B, per_part, C]: all-gathered into
    /// `gathered` [w, B, per_part, C], reordered into `full` [B, padded, C] (all on the compute stream).
    pub fn gather_rows(&self, local: &Tensor, gathered: &Tensor, full: &Tensor) -> Result<()> {
        let (b, sr, c) = (local.dim(0), local.dim(1), local.dim(2));
        let w = self.comm.world();
        self.comm.all_gather(local, gathered, local.device().compute())?;
        ops::transpose_blocks(&gathered.reshape(&[w, b, sr * c])?, &full.reshape(&[b, w, sr * c])?)
    }
}
