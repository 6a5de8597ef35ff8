//! T5-style relative position bias (transformers modeling_umt5.py, `UMT5Attention`): the bucketing
//! on the host, the per-layer bias with the padding mask on the device.

use crate::gpu::kernels::RELATIVE_BIAS;
use crate::gpu::LaunchConfig;
use crate::{DType, Error, Result, Tensor};

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
/// (exact small integers) indexed by `j − i + nq − 1`: the `bucket` input of [`relative_bias`]
/// (which clamps each to the table's rows).
pub fn bucket_table(nq: usize, nk: usize, num_buckets: usize, max_distance: usize) -> Vec<f32> {
    (0..nq + nk - 1).map(|k| relative_position_bucket(k as i64 - (nq as i64 - 1), num_buckets, max_distance) as f32).collect()
}

/// `out[b, h, i, j] = table[bucket[j − i + nq − 1], h] + mask[b, j]`: the attention bias of one
/// layer, f32 [B, H, Nq, Nk] for the attention kernel. `table` [num_buckets, H] (any dtype),
/// `bucket` f32 [Nq + Nk − 1] from [`bucket_table`], `mask` f32 [B, Nk] (0 for real tokens, a large
/// negative number for padding). All contiguous.
pub fn relative_bias(table: &Tensor, bucket: &Tensor, mask: &Tensor, out: &Tensor) -> Result<()> {
    const OP: &str = "relative_bias";
    let _r = range(OP);
    let [b, h, nq, nk] = *out.shape() else {
        return Err(Error::Shape { op: OP, name: "out".into(), expected: "[B, H, Nq, Nk]".into(), got: out.shape().to_vec() });
    };
    if nq == 0 || nk == 0 {
        return Err(Error::Shape { op: OP, name: "out".into(), expected: "Nq, Nk > 0".into(), got: out.shape().to_vec() });
    }
    out.expect(OP, "out", DType::F32, &[b, h, nq, nk])?;
    if table.rank() != 2 || table.dim(1) != h || table.dim(0) == 0 {
        return Err(Error::Shape { op: OP, name: "table".into(), expected: format!("[buckets, {h}]"), got: table.shape().to_vec() });
    }
    bucket.expect(OP, "bucket", DType::F32, &[nq + nk - 1])?;
    mask.expect(OP, "mask", DType::F32, &[b, nk])?;
    for (t, n) in [(table, "table"), (bucket, "bucket"), (mask, "mask"), (out, "out")] {
        t.expect_contiguous(OP, n)?;
    }
    // The kernel clamps each bucket to the table's rows, so a wrong bucket value cannot read past it.
    let dev = out.device();
    let args = (table, bucket, mask, out, b as u64, h as u64, nq as u64, nk as u64, table.dim(0) as u64);
    RELATIVE_BIAS.launch(dev, table.dtype(), LaunchConfig::elementwise(out.numel(), 256), args)
}
