//! Latent update plans: one scheduler step as a fixed sequence of elementwise float32 operations on
//! host-computed float32 scalars, with the points where the reference rounds to bf16.
//!
//! The reference (torch) evaluates each tensor op in fp32 and rounds after every op. The plans spell out
//! that op sequence; `cpu.rs` and `kernels/scheduler.cu` execute it op for op with no fused
//! multiply-add, so both give the reference's bits. The structs are `#[repr(C)]` with 4-byte fields
//! only: the CUDA kernels take them by value with the same layout.

use bytemuck::{Pod, Zeroable};

/// One UniPC step (diffusers `scheduling_unipc_multistep.py` `step`: `convert_model_output`,
/// `multistep_uni_c_bh_update`, `multistep_uni_p_bh_update`), per element, with v the model output
/// widened to f32, `x` the sample, `m2`/`m1` the converted outputs m_{k−2}/m_{k−1}, `last` the last
/// corrected sample:
///
/// ```text
/// convert:    p  = sigma·v;  if v_bf16: p = bf16(p)          m = x − p
/// corrector:  (corrector_order 0: xc = x)
///             xb = (c_x·last) − (c_m·m1);  dt = m − m1
///             order 1: res = 0 + (c_rho1·dt)
///             order 2: d = (m2 − m1)/c_r;  res = (c_rho0·d) + (c_rho1·dt)
///             xc = xb − (c_res·res)
/// predictor:  xb = (p_x·xc) − (p_m·m)
///             order 1: xn = xb − p_zero
///             order 2: d = (m1 − m)/p_r;  xn = xb − (p_res·(0.5·d))
/// outputs:    x ← xn,  m2's buffer ← m (it becomes m_{k−1} of the next step),  last ← xc
/// ```
///
/// Every `·`, `+`, `−`, `/` is one f32 operation rounded to nearest even, in the order written.
/// Coefficients an order does not use are 0.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
pub struct UniPcUpdate {
    /// 1 when v is bf16: torch computes σ·v in v's dtype, so the product is rounded to bf16.
    pub v_bf16: u32,
    /// 0 on the first step (no corrector), else the previous step's order, 1 or 2.
    pub corrector_order: u32,
    /// 1 or 2: warm-up makes the first step first order, `lower_order_final` the last one.
    pub predictor_order: u32,
    /// σ_k as it multiplies v (already rounded to bf16 where the reference rounds it, see `ReferenceDevice`).
    pub sigma: f32,
    /// Corrector σ_t/σ_s (σ_t = σ_k, σ_s = σ_{k−1}).
    pub c_x: f32,
    /// Corrector α_t·φ₁ with φ₁ = expm1(−h).
    pub c_m: f32,
    /// Corrector α_t·B_h with B_h = expm1(−h) (bh2).
    pub c_res: f32,
    /// Corrector r = (λ_{k−2} − λ_{k−1})/h (order 2).
    pub c_r: f32,
    /// Corrector ρ₀ (order 2, from the 2×2 solve).
    pub c_rho0: f32,
    /// Corrector ρ₁: 0.5 at order 1, from the solve at order 2.
    pub c_rho1: f32,
    /// Predictor σ_t/σ_s (σ_t = σ_{k+1}, σ_s = σ_k).
    pub p_x: f32,
    /// Predictor α_t·φ₁.
    pub p_m: f32,
    /// Predictor α_t·B_h (order 2).
    pub p_res: f32,
    /// Predictor r = (λ_{k−1} − λ_k)/h (order 2).
    pub p_r: f32,
    /// Predictor order 1: the 0-dim tensor α_t·B_h·0 that torch subtracts (a signed zero).
    pub p_zero: f32,
}

/// One FlowMatchEuler step (diffusers `scheduling_flow_match_euler_discrete.py` `step`), per element:
///
/// ```text
/// p = dt·v;  if v_bf16: p = bf16(p)
/// x ← x + p; if v_bf16: x ← bf16(x)     (torch casts the result to v's dtype)
/// ```
///
/// With a bf16 model output the latents stay in an f32 buffer but hold bf16 values from the first
/// step on, as the reference's latents become bf16.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
pub struct EulerUpdate {
    /// 1 when v is bf16.
    pub v_bf16: u32,
    /// σ_{k+1} − σ_k, rounded to bf16 when v is bf16 (torch casts the 0-dim fp32 dt to v's dtype).
    pub dt: f32,
}

/// f32 → bf16 bits, round to nearest even, NaN → 0x7FC0: torch's `c10::BFloat16` conversion.
pub fn f32_to_bf16_bits(x: f32) -> u16 {
    if x.is_nan() {
        return 0x7FC0;
    }
    let u = x.to_bits();
    let bias = ((u >> 16) & 1) + 0x7FFF;
    (u.wrapping_add(bias) >> 16) as u16
}

/// bf16 bits → f32 (exact).
pub fn bf16_bits_to_f32(b: u16) -> f32 {
    f32::from_bits((b as u32) << 16)
}

/// Rounds an f32 to the nearest bf16 value, kept as f32.
pub fn bf16_round(x: f32) -> f32 {
    bf16_bits_to_f32(f32_to_bf16_bits(x))
}

/// Per-element outputs of a UniPC step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct UniPcOut {
    pub x: f32,
    pub m: f32,
    pub last: f32,
}

/// The UniPC op sequence for one element; the CUDA kernel `unipc_step_*` is its line-by-line copy.
/// `m2`, `m1` and `last` are only read when the orders need them.
#[inline]
pub(crate) fn unipc_element(
    p: &UniPcUpdate,
    v: f32,
    x: f32,
    m2: f32,
    m1: f32,
    last: f32,
) -> UniPcOut {
    let mut prod = p.sigma * v;
    if p.v_bf16 != 0 {
        prod = bf16_round(prod);
    }
    let m = x - prod;
    let xc = if p.corrector_order == 0 {
        x
    } else {
        let xb = (p.c_x * last) - (p.c_m * m1);
        let dt = m - m1;
        let res = if p.corrector_order == 1 {
            0.0 + (p.c_rho1 * dt)
        } else {
            let d = (m2 - m1) / p.c_r;
            (p.c_rho0 * d) + (p.c_rho1 * dt)
        };
        xb - (p.c_res * res)
    };
    let xb = (p.p_x * xc) - (p.p_m * m);
    let xn = if p.predictor_order == 1 {
        xb - p.p_zero
    } else {
        let d = (m1 - m) / p.p_r;
        xb - (p.p_res * (0.5 * d))
    };
    UniPcOut { x: xn, m, last: xc }
}

/// The Euler op sequence for one element; the CUDA kernel `euler_step_*` is its line-by-line copy.
#[inline]
pub(crate) fn euler_element(p: &EulerUpdate, v: f32, x: f32) -> f32 {
    if p.v_bf16 != 0 {
        bf16_round(x + bf16_round(p.dt * v))
    } else {
        x + p.dt * v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bf16_rounding_is_nearest_even() {
        assert_eq!(f32_to_bf16_bits(1.0), 0x3F80);
        // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties go to the even mantissa (1.0).
        assert_eq!(f32_to_bf16_bits(1.0 + 2f32.powi(-8)), 0x3F80);
        // 1 + 3·2^-8 is halfway between 1 + 2^-7 (odd) and 1 + 2^-6: rounds up to even.
        assert_eq!(f32_to_bf16_bits(1.0 + 3.0 * 2f32.powi(-8)), 0x3F82);
        assert_eq!(f32_to_bf16_bits(f32::NAN), 0x7FC0);
        assert_eq!(f32_to_bf16_bits(f32::INFINITY), 0x7F80);
        assert_eq!(bf16_round(-0.0).to_bits(), (-0.0f32).to_bits());
    }

    #[test]
    fn kernel_structs_have_the_cuda_layout() {
        // kernels/scheduler.cu declares the same fields in the same order, all 4 bytes.
        assert_eq!(std::mem::size_of::<UniPcUpdate>(), 15 * 4);
        assert_eq!(std::mem::size_of::<EulerUpdate>(), 2 * 4);
    }
}
