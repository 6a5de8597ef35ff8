//! Attention forward, `out = softmax(q kᵀ · scale + bias) v`: one op, three kernels, each module named
//! after its kernel file.
//!
//! - [`wgmma`] (`kernels/attention_wgmma.cu`): wgmma + TMA, compute capability 9.0 (sm_90a), head
//!   dim 128, bf16/f16, no bias;
//! - [`mma`] (`kernels/attention_mma.cu`): mma.sync + cp.async, compute capability 8.0 and newer,
//!   head dims 64/80/128, bf16/f16, no bias;
//! - [`portable`] (`kernels/attention.cu`): f32 FMA math, every dtype, an optional f32 bias.
//!
//! [`attention`] takes the first that applies. [`eager`] is the unfused form (two cuBLASLt GEMMs
//! around a softmax the caller picks) for models whose reference rounds scores and probabilities to
//! the model dtype. A fast path refused for a reason other than the design
//! (a bias, `WANRT_ATTN_PORTABLE=1`, `WANRT_ATTN_WGMMA=0`, an older card) is reported once per reason
//! on stderr and counted ([`refusals`]): a misaligned view silently falling back to the portable kernel
//! would otherwise run some 25 times slower than the tensor-core kernels.

pub mod eager;
pub mod mma;
pub mod portable;
mod shapes;
pub mod wgmma;

use std::sync::Mutex;

use crate::gpu::Arch;
use crate::settings::settings;
use crate::{Error, Result, Tensor};

pub use eager::{attention_apply, attention_normalize, attention_scores};
pub use portable::{attention_portable, HEAD_DIMS};

/// `out = softmax(q kᵀ · scale + bias) v` per batch and head, not causal, no mask.
///
/// `q`: [B, Nq, H, d]; `k`, `v`: [B, Nk, H, d]; `out`: [B, Nq, H, d]; one dtype (f32, bf16 or f16)
/// for all four; d ∈ [`HEAD_DIMS`]; Nk ≥ 1. `bias`: optional f32 [B or 1, H, Nq, Nk], contiguous,
/// added to the scaled scores (UMT5's relative-position bias). Scores, softmax and the output
/// accumulate in f32; the output is rounded once. A query whose biased scores are all -inf gets a zero
/// output row. The portable kernel needs contiguous tensors; the tensor-core kernels take strided
/// views with unit stride over d and 16-byte aligned rows.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, bias: Option<&Tensor>, scale: f32, out: &Tensor) -> Result<()> {
    match choose(q, k, v, bias, out) {
        Path::Wgmma => wgmma::attention_wgmma(q, k, v, scale, out),
        Path::Mma => mma::attention_mma(q, k, v, scale, out),
        Path::Portable => attention_portable(q, k, v, bias, scale, out),
    }
}

enum Path {
    Wgmma,
    Mma,
    Portable,
}

/// The first kernel that takes the call: wgmma on compute capability 9.0 unless `WANRT_ATTN_WGMMA=0`,
/// mma.sync on 8.0 and newer, both only without a bias and unless `WANRT_ATTN_PORTABLE=1`.
fn choose(q: &Tensor, k: &Tensor, v: &Tensor, bias: Option<&Tensor>, out: &Tensor) -> Path {
    let s = settings();
    if bias.is_some() || s.attn_portable {
        return Path::Portable;
    }
    let arch = q.device().arch();
    if s.attn_wgmma && arch == Arch::new(9, 0) {
        match wgmma::refusal(q, k, v, out) {
            None => return Path::Wgmma,
            Some(why) => refused("wgmma", "mma.sync", &why),
        }
    }
    if arch >= Arch::new(8, 0) {
        match mma::refusal(q, k, v, out) {
            None => return Path::Mma,
            Some(why) => refused("mma.sync", "portable", &why),
        }
    }
    Path::Portable
}

/// Refusals so far: (reason, count).
static REFUSALS: Mutex<Vec<(String, u64)>> = Mutex::new(Vec::new());

/// Counts a refusal and reports it on stderr the first time its reason is seen. Reasons are coarse (the
/// kernel, the argument and the kind of problem), so a run with many shapes still reports each once.
fn refused(path: &str, next: &str, why: &Error) {
    let reason = match why {
        Error::Shape { name, .. } => format!("{path}: {name} has a shape, stride or alignment it does not take"),
        Error::DType { name, got, .. } => format!("{path}: {name} is {got}"),
        other => format!("{path}: {other}"),
    };
    let mut seen = REFUSALS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(entry) = seen.iter_mut().find(|(r, _)| *r == reason) {
        entry.1 += 1;
        return;
    }
    seen.push((reason, 1));
    eprintln!("wanrt: attention: the {path} kernel declined ({why}); the {next} kernel runs instead (reported once per reason)");
}

/// The fast-path refusals of [`attention`] so far in this process: (reason, count), in order of first
/// occurrence. Empty when every call took the fastest kernel its device and arguments allow.
pub fn refusals() -> Vec<(String, u64)> {
    REFUSALS.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_counted_once_per_coarse_reason() {
        let misaligned = |offset: u64| Error::Shape {
            op: "attention_wgmma",
            name: "q".into(),
            expected: format!("a view the tensor copy engine can address (byte offset {offset})"),
            got: vec![1, 8, 2, 128],
        };
        // Two views misaligned differently are one reason; the same view refused by another kernel is another.
        refused("test-wgmma", "mma.sync", &misaligned(4));
        refused("test-wgmma", "mma.sync", &misaligned(12));
        refused("test-mma", "portable", &misaligned(4));
        let ours: Vec<_> = refusals().into_iter().filter(|(r, _)| r.starts_with("test-")).collect();
        assert_eq!(ours.len(), 2, "{ours:?}");
        assert_eq!(ours[0].1, 2);
        assert!(ours[0].0.contains("q has a shape, stride or alignment"), "{ours:?}");
        assert_eq!(ours[1].1, 1);
    }
}
