//! Attention unfused: two batched cuBLASLt GEMMs (tensor cores) around a softmax kernel the caller
//! picks, with the scores and the p·v product optionally kept in f32 and the normalization deferred
//! ([`attention_normalize`]). For short sequences with a bias no fused kernel here takes (UMT5's relative
//! position bias at 512 tokens: `ops::relative_bias_softmax`); memory is O(H·Nq·Nk) per sample.

use crate::gpu::kernels::SOFTMAX_DIVIDE;
use crate::gpu::{GemmDesc, GemmEpilogue, LaunchConfig};
use crate::ops::checks::{same_device, shape_err};
use crate::ops::range;
use crate::{DType, Result, Tensor};

fn dims(op: &'static str, name: &str, t: &Tensor) -> Result<[usize; 4]> {
    match *t.shape() {
        [b, n, h, d] => {
            t.expect_contiguous(op, name)?;
            Ok([b, n, h, d])
        }
        _ => Err(shape_err(op, name, "[B, N, H, head_dim]", t)),
    }
}

/// `scores[b, h] = scale · q[b, :, h] · k[b, :, h]ᵀ` with f32 accumulation, rounded once to `scores`'
/// dtype (`q`'s, or f32 to keep them unrounded). `q` [B, Nq, H, d], `k` [B, Nk, H, d] in one dtype,
/// `scores` [B, H, Nq, Nk], all contiguous.
pub fn attention_scores(q: &Tensor, k: &Tensor, scale: f32, scores: &Tensor) -> Result<()> {
    const OP: &str = "attention_scores";
    let _r = range(OP);
    let [b, nq, h, d] = dims(OP, "q", q)?;
    let [kb, nk, kh, kd] = dims(OP, "k", k)?;
    if (kb, kh, kd) != (b, h, d) {
        return Err(shape_err(OP, "k", format!("[{b}, Nk, {h}, {d}]"), k));
    }
    k.expect_dtype(OP, "k", q.dtype())?;
    scores.expect(OP, "scores", out_dtype(q, scores), &[b, h, nq, nk])?;
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
            out_dtype: scores.dtype(),
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

/// `out[b, :, h] = p[b, h] · v[b, :, h]` with f32 accumulation, rounded once to `out`'s dtype (`p`'s,
/// or f32). `p` [B, H, Nq, Nk] and `v` [B, Nk, H, d] in one dtype, `out` [B, Nq, H, d], all contiguous.
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
    out.expect(OP, "out", out_dtype(p, out), &[b, nq, h, d])?;
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
            out_dtype: out.dtype(),
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

/// `out = o / rowsum` per (sample, query, head), rounded once: the deferred softmax normalization after
/// [`attention_apply`] of unnormalized probabilities. `o` f32 [B, Nq, H, d], `rowsum` f32 [B, H, Nq],
/// `out` [B, Nq, H, d] in any dtype, all contiguous.
pub fn attention_normalize(o: &Tensor, rowsum: &Tensor, out: &Tensor) -> Result<()> {
    const OP: &str = "attention_normalize";
    let _r = range(OP);
    let [b, nq, h, d] = dims(OP, "o", o)?;
    o.expect_dtype(OP, "o", DType::F32)?;
    rowsum.expect(OP, "rowsum", DType::F32, &[b, h, nq])?;
    rowsum.expect_contiguous(OP, "rowsum")?;
    dims(OP, "out", out)?;
    out.expect(OP, "out", out.dtype(), o.shape())?;
    same_device(OP, &[("o", o), ("rowsum", rowsum), ("out", out)])?;
    let n = o.numel();
    if n == 0 {
        return Ok(());
    }
    let args = (o, rowsum, out, nq as u64, h as u64, d as u64, n);
    SOFTMAX_DIVIDE.launch(o.device(), out.dtype(), LaunchConfig::elementwise(n, 256), args)
}

/// `out`'s dtype when it is `src`'s or f32 (a product kept unrounded), else `src`'s (so the check
/// names the expected one).
fn out_dtype(src: &Tensor, out: &Tensor) -> DType {
    if out.dtype() == DType::F32 {
        DType::F32
    } else {
        src.dtype()
    }
}

fn gemm(desc: &GemmDesc, a: &Tensor, b: &Tensor, d: &Tensor) -> Result<()> {
    if desc.m == 0 || desc.n == 0 || desc.batch == 0 {
        return Ok(());
    }
    let dev = a.device();
    dev.blas()?.matmul(desc, a, b, None, d, dev.compute())
}
