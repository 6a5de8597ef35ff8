//! Attention as two batched GEMMs around a row softmax, the way transformers' eager attention computes
//! it (`torch.matmul(q, kᵀ)`, softmax, `torch.matmul(p, v)`): for models whose reference rounds the
//! scores and the probabilities to the model dtype (UMT5: modeling_umt5.py, `UMT5Attention.forward`),
//! so that our output carries the same roundings, and on tensor cores through cuBLASLt. Memory is
//! O(H·Nq·Nk) per sample: meant for short sequences (UMT5's 512 tokens), not the DiT's.

use crate::gpu::{GemmDesc, GemmEpilogue};
use crate::ops::checks::{same_device, shape_err};
use crate::ops::range;
use crate::{Result, Tensor};

fn dims(op: &'static str, name: &str, t: &Tensor) -> Result<[usize; 4]> {
    match *t.shape() {
        [b, n, h, d] => {
            t.expect_contiguous(op, name)?;
            Ok([b, n, h, d])
        }
        _ => Err(shape_err(op, name, "[B, N, H, head_dim]", t)),
    }
}

/// `scores[b, h] = scale · q[b, :, h] · k[b, :, h]ᵀ`, rounded once to the dtype (f32 accumulation).
/// `q` [B, Nq, H, d], `k` [B, Nk, H, d], `scores` [B, H, Nq, Nk], one dtype, all contiguous.
pub fn attention_scores(q: &Tensor, k: &Tensor, scale: f32, scores: &Tensor) -> Result<()> {
    const OP: &str = "attention_scores";
    let _r = range(OP);
    let [b, nq, h, d] = dims(OP, "q", q)?;
    let [kb, nk, kh, kd] = dims(OP, "k", k)?;
    if (kb, kh, kd) != (b, h, d) {
        return Err(shape_err(OP, "k", format!("[{b}, Nk, {h}, {d}]"), k));
    }
    scores.expect(OP, "scores", q.dtype(), &[b, h, nq, nk])?;
    scores.expect_contiguous(OP, "scores")?;
    same_device(OP, &[("q", q), ("k", k), ("scores", scores)])?;
    let row = (h * d) as u64;
    for bi in 0..b {
        // One GEMM per sample, batched over heads: head h of q starts h·d elements into each row.
        let desc = GemmDesc {
            m: nq as u64,
            n: nk as u64,
            k: d as u64,
            batch: h as u64,
            dtype: q.dtype(),
            b_transposed: true,
            lda: row,
            ldb: row,
            ldd: nk as u64,
            stride_a: d as u64,
            stride_b: d as u64,
            stride_d: (nq * nk) as u64,
            stride_bias: 0,
            epilogue: GemmEpilogue::None,
            alpha: scale,
            accumulate: false,
        };
        gemm(&desc, &q.narrow(0, bi, 1)?, &k.narrow(0, bi, 1)?, &scores.narrow(0, bi, 1)?)?;
    }
    Ok(())
}

/// `out[b, :, h] = p[b, h] · v[b, :, h]`, rounded once to the dtype (f32 accumulation). `p` [B, H, Nq,
/// Nk], `v` [B, Nk, H, d], `out` [B, Nq, H, d], one dtype, all contiguous.
pub fn attention_apply(p: &Tensor, v: &Tensor, out: &Tensor) -> Result<()> {
    const OP: &str = "attention_apply";
    let _r = range(OP);
    let [b, nk, h, d] = dims(OP, "v", v)?;
    let nq = match *p.shape() {
        [pb, ph, nq, pk] if (pb, ph, pk) == (b, h, nk) => nq,
        _ => return Err(shape_err(OP, "p", format!("[{b}, {h}, Nq, {nk}]"), p)),
    };
    p.expect_contiguous(OP, "p")?;
    v.expect_dtype(OP, "v", p.dtype())?;
    out.expect(OP, "out", p.dtype(), &[b, nq, h, d])?;
    out.expect_contiguous(OP, "out")?;
    same_device(OP, &[("p", p), ("v", v), ("out", out)])?;
    let row = (h * d) as u64;
    for bi in 0..b {
        let desc = GemmDesc {
            m: nq as u64,
            n: d as u64,
            k: nk as u64,
            batch: h as u64,
            dtype: p.dtype(),
            b_transposed: false,
            lda: nk as u64,
            ldb: row,
            ldd: row,
            stride_a: (nq * nk) as u64,
            stride_b: d as u64,
            stride_d: d as u64,
            stride_bias: 0,
            epilogue: GemmEpilogue::None,
            alpha: 1.0,
            accumulate: false,
        };
        gemm(&desc, &p.narrow(0, bi, 1)?, &v.narrow(0, bi, 1)?, &out.narrow(0, bi, 1)?)?;
    }
    Ok(())
}

fn gemm(desc: &GemmDesc, a: &Tensor, b: &Tensor, d: &Tensor) -> Result<()> {
    if desc.m == 0 || desc.n == 0 || desc.batch == 0 {
        return Ok(());
    }
    let dev = a.device();
    dev.blas()?.matmul(desc, a, b, None, d, dev.compute())
}
