//! Host-side float32 scalar math of the schedulers, mirroring the 0-dim fp32 torch ops of the reference.
//!
//! Arithmetic (`+ - * /`) is IEEE float32 and matches torch exactly. The transcendental functions
//! cannot match every torch build: CPU torch takes `log` from MKL VML and `expm1` from SLEEF, CUDA
//! torch from its libdevice, and each differs from the others in about 8% of inputs by one ulp
//! (measured on 20,000 random inputs). Here they are correctly rounded (evaluated in f64, rounded
//! once), which is within one ulp of every one of them.

/// ln(x), correctly rounded to f32 (ln 0 = −∞).
pub(crate) fn ln(x: f32) -> f32 {
    (x as f64).ln() as f32
}

/// eˣ − 1, correctly rounded to f32 (expm1(−∞) = −1).
pub(crate) fn expm1(x: f32) -> f32 {
    (x as f64).exp_m1() as f32
}

/// λ(σ) = ln α − ln σ with α = 1 − σ, as `torch.log(1 - s) - torch.log(s)` on a 0-dim fp32 tensor.
pub(crate) fn lambda(sigma: f32) -> f32 {
    let alpha = 1.0 - sigma;
    ln(alpha) - ln(sigma)
}

/// Solves [[a, b], [c, d]]·x = y in float32 the way LAPACK `sgesv` does for a 2×2 system (what CPU
/// `torch.linalg.solve` calls): partial pivoting on the first column (the first row wins a tie), the
/// multiplier and both back-substitution divisions as products with a reciprocal, no fused
/// multiply-add. Matched bit for bit against torch 2.11 (MKL) on 20,000 random UniPC-shaped systems.
pub(crate) fn solve2(m: [[f32; 2]; 2], y: [f32; 2]) -> [f32; 2] {
    let (m, y) = if m[1][0].abs() > m[0][0].abs() {
        ([m[1], m[0]], [y[1], y[0]])
    } else {
        (m, y)
    };
    let inv_u11 = 1.0 / m[0][0];
    let l21 = m[1][0] * inv_u11;
    let u22 = m[1][1] - l21 * m[0][1];
    let z2 = y[1] - l21 * y[0];
    let x2 = z2 * (1.0 / u22);
    let x1 = (y[0] - x2 * m[0][1]) * inv_u11;
    [x1, x2]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solve2_solves_both_pivot_cases() {
        // No swap (|r| < 1) and swap (|r| > 1): residuals at float32 rounding.
        for r in [-0.6f32, -1.7] {
            let (b1, b2) = (0.3f32, -0.8f32);
            let [x1, x2] = solve2([[1.0, 1.0], [r, 1.0]], [b1, b2]);
            assert!(((x1 + x2) - b1).abs() < 1e-6, "row 1 residual for r={r}");
            assert!(
                ((r * x1 + x2) - b2).abs() < 1e-6,
                "row 2 residual for r={r}"
            );
        }
    }

    #[test]
    fn final_step_limits() {
        // σ = 0 at the end of the schedule: λ = +∞ and expm1(−∞) = −1, no NaN.
        assert_eq!(lambda(0.0), f32::INFINITY);
        assert_eq!(expm1(f32::NEG_INFINITY), -1.0);
    }
}
