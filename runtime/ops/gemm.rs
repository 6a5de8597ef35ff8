//! Matrix products through cuBLASLt (f32 accumulation; bias and GELU-tanh fused as epilogues).

use crate::gpu::{GemmDesc, GemmEpilogue};
use crate::{DType, Error, Result, Tensor};

use super::range;

/// `out[.., n] = x[.., k] · w[n, k]ᵀ + bias[n]`, the PyTorch Linear. All contiguous, one dtype; the bias
/// is added in f32 before the single rounding (cuBLASLt's bias epilogue).
///
/// There is deliberately no fused GELU: cuBLASLt's GELU epilogue was measured on an H100 to be off by
/// up to 3 bf16 ulps near zero, while PyTorch (and so diffusers) rounds the Linear's output and then
/// applies an accurate GELU. Use `ops::gelu` after this, as the models do.
pub fn linear(x: &Tensor, w: &Tensor, bias: Option<&Tensor>, out: &Tensor) -> Result<()> {
    const OP: &str = "linear";
    let _r = range("linear");
    let dt = x.dtype();
    if w.rank() != 2 {
        return Err(Error::Shape { op: OP, name: "weight".into(), expected: "[out, in]".into(), got: w.shape().to_vec() });
    }
    let (n, k) = (w.dim(0), w.dim(1));
    if x.rank() == 0 || x.shape()[x.rank() - 1] != k {
        return Err(Error::Shape { op: OP, name: "input".into(), expected: format!("[.., {k}]"), got: x.shape().to_vec() });
    }
    let mut out_shape = x.shape().to_vec();
    *out_shape.last_mut().unwrap() = n;
    w.expect_dtype(OP, "weight", dt)?;
    out.expect(OP, "output", dt, &out_shape)?;
    if let Some(b) = bias {
        b.expect(OP, "bias", dt, &[n])?;
    }
    for (t, name) in [(x, "input"), (w, "weight"), (out, "output")] {
        t.expect_contiguous(OP, name)?;
    }
    if k == 0 {
        return Err(Error::Shape { op: OP, name: "weight".into(), expected: "[out, in] with in > 0".into(), got: w.shape().to_vec() });
    }
    let m = x.numel() / k as u64;
    if m == 0 || n == 0 {
        return Ok(());
    }
    let desc = linear_desc(m, n as u64, k as u64, 1, dt, bias.is_some());
    let dev = x.device();
    dev.blas()?.matmul(&desc, x, w, bias, out, dev.compute())
}

/// `G` Linears of one input in one batched GEMM: `out[g] = x · w[g]ᵀ + bias[g]` for `g < G`, with
/// `x` [.., K] (M rows), `w` [G, N, K], `bias` [G, N], `out` [G, M, N] (all contiguous, one dtype).
/// Each output is what [`linear`] computes for that weight (f32 accumulation, the bias added in f32
/// before the single rounding); the self-attention's q, k and v come from one launch this way.
pub fn linear_stack(x: &Tensor, w: &Tensor, bias: Option<&Tensor>, out: &Tensor) -> Result<()> {
    const OP: &str = "linear_stack";
    let _r = range(OP);
    let dt = x.dtype();
    let [g, n, k] = *w.shape() else {
        return Err(Error::Shape { op: OP, name: "weight".into(), expected: "[G, out, in]".into(), got: w.shape().to_vec() });
    };
    if k == 0 || x.rank() == 0 || x.shape()[x.rank() - 1] != k {
        return Err(Error::Shape { op: OP, name: "input".into(), expected: format!("[.., {k}] with {k} > 0"), got: x.shape().to_vec() });
    }
    let m = (x.numel() / k as u64) as usize;
    w.expect_dtype(OP, "weight", dt)?;
    out.expect(OP, "output", dt, &[g, m, n])?;
    if let Some(b) = bias {
        b.expect(OP, "bias", dt, &[g, n])?;
        b.expect_contiguous(OP, "bias")?;
    }
    for (t, name) in [(x, "input"), (w, "weight"), (out, "output")] {
        t.expect_contiguous(OP, name)?;
    }
    if g == 0 || m == 0 || n == 0 {
        return Ok(());
    }
    let desc = linear_desc(m as u64, n as u64, k as u64, g as u64, dt, bias.is_some());
    let dev = x.device();
    dev.blas()?.matmul(&desc, x, w, bias, out, dev.compute())
}

/// `batch` Linears of one [m, k] input: weights [batch, n, k], outputs [batch, m, n], biases
/// [batch, n] (the input is shared: batch stride 0).
fn linear_desc(m: u64, n: u64, k: u64, batch: u64, dtype: DType, bias: bool) -> GemmDesc {
    let stride = |v: u64| if batch > 1 { v } else { 0 };
    GemmDesc {
        m,
        n,
        k,
        batch,
        dtype,
        out_dtype: dtype,
        b_transposed: true,
        lda: k,
        ldb: k,
        ldd: n,
        stride_a: 0,
        stride_b: stride(n * k),
        stride_d: stride(m * n),
        stride_bias: stride(n),
        epilogue: if bias { GemmEpilogue::Bias } else { GemmEpilogue::None },
        alpha: 1.0,
        accumulate: false,
    }
}

/// Batched `out[i] = alpha · a[i] · op(b[i]) (+ out[i] if accumulate)`, row-major.
/// `a`: `[batch, m, k]` or `[m, k]`; `b`: `[batch, n, k]` / `[n, k]` when `b_transposed`, else
/// `[batch, k, n]` / `[k, n]` (a 2-D `b` is shared by every batch); `out`: `[batch, m, n]` / `[m, n]`.
pub fn gemm(a: &Tensor, b: &Tensor, b_transposed: bool, alpha: f32, accumulate: bool, out: &Tensor) -> Result<()> {
    const OP: &str = "gemm";
    let _r = range("gemm");
    let dt = a.dtype();
    for (t, name) in [(a, "a"), (b, "b"), (out, "out")] {
        t.expect_dtype(OP, name, dt)?;
        t.expect_contiguous(OP, name)?;
        if t.rank() != 2 && t.rank() != 3 {
            return Err(Error::Shape { op: OP, name: name.into(), expected: "rank 2 or 3".into(), got: t.shape().to_vec() });
        }
    }
    let batch = if a.rank() == 3 { a.dim(0) } else { 1 };
    let (m, k) = (a.dim(a.rank() - 2), a.dim(a.rank() - 1));
    let (bn, bk) = (b.dim(b.rank() - 2), b.dim(b.rank() - 1));
    let (n, kb) = if b_transposed { (bn, bk) } else { (bk, bn) };
    if kb != k || (b.rank() == 3 && b.dim(0) != batch) {
        return Err(Error::Shape { op: OP, name: "b".into(), expected: format!("inner dim {k}, batch {batch}"), got: b.shape().to_vec() });
    }
    let want: Vec<usize> = if a.rank() == 3 { vec![batch, m, n] } else { vec![m, n] };
    out.expect(OP, "out", dt, &want)?;
    if m == 0 || n == 0 || batch == 0 {
        return Ok(());
    }
    let desc = GemmDesc {
        m: m as u64,
        n: n as u64,
        k: k as u64,
        batch: batch as u64,
        dtype: dt,
        out_dtype: dt,
        b_transposed,
        lda: k as u64,
        ldb: if b_transposed { k as u64 } else { n as u64 },
        ldd: n as u64,
        stride_a: (m * k) as u64,
        stride_b: if b.rank() == 3 { (n * k) as u64 } else { 0 },
        stride_d: (m * n) as u64,
        stride_bias: 0,
        epilogue: GemmEpilogue::None,
        alpha,
        accumulate,
    };
    let dev = a.device();
    dev.blas()?.matmul(&desc, a, b, None, out, dev.compute())
}
