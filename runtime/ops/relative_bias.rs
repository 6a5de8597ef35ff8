//! T5-style relative position bias (transformers modeling_umt5.py, `UMT5Attention`): the bucketing
//! on the host; the per-layer bias with the padding mask, fused into the softmax, on the device.

use crate::gpu::kernels::RELATIVE_BIAS_SOFTMAX;
use crate::{DType, Error, Result, Tensor};

use super::checks::{row_config, same_device};
use super::range;

/// `_relative_position_bucket` for the bidirectional encoder: the bucket of relative position
/// `rel = key − query`. Half the buckets per sign; distances below `num_buckets/4` get their own
/// bucket, larger ones share logarithmically spaced buckets up to `max_distance`. The logarithm is
/// taken in f32 and truncated toward zero, as torch computes it.
pub fn relative_position_bucket(rel: i64, num_buckets: usize, max_distance: usize) -> usize {
    let half = (num_buckets / 2) as i64;
    let mut bucket = if rel > 0 { half } else { 0 };
    let n = rel.unsigned_abs() as i64;
    let max_exact = half / 2;
    if n < max_exact {
        bucket += n;
    } else {
        // torch: log(n.float() / max_exact) / math.log(max_distance / max_exact) * (half - max_exact),
        // each op in f32 (the Python float scalars are applied to an f32 tensor).
        let ratio = (n as f32 / max_exact as f32).ln();
        let scaled = ratio / ((max_distance as f64 / max_exact as f64).ln() as f32) * (half - max_exact) as f32;
        let large = (max_exact + scaled as i64).min(half - 1);
        bucket += large;
    }
    bucket as usize
}

/// The buckets of every relative position `j − i` for `nq` queries and `nk` keys, as f32 values
/// (exact small integers) indexed by `j − i + nq − 1`: the `bucket` input of
/// [`relative_bias_softmax`] (which clamps each to the table's rows).
pub fn bucket_table(nq: usize, nk: usize, num_buckets: usize, max_distance: usize) -> Vec<f32> {
    (0..nq + nk - 1).map(|k| relative_position_bucket(k as i64 - (nq as i64 - 1), num_buckets, max_distance) as f32).collect()
}

/// UMT5's unnormalized attention probabilities in f32: per row, `t = scores + round(table[bucket[j − i +
/// nq − 1], h] + mask[b, j])` (the bias tensor is in the model dtype, as transformers builds it),
/// `probs = exp(t − max t)` and `rowsum = Σ probs`. [`attention_apply`](super::attention::attention_apply) then takes `probs · v` in f32
/// and [`attention_normalize`](super::attention::eager::attention_normalize) divides by `rowsum`.
/// `scores` f32 [B, H, Nq, Nk] (from [`attention_scores`](super::attention::attention_scores));
/// `table` [num_buckets, H] in the model dtype; `probs` f32 [B, H, Nq, Nk]; `bucket` f32 [Nq + Nk − 1]
/// from [`bucket_table`] (each clamped to the table's rows); `mask` f32 [B, Nk] (0 for real tokens,
/// the dtype's most negative finite value for padding); `rowsum` f32 [B, H, Nq]. All contiguous.
pub fn relative_bias_softmax(scores: &Tensor, table: &Tensor, bucket: &Tensor, mask: &Tensor, probs: &Tensor, rowsum: &Tensor) -> Result<()> {
    const OP: &str = "relative_bias_softmax";
    let _r = range(OP);
    let [b, h, nq, nk] = *scores.shape() else {
        return Err(Error::Shape { op: OP, name: "scores".into(), expected: "[B, H, Nq, Nk]".into(), got: scores.shape().to_vec() });
    };
    if nq == 0 || nk == 0 {
        return Err(Error::Shape { op: OP, name: "scores".into(), expected: "Nq, Nk > 0".into(), got: scores.shape().to_vec() });
    }
    scores.expect_dtype(OP, "scores", DType::F32)?;
    let dt = table.dtype();
    if table.rank() != 2 || table.dim(1) != h || table.dim(0) == 0 {
        return Err(Error::Shape { op: OP, name: "table".into(), expected: format!("[buckets, {h}]"), got: table.shape().to_vec() });
    }
    probs.expect(OP, "probs", DType::F32, &[b, h, nq, nk])?;
    rowsum.expect(OP, "rowsum", DType::F32, &[b, h, nq])?;
    bucket.expect(OP, "bucket", DType::F32, &[nq + nk - 1])?;
    mask.expect(OP, "mask", DType::F32, &[b, nk])?;
    let all = [("scores", scores), ("table", table), ("bucket", bucket), ("mask", mask), ("probs", probs), ("rowsum", rowsum)];
    for (n, t) in all {
        t.expect_contiguous(OP, n)?;
    }
    same_device(OP, &all)?;
    let rows = (b * h * nq) as u64;
    if rows == 0 {
        return Ok(());
    }
    let args = (scores, table, bucket, mask, probs, rowsum, h as u64, nq as u64, nk as u64, table.dim(0) as u64, rows);
    RELATIVE_BIAS_SOFTMAX.launch(scores.device(), dt, row_config(rows, nk as u64), args)
}
