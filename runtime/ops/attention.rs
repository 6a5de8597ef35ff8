//! Portable attention forward (flash-style tiling with f32 FMA math, no tensor cores): the reference
//! path for every dtype and the supported head dims, O(N) memory for any Nq and Nk.

use crate::gpu::{KernelArgs, LaunchConfig};
use crate::{DType, Error, Result, Tensor};

use super::checks::{contiguous, same_device, shape_err};
use super::range;

/// Head dims with a compiled kernel (UMT5 64, CLIP 80, DiT 128).
pub const HEAD_DIMS: [usize; 3] = [64, 80, 128];

/// Queries per block, keys per tile and threads per block of `kernels/attention.cu` (its tile table
/// explains the layout); the dynamic shared memory is three f32 tiles of 64 rows × (d + 4).
const BQ: usize = 64;
const THREADS: u32 = 256;
fn shared_bytes(d: usize) -> u32 {
    (3 * 64 * (d + 4) * 4) as u32
}

/// Kernel parameters, passed by value (layout matches `AttnParams` in the kernel).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct AttnParams {
    q: u64,
    k: u64,
    v: u64,
    bias: u64,
    out: u64,
    batch: u64,
    nq: u64,
    nk: u64,
    heads: u64,
    bias_batch_stride: u64,
    scale: f32,
    pad: f32,
}

/// `out = softmax(q kᵀ · scale + bias) v` per batch and head, not causal, no mask.
///
/// `q`: [B, Nq, H, d]; `k`, `v`: [B, Nk, H, d]; `out`: [B, Nq, H, d]; one dtype (f32, bf16 or f16)
/// for all four; d ∈ [`HEAD_DIMS`]; Nk ≥ 1; all contiguous. `bias`: optional f32 [B or 1, H, Nq, Nk],
/// contiguous, added to the scaled scores (UMT5's relative-position bias). Scores, softmax and the
/// output accumulate in f32; the output is rounded once. A query whose biased scores are all -inf
/// gets a zero output row.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, bias: Option<&Tensor>, scale: f32, out: &Tensor) -> Result<()> {
    // Tensor-core paths when they apply (bf16/f16, no bias; `WANRT_ATTN_PORTABLE=1` forces the portable
    // kernel): wgmma on sm_90a unless `WANRT_ATTN_WGMMA=0`, else mma.sync on sm_80+.
    if bias.is_none() && super::attention_hopper::wgmma_enabled() && super::attention_hopper::wgmma_supported(q, k, v, out) {
        return super::attention_hopper::attention_wgmma(q, k, v, scale, out);
    }
    if bias.is_none() && super::attention_fast::mma_supported(q, k, v, out) {
        return super::attention_fast::attention_mma(q, k, v, scale, out);
    }
    attention_portable(q, k, v, bias, scale, out)
}

/// The portable kernel behind [`attention`], whatever the fast paths could do (same contract).
pub fn attention_portable(q: &Tensor, k: &Tensor, v: &Tensor, bias: Option<&Tensor>, scale: f32, out: &Tensor) -> Result<()> {
    const OP: &str = "attention";
    let _r = range(OP);
    let [b, nq, h, d] = *q.shape() else {
        return Err(shape_err(OP, "q", "[B, Nq, H, head_dim]", q));
    };
    if !HEAD_DIMS.contains(&d) {
        return Err(shape_err(OP, "q", format!("head_dim one of {HEAD_DIMS:?}"), q));
    }
    let nk = match *k.shape() {
        [kb, nk, kh, kd] if kb == b && kh == h && kd == d && nk > 0 => nk,
        _ => return Err(shape_err(OP, "k", format!("[{b}, Nk >= 1, {h}, {d}]"), k)),
    };
    v.expect(OP, "v", q.dtype(), k.shape())?;
    k.expect_dtype(OP, "k", q.dtype())?;
    out.expect(OP, "out", q.dtype(), q.shape())?;
    contiguous(OP, &[("q", q), ("k", k), ("v", v), ("out", out)])?;
    let mut all = vec![("q", q), ("k", k), ("v", v), ("out", out)];
    let (bias_ptr, bias_batch_stride) = match bias {
        None => (0, 0),
        Some(t) => {
            t.expect_dtype(OP, "bias", DType::F32)?;
            match *t.shape() {
                [bb, bh, bq, bk] if (bb == b || bb == 1) && bh == h && bq == nq && bk == nk => {}
                _ => return Err(shape_err(OP, "bias", format!("[{b} or 1, {h}, {nq}, {nk}]"), t)),
            }
            t.expect_contiguous(OP, "bias")?;
            all.push(("bias", t));
            (t.ptr(), if t.dim(0) == 1 { 0 } else { (h * nq * nk) as u64 })
        }
    };
    same_device(OP, &all)?;
    if b == 0 || nq == 0 || h == 0 {
        return Ok(());
    }
    let q_blocks = nq.div_ceil(BQ);
    if q_blocks > i32::MAX as usize || h > 65_535 || b > 65_535 {
        return Err(Error::invalid(format!("{OP}: grid for B={b}, Nq={nq}, H={h} exceeds the CUDA grid limits")));
    }
    let dev = q.device();
    let smem = shared_bytes(d);
    if smem > dev.max_shared_memory_optin() {
        return Err(Error::invalid(format!(
            "{OP}: head_dim {d} needs {smem} bytes of shared memory, the device allows {}",
            dev.max_shared_memory_optin()
        )));
    }
    let f = dev.function("attention", &format!("attention_{}_d{d}", q.dtype().kernel_suffix()))?;
    f.set_max_dynamic_shared_memory(smem)?;
    let p = AttnParams {
        q: q.ptr(),
        k: k.ptr(),
        v: v.ptr(),
        bias: bias_ptr,
        out: out.ptr(),
        batch: b as u64,
        nq: nq as u64,
        nk: nk as u64,
        heads: h as u64,
        bias_batch_stride,
        scale,
        pad: 0.0,
    };
    let mut args = KernelArgs::new();
    args.pod(&p);
    let cfg = LaunchConfig { grid: (q_blocks as u32, h as u32, b as u32), block: (THREADS, 1, 1), shared_mem: smem };
    dev.launch(&f, cfg, dev.compute(), &args)
}
