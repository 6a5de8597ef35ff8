//! Which GPU computes what: `cfg` groups (the conditional and unconditional branches of classifier-free
//! guidance on different GPUs) times `sp` GPUs per group sharing the sequence. Inside a group, heads
//! are split Ulysses-style over `ulysses` ranks (the largest degree that divides the head count), and
//! what the heads cannot cover would take ring attention over the remaining `ring` factor.

use std::ops::Range;

use crate::{Error, Result};

/// The split of one generation over `gpus` GPUs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParallelPlan {
    pub gpus: usize,
    /// Groups computing different guidance branches (1 or 2).
    pub cfg: usize,
    /// GPUs per group, sharing the sequence (`ulysses` × `ring`).
    pub sp: usize,
    /// Ranks the attention heads are split over.
    pub ulysses: usize,
    /// Ring-attention factor (key/value blocks passed around); 1 when the heads divide.
    pub ring: usize,
}

/// One rank's place in a [`ParallelPlan`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RankRole {
    /// The guidance branch this rank computes (0 = conditional, 1 = unconditional); with `cfg` = 1 each
    /// rank computes both in turn (or as one batch).
    pub group: usize,
    /// Rank inside its group, 0..sp: which part of the sequence it holds.
    pub sp_rank: usize,
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

impl ParallelPlan {
    /// The plan for `gpus` GPUs, a model with `heads` attention heads and `branches` guidance branches
    /// (2 with classifier-free guidance, 1 without). Guidance branches go to separate groups when the
    /// GPU count is even (they need no communication until the two predictions combine); the sequence
    /// is split over the rest.
    pub fn choose(gpus: usize, heads: usize, branches: usize) -> Result<ParallelPlan> {
        if gpus == 0 || heads == 0 || !(1..=2).contains(&branches) {
            return Err(Error::invalid(format!("parallel plan: gpus {gpus}, heads {heads} and branches {branches} must be ≥ 1 (branches ≤ 2)")));
        }
        let cfg = if branches == 2 && gpus % 2 == 0 { 2 } else { 1 };
        let sp = gpus / cfg;
        let ulysses = gcd(heads, sp);
        Ok(ParallelPlan { gpus, cfg, sp, ulysses, ring: sp / ulysses })
    }

    /// Whether this build runs the plan: ring attention (heads that do not divide over the sequence
    /// ranks) needs the attention kernels' log-sum-exp output to merge partial results, which they do
    /// not produce yet. The error names the GPU counts that work.
    pub fn check_supported(&self, heads: usize, branches: usize) -> Result<()> {
        if self.ring == 1 {
            return Ok(());
        }
        let ok: Vec<usize> = (1..=16).filter(|&g| ParallelPlan::choose(g, heads, branches).is_ok_and(|p| p.ring == 1)).collect();
        Err(Error::invalid(format!(
            "{} GPUs: {heads} attention heads do not split over {} sequence ranks (Ulysses degree {}, ring factor {}); \
             ring attention is not available yet: use --gpus one of {ok:?}",
            self.gpus, self.sp, self.ulysses, self.ring
        )))
    }

    /// The role of global rank `rank` (0..gpus): groups are consecutive rank ranges, so a group's
    /// all-to-all stays inside the fastest links when GPUs are numbered by locality.
    pub fn role(&self, rank: usize) -> Result<RankRole> {
        if rank >= self.gpus {
            return Err(Error::invalid(format!("rank {rank} outside a plan of {} GPUs", self.gpus)));
        }
        Ok(RankRole { group: rank / self.sp, sp_rank: rank % self.sp })
    }

    /// The global ranks of `group`.
    pub fn group_ranks(&self, group: usize) -> Range<usize> {
        group * self.sp..(group + 1) * self.sp
    }
}

/// A sequence of `tokens` split into `parts` equal chunks of `per_part` (the last padded when `parts`
/// does not divide `tokens`; padded positions are never attended to: keys are cut to `tokens`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeqSplit {
    pub tokens: usize,
    pub parts: usize,
    pub per_part: usize,
}

impl SeqSplit {
    pub fn new(tokens: usize, parts: usize) -> Result<SeqSplit> {
        if tokens == 0 || parts == 0 {
            return Err(Error::invalid(format!("sequence split: {tokens} tokens over {parts} parts")));
        }
        Ok(SeqSplit { tokens, parts, per_part: tokens.div_ceil(parts) })
    }

    /// Positions after padding (`parts` × `per_part`).
    pub fn padded(&self) -> usize {
        self.parts * self.per_part
    }

    /// The real tokens part `p` holds (possibly fewer than `per_part` for the last, or none).
    pub fn range(&self, p: usize) -> Range<usize> {
        let start = (p * self.per_part).min(self.tokens);
        start..((p + 1) * self.per_part).min(self.tokens)
    }
}
