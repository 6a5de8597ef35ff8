//! Argument checks and launch shapes shared by the op launchers: every failure names the op and the
//! argument, so a caller deep inside a model sees which tensor was wrong.

use std::sync::Arc;

use crate::gpu::LaunchConfig;
use crate::{DType, Error, Result, Tensor};

/// Grid cap of row kernels and elementwise kernels (they stride over the rest).
const MAX_BLOCKS: u64 = 65_535 * 16;

pub(crate) fn shape_err(op: &'static str, name: &str, expected: impl Into<String>, t: &Tensor) -> Error {
    Error::Shape { op, name: name.to_string(), expected: expected.into(), got: t.shape().to_vec() }
}

/// `t` has exactly `shape` (any dtype).
pub(crate) fn expect_shape(op: &'static str, name: &str, t: &Tensor, shape: &[usize]) -> Result<()> {
    if t.shape() != shape {
        return Err(shape_err(op, name, format!("{shape:?}"), t));
    }
    Ok(())
}

/// Every tensor lives on the device of the first one.
pub(crate) fn same_device(op: &'static str, tensors: &[(&str, &Tensor)]) -> Result<()> {
    let Some((_, first)) = tensors.first() else { return Ok(()) };
    for (name, t) in &tensors[1..] {
        if !Arc::ptr_eq(t.device(), first.device()) {
            return Err(Error::invalid(format!(
                "{op}: {name} is on device {}, the other arguments on device {}",
                t.device().ordinal(),
                first.device().ordinal()
            )));
        }
    }
    Ok(())
}

/// Contiguity of several tensors at once.
pub(crate) fn contiguous(op: &'static str, tensors: &[(&str, &Tensor)]) -> Result<()> {
    tensors.iter().try_for_each(|(name, t)| t.expect_contiguous(op, name))
}

/// (rows, row length) of a contiguous tensor normalized or reduced over its last axis.
pub(crate) fn rows_of(op: &'static str, name: &str, x: &Tensor) -> Result<(u64, u64)> {
    let Some(&d) = x.shape().last() else {
        return Err(shape_err(op, name, "at least one dimension", x));
    };
    if d == 0 {
        return Ok((0, 0));
    }
    Ok((x.numel() / d as u64, d as u64))
}

/// An optional per-channel parameter vector of length `d` (norm weight or bias): contiguous, dtype f32
/// or the activations' dtype. Returns whether it is f32 (false when absent).
pub(crate) fn param_vector(op: &'static str, name: &str, p: Option<&Tensor>, d: usize, x_dtype: DType) -> Result<bool> {
    let Some(p) = p else { return Ok(false) };
    expect_shape(op, name, p, &[d])?;
    if p.dtype() != DType::F32 && p.dtype() != x_dtype {
        return Err(Error::DType { op, name: name.to_string(), expected: format!("f32 or {x_dtype}"), got: p.dtype() });
    }
    p.expect_contiguous(op, name)?;
    Ok(p.dtype() == DType::F32)
}

/// A per-sample f32 vector for `batch` samples of width `d`: shape [b, d] or [b, 1, d] with b = batch or
/// 1 (broadcast), unit stride along d, any sample stride (a `narrow` of a [B, k, D] modulation tensor
/// along k is accepted as is). Returns the sample stride in elements (0 when broadcast).
pub(crate) fn sample_vectors(op: &'static str, name: &str, t: &Tensor, batch: usize, d: usize) -> Result<u64> {
    t.expect_dtype(op, name, DType::F32)?;
    let want = format!("[{batch} or 1, {d}] or [{batch} or 1, 1, {d}] with unit stride along {d}");
    let s = t.shape();
    let ok_shape = match s {
        [b, dd] => (*b == batch || *b == 1) && *dd == d,
        [b, one, dd] => (*b == batch || *b == 1) && *one == 1 && *dd == d,
        _ => false,
    };
    if !ok_shape || (d > 1 && t.strides()[t.rank() - 1] != 1) {
        return Err(shape_err(op, name, want, t));
    }
    Ok(if s[0] == 1 { 0 } else { t.strides()[0] as u64 })
}

/// One block of `threads` per row (grid-striding past the cap).
pub(crate) fn row_blocks(rows: u64, threads: u32) -> LaunchConfig {
    LaunchConfig { grid: (rows.clamp(1, MAX_BLOCKS) as u32, 1, 1), block: (threads, 1, 1), shared_mem: 0 }
}

/// One block per row (grid-striding past the cap), 32..256 threads, about 4 elements per thread.
pub(crate) fn row_config(rows: u64, d: u64) -> LaunchConfig {
    row_blocks(rows, d.div_ceil(4).next_multiple_of(32).clamp(32, 256) as u32)
}

/// Whether the packed (`*_v8`) form of a kernel applies: packing is on (`WANRT_PACKED`), the packed
/// axis `axis` (the row length, or the element count of an elementwise op) is a multiple of 8 and every
/// tensor's first element is 16-byte aligned, so each pack is one or two aligned 16-byte accesses.
pub(crate) fn packs_of_8(axis: u64, tensors: &[Option<&Tensor>]) -> bool {
    crate::settings::settings().packed && axis % 8 == 0 && tensors.iter().flatten().all(|t| t.ptr() % 16 == 0)
}

/// The widest row the packed row kernels take: one pack of 8 per thread, at most 1024 threads.
pub(crate) const PACKED_ROW_MAX: u64 = 8 * 1024;

/// Whether a row kernel over rows of `d` takes its packed form (see [`packs_of_8`], [`PACKED_ROW_MAX`]).
pub(crate) fn packed_rows(d: u64, tensors: &[Option<&Tensor>]) -> bool {
    d <= PACKED_ROW_MAX && packs_of_8(d, tensors)
}

/// Launch shape of the packed row kernels: one block per row (grid-striding past the cap), one thread
/// per pack of 8 channels, rounded up to whole warps.
pub(crate) fn row_config_v8(rows: u64, d: u64) -> LaunchConfig {
    row_blocks(rows, (d / 8).next_multiple_of(32).clamp(32, 1024) as u32)
}
