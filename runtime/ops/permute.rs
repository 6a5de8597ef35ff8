//! Block transposes as strided device-to-device copies (no kernel): the layout changes around the
//! all-to-all of sequence-parallel attention.

use crate::{Error, Result, Tensor};

use super::range;

/// `out[b, a, ..] = input[a, b, ..]`: `input` [A, B, rest…] to `out` [B, A, rest…], both contiguous and
/// of one dtype, the trailing dims copied as one block. B copies of A rows each (`cuMemcpy2DAsync`),
/// queued on the compute stream.
pub fn transpose_blocks(input: &Tensor, out: &Tensor) -> Result<()> {
    const OP: &str = "transpose_blocks";
    let _r = range(OP);
    let s = input.shape();
    if s.len() < 2 {
        return Err(Error::Shape { op: OP, name: "input".into(), expected: "[A, B, …] (rank ≥ 2)".into(), got: s.to_vec() });
    }
    let (a, b) = (s[0], s[1]);
    let mut want = s.to_vec();
    want.swap(0, 1);
    out.expect(OP, "out", input.dtype(), &want)?;
    input.expect_contiguous(OP, "input")?;
    out.expect_contiguous(OP, "out")?;
    input.check_lease()?;
    out.check_lease()?;
    if std::sync::Arc::ptr_eq(input.buffer(), out.buffer())
        && input.byte_offset() < out.byte_offset() + out.byte_len()
        && out.byte_offset() < input.byte_offset() + input.byte_len()
    {
        return Err(Error::invalid(format!("{OP}: out {out:?} overlaps input {input:?}")));
    }
    if a == 0 || b == 0 {
        return Ok(());
    }
    let block = input.byte_len() / (a * b) as u64;
    let dev = input.device();
    for j in 0..b as u64 {
        // Column j of input (rows a, pitch b·block) becomes row-block j of out (a rows, packed).
        dev.d2d_2d_async(
            out.buffer(),
            out.byte_offset() + j * a as u64 * block,
            block,
            input.buffer(),
            input.byte_offset() + j * block,
            b as u64 * block,
            block,
            a as u64,
            dev.compute(),
        )?;
    }
    Ok(())
}
