//! Embedding lookup (row gather) with token ids given on the host.

use crate::gpu::kernels::{Pair, EMBEDDING};
use crate::gpu::LaunchConfig;
use crate::{DType, Error, Result, Tensor};

use super::checks::{contiguous, shape_err};
use super::range;

/// `out[r, :] = table[ids[r], :]`, converted to `out`'s dtype.
///
/// `table`: [V, D]; `ids`: host slice of n ids; `out`: [.., D] with n rows (e.g. [n, D] or [B, L, D]
/// with B·L = n); both contiguous. Ids are checked on the host: one outside [0, V) is an error naming
/// its position (the kernel would also write a zero row for it rather than read out of bounds).
/// The ids are uploaded (8 bytes each) into a temporary device buffer on the compute stream, freed in
/// stream order after the gather; the slice may be reused as soon as this returns.
pub fn embedding(table: &Tensor, ids: &[i64], out: &Tensor) -> Result<()> {
    const OP: &str = "embedding";
    let _r = range(OP);
    let [v, d] = *table.shape() else {
        return Err(shape_err(OP, "table", "[V, D]", table));
    };
    let lead: usize = out.shape()[..out.rank().saturating_sub(1)].iter().product();
    if out.shape().last() != Some(&d) || lead != ids.len() {
        return Err(shape_err(OP, "out", format!("[.., {d}] with {} rows (one per id)", ids.len()), out));
    }
    contiguous(OP, &[("table", table), ("out", out)])?;
    if let Some((pos, id)) = ids.iter().enumerate().find(|(_, &id)| id < 0 || id as u64 >= v as u64) {
        return Err(Error::invalid(format!("{OP}: ids[{pos}] = {id} is outside the table's {v} rows")));
    }
    if !std::sync::Arc::ptr_eq(table.device(), out.device()) {
        return Err(Error::invalid(format!("{OP}: table and out are on different devices")));
    }
    let n = ids.len() as u64;
    if n == 0 || d == 0 {
        return Ok(());
    }
    let dev = table.device();
    // Tensors hold f32/bf16/f16 only: the i64 ids travel as the bytes of an f32 tensor twice as long.
    let ids_dev = Tensor::from_bytes(dev, &[ids.len() * 2], DType::F32, bytemuck::cast_slice(ids))?;
    let cfg = LaunchConfig::elementwise(n * d as u64, 256);
    EMBEDDING.launch(dev, Pair(table.dtype(), out.dtype()), cfg, (table, &ids_dev, out, n, d as u64, v as u64))
}
