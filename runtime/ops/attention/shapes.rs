//! The q/k/v/out checks both tensor-core attention paths share: dtype, rank, head dim, matching
//! shapes, at least one key, and the grid limits (i32 token coordinates, batch·heads on grid.y).

use crate::{DType, Error, Result, Tensor};

/// Problem sizes that passed [`check_qkv`].
pub(crate) struct QkvShape {
    pub batch: usize,
    pub nq: usize,
    pub nk: usize,
    pub heads: usize,
    pub head_dim: usize,
    pub dtype: DType,
}

pub(crate) fn shape_err(op: &'static str, name: &str, expected: String, t: &Tensor) -> Error {
    Error::Shape { op, name: name.to_string(), expected, got: t.shape().to_vec() }
}

/// q (B, Nq, H, d), k and v (B, Nk, H, d), out like q; bf16 or f16; d one of `head_dims`.
pub(crate) fn check_qkv(op: &'static str, q: &Tensor, k: &Tensor, v: &Tensor, out: &Tensor, head_dims: &[usize]) -> Result<QkvShape> {
    let dtype = q.dtype();
    if !matches!(dtype, DType::BF16 | DType::F16) {
        return Err(Error::DType { op, name: "q".into(), expected: "bf16 or f16".into(), got: dtype });
    }
    for (t, name) in [(k, "k"), (v, "v"), (out, "out")] {
        t.expect_dtype(op, name, dtype)?;
    }
    for (t, name) in [(q, "q"), (k, "k"), (v, "v"), (out, "out")] {
        if t.rank() != 4 {
            return Err(shape_err(op, name, "(batch, tokens, heads, head_dim)".into(), t));
        }
    }
    let (batch, nq, heads, head_dim) = (q.dim(0), q.dim(1), q.dim(2), q.dim(3));
    if !head_dims.contains(&head_dim) {
        return Err(shape_err(op, "q", format!("head_dim in {head_dims:?}"), q));
    }
    let nk = k.dim(1);
    let kv_shape = [batch, nk, heads, head_dim];
    if k.shape() != kv_shape {
        return Err(shape_err(op, "k", format!("(batch {batch}, keys, heads {heads}, head_dim {head_dim})"), k));
    }
    if v.shape() != kv_shape {
        return Err(shape_err(op, "v", format!("{kv_shape:?} (the shape of k)"), v));
    }
    if out.shape() != q.shape() {
        return Err(shape_err(op, "out", format!("{:?} (the shape of q)", q.shape()), out));
    }
    if nk == 0 && batch * nq * heads > 0 {
        return Err(shape_err(op, "k", "at least one key (softmax over no keys is undefined)".into(), k));
    }
    // Token coordinates are i32 (rounded up to a tile); batch·heads is grid.y.
    const MAX_TOKENS: usize = i32::MAX as usize - 1024;
    if nq > MAX_TOKENS || nk > MAX_TOKENS || batch * heads > 65_535 {
        return Err(shape_err(op, "q", format!("at most {MAX_TOKENS} tokens and batch·heads at most 65535"), q));
    }
    Ok(QkvShape { batch, nq, nk, heads, head_dim, dtype })
}

/// Unit stride over head_dim and 16-byte aligned start and batch/token/head strides (16-byte
/// cp.async loads and vector stores).
pub(crate) fn check_rows_aligned(op: &'static str, t: &Tensor, name: &str) -> Result<()> {
    let esize = t.dtype().size();
    let st = t.strides();
    let aligned = (0..3).all(|i| t.dim(i) <= 1 || (st[i] * esize) % 16 == 0);
    if st[3] != 1 || !aligned || t.ptr() % 16 != 0 {
        return Err(Error::Shape {
            op,
            name: name.to_string(),
            expected: format!(
                "unit stride over head_dim, 16-byte aligned start and batch/token/head strides (strides {st:?}, byte offset {})",
                t.byte_offset()
            ),
            got: t.shape().to_vec(),
        });
    }
    Ok(())
}
