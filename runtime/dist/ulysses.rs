//! Ulysses sequence parallelism's layout changes (DeepSpeed-Ulysses; xDiT's `xfuser` and Wan2.1's
//! `wan/distributed/xdit_context_parallel.py` split the same way): each of `w` ranks holds `s_r`
//! tokens of every head, [B, s_r, H, d]; attention needs every token of some heads. One all-to-all
//! turns it into [B, w·s_r, H/w, d] (all tokens, this rank's `H/w` heads: chunk `j` of the heads goes
//! to rank `j`), and one back after attention.
//!
//! The moves are listed as [`Step`]s (block transposes and all-to-alls), which [`UlyssesLayout::run_cpu`]
//! and [`UlyssesLayout::run_device`] both execute, so the CPU tests check the exact sequence the
//! device runs.

use crate::gpu::Comm;
use crate::{ops, Error, Result, Tensor};

/// One move of the data held by every rank.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// View the rank's data as [a, b, c] (c the contiguous block), write it as [b, a, c].
    Transpose { a: usize, b: usize, c: usize },
    /// Chunk `j` of the rank's data goes to rank `j`; chunk `i` of the result comes from rank `i`.
    AllToAll,
}

/// The Ulysses all-to-alls for one attention input or output of shape [batch, s_r, heads, head_dim]
/// per rank, over `world` ranks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UlyssesLayout {
    pub batch: usize,
    /// Tokens per rank (the padded split's `per_part`).
    pub s_r: usize,
    pub heads: usize,
    pub head_dim: usize,
    pub world: usize,
}

impl UlyssesLayout {
    pub fn new(batch: usize, s_r: usize, heads: usize, head_dim: usize, world: usize) -> Result<UlyssesLayout> {
        if world == 0 || heads % world != 0 {
            return Err(Error::invalid(format!("Ulysses: {heads} heads do not split over {world} ranks")));
        }
        Ok(UlyssesLayout { batch, s_r, heads, head_dim, world })
    }

    /// Heads per rank after the scatter.
    pub fn heads_per_rank(&self) -> usize {
        self.heads / self.world
    }

    /// Elements each rank holds (the same before and after either move).
    pub fn numel(&self) -> usize {
        self.batch * self.s_r * self.heads * self.head_dim
    }

    /// [B, s_r, H, d] (local tokens, all heads) → [B, w·s_r, H/w, d] (all tokens, local heads).
    pub fn scatter_heads(&self) -> Vec<Step> {
        let (b, w, hp) = (self.batch, self.world, self.heads_per_rank() * self.head_dim);
        // Heads grouped by destination: [B·s_r, w, hp] → [w, B·s_r, hp]; then the exchange leaves
        // [w (source rank), B, s_r·hp], which is [B, w·s_r, hp] once the batch comes first.
        let mut steps = vec![Step::Transpose { a: b * self.s_r, b: w, c: hp }, Step::AllToAll];
        if b > 1 {
            steps.push(Step::Transpose { a: w, b, c: self.s_r * hp });
        }
        steps
    }

    /// The inverse of [`UlyssesLayout::scatter_heads`]: [B, w·s_r, H/w, d] → [B, s_r, H, d].
    pub fn gather_heads(&self) -> Vec<Step> {
        let (b, w, hp) = (self.batch, self.world, self.heads_per_rank() * self.head_dim);
        let mut steps = Vec::new();
        if b > 1 {
            steps.push(Step::Transpose { a: b, b: w, c: self.s_r * hp });
        }
        steps.push(Step::AllToAll);
        steps.push(Step::Transpose { a: w, b: b * self.s_r, c: hp });
        steps
    }

    /// Runs `steps` on the CPU for every rank at once (`ranks[i]` is rank i's data), as the device
    /// does: the reference the tests hold the layout to.
    pub fn run_cpu<T: Copy>(&self, steps: &[Step], ranks: &mut [Vec<T>]) -> Result<()> {
        let n = self.numel();
        if ranks.len() != self.world || ranks.iter().any(|r| r.len() != n) {
            return Err(Error::invalid(format!("Ulysses CPU run: {} ranks of {n} elements expected", self.world)));
        }
        for step in steps {
            match *step {
                Step::Transpose { a, b, c } => {
                    for r in ranks.iter_mut() {
                        *r = transpose_cpu(r, a, b, c)?;
                    }
                }
                Step::AllToAll => {
                    let chunk = n / self.world;
                    let old: Vec<Vec<T>> = ranks.to_vec();
                    for (i, r) in ranks.iter_mut().enumerate() {
                        for (j, src) in old.iter().enumerate() {
                            // Rank i's chunk j comes from rank j's chunk i.
                            r[j * chunk..(j + 1) * chunk].copy_from_slice(&src[i * chunk..(i + 1) * chunk]);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Runs `steps` for this rank on its device: `x` holds the rank's data (contiguous, numel elements),
    /// `scratch` a buffer of the same size and dtype; the result is returned in whichever of the two the
    /// last step wrote. Transposes queue on the compute stream, the all-to-alls too (NCCL on the
    /// compute stream keeps the order without events).
    pub fn run_device<'t>(&self, steps: &[Step], comm: &Comm, x: &'t Tensor, scratch: &'t Tensor) -> Result<&'t Tensor> {
        let n = self.numel();
        for t in [x, scratch] {
            if t.numel() != n as u64 || !t.is_contiguous() {
                return Err(Error::invalid(format!("Ulysses: {t:?} must be contiguous with {n} elements")));
            }
        }
        if comm.world() != self.world {
            return Err(Error::invalid(format!("Ulysses: layout for {} ranks, communicator of {}", self.world, comm.world())));
        }
        let (mut cur, mut other) = (x, scratch);
        let stream = x.device().compute();
        for step in steps {
            match *step {
                Step::Transpose { a, b, c } => {
                    ops::transpose_blocks(&cur.reshape(&[a, b, c])?, &other.reshape(&[b, a, c])?)?;
                }
                Step::AllToAll => comm.all_to_all(cur, other, stream)?,
            }
            std::mem::swap(&mut cur, &mut other);
        }
        Ok(cur)
    }
}

/// [a, b, c] → [b, a, c] on the CPU.
pub fn transpose_cpu<T: Copy>(x: &[T], a: usize, b: usize, c: usize) -> Result<Vec<T>> {
    if x.len() != a * b * c {
        return Err(Error::invalid(format!("transpose: {} elements are not [{a}, {b}, {c}]", x.len())));
    }
    let mut out = Vec::with_capacity(x.len());
    for j in 0..b {
        for i in 0..a {
            out.extend_from_slice(&x[(i * b + j) * c..(i * b + j + 1) * c]);
        }
    }
    Ok(out)
}
