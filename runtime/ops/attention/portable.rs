//! Portable attention forward (flash-style tiling with f32 FMA math, no tensor cores): the reference
//! path for every dtype and the supported head dims, O(N) memory for any Nq and Nk.

use crate::gpu::kernels::{HeadDim, ATTENTION};
use crate::gpu::params::PortableAttn;
use crate::gpu::LaunchConfig;
use crate::{DType, Error, Result, Tensor};

use crate::ops::checks::{contiguous, same_device, shape_err};
use crate::ops::range;

/// Head dims with a compiled kernel (UMT5 64, CLIP 80, DiT 128).
pub const HEAD_DIMS: [usize; 3] = [64, 80, 128];

/// Queries per block, keys per tile and threads per block of `kernels/attention.cu` (its tile table
/// explains the layout); the dynamic shared memory is three f32 tiles of 64 rows × (d + 4).
const BQ: usize = 64;
const THREADS: u32 = 256;
fn shared_bytes(d: usize) -> u32 {
    (3 * 64 * (d + 4) * 4) as u32
}

/// The portable kernel behind [`attention`](super::attention), whatever the fast paths could do (same
/// contract: `q` [B, Nq, H, d], `k`, `v` [B, Nk, H, d], `out` like `q`, one dtype of f32, bf16, f16,
/// d ∈ [`HEAD_DIMS`], Nk ≥ 1, all contiguous; `bias` optional f32 [B or 1, H, Nq, Nk], contiguous).
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
    let bias_batch_stride = match bias {
        None => 0,
        Some(t) => {
            t.expect_dtype(OP, "bias", DType::F32)?;
            match *t.shape() {
                [bb, bh, bq, bk] if (bb == b || bb == 1) && bh == h && bq == nq && bk == nk => {}
                _ => return Err(shape_err(OP, "bias", format!("[{b} or 1, {h}, {nq}, {nk}]"), t)),
            }
            t.expect_contiguous(OP, "bias")?;
            all.push(("bias", t));
            if t.dim(0) == 1 {
                0
            } else {
                (h * nq * nk) as u64
            }
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
    let p = PortableAttn {
        q,
        k,
        v,
        bias,
        out,
        batch: b as u64,
        nq: nq as u64,
        nk: nk as u64,
        heads: h as u64,
        bias_batch_stride,
        scale,
    };
    let cfg = LaunchConfig { grid: (q_blocks as u32, h as u32, b as u32), block: (THREADS, 1, 1), shared_mem: smem };
    ATTENTION.launch(dev, HeadDim(q.dtype(), d), cfg, (p,))
}
