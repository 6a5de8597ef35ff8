//! Classifier-free guidance as the Wan pipelines combine the two predictions (diffusers
//! pipeline_wan.py and pipeline_wan_i2v.py, `__call__`: `noise_pred = noise_uncond + guidance_scale *
//! (noise_pred - noise_uncond)`), in the predictions' dtype: a subtraction, a scalar product and an
//! addition, each computed in f32 and rounded once to that dtype, as torch evaluates bf16 tensors.

use half::{bf16, f16};
use wanrt_runtime::ops;
use wanrt_runtime::{DType, Error, Result, Tensor};

/// `out = uncond + g·(cond − uncond)` on the device, rounding as torch does. `scratch` has the shape
/// and dtype of the inputs; `out` may be `scratch`.
pub fn combine(cond: &Tensor, uncond: &Tensor, g: f32, scratch: &Tensor, out: &Tensor) -> Result<()> {
    // Negation is exact in every float dtype, so add(cond, −uncond) rounds once, as torch's sub does.
    ops::scale(uncond, -1.0, scratch)?;
    ops::add(cond, scratch, scratch)?;
    ops::scale(scratch, g, scratch)?;
    ops::add(uncond, scratch, out)
}

/// Rounds an f32 to `dtype` and back (round to nearest even, as torch's casts).
pub fn round_to(x: f32, dtype: DType) -> f32 {
    match dtype {
        DType::F32 => x,
        DType::BF16 => bf16::from_f32(x).to_f32(),
        DType::F16 => f16::from_f32(x).to_f32(),
    }
}

/// The same combination on the host, for values already representable in `dtype`: the reference the
/// device path is tested against, and what the fixtures' `noise_pred.{i}` hold.
pub fn combine_host(cond: &[f32], uncond: &[f32], g: f32, dtype: DType) -> Result<Vec<f32>> {
    if cond.len() != uncond.len() {
        return Err(Error::Shape { op: "cfg combine", name: "uncond".into(), expected: format!("{} elements (as cond)", cond.len()), got: vec![uncond.len()] });
    }
    Ok(cond
        .iter()
        .zip(uncond)
        .map(|(&c, &u)| {
            let d = round_to(c - u, dtype);
            let s = round_to(g * d, dtype);
            round_to(u + s, dtype)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_after_each_op() {
        // 1 + 2^-8 is not a bf16; the difference then rounds before the product.
        let (c, u) = (1.0f32, 0.0f32);
        assert_eq!(combine_host(&[c], &[u], 5.0, DType::BF16).unwrap(), [5.0]);
        let c = bf16::from_f32(1.0078125).to_f32(); // 1 + 2^-7, a bf16
        let got = combine_host(&[c], &[0.5], 3.0, DType::BF16).unwrap()[0];
        // (c − 0.5) = 0.5078125 exact; ×3 = 1.5234375 → bf16 1.5234375; + 0.5 = 2.0234375 → bf16 2.015625 or 2.03125.
        assert_eq!(got, bf16::from_f32(bf16::from_f32(1.5234375).to_f32() + 0.5).to_f32());
        assert_eq!(combine_host(&[2.0], &[1.0], 1.0, DType::F32).unwrap(), [2.0]);
        assert!(combine_host(&[1.0], &[], 1.0, DType::F32).is_err());
    }
}
