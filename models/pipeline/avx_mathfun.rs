//! Scalar transcriptions of the two kernels of PyTorch's `aten/src/ATen/native/cpu/avx_mathfun.h`
//! (Cephes polynomials, via Julien Pommier's sse_mathfun and Giovanni Garberoglio's AVX port) that
//! `normal_fill_16_AVX2` calls: `log256_ps` and `sincos256_ps`, one lane at a time.
//!
//! Bit-exactness depends on the order of roundings, so each multiply-add is written as the compiler
//! builds torch: GCC contracts `a * b + c` into one FMA (`-ffp-contract=fast`, the default, with
//! `-mfma` in the AVX2/AVX-512 builds) wherever the product's only use is that addition; where two
//! products meet in one addition, the first in source order is fused. Checked bit for bit against
//! torch's saved noise (tests/noise.rs).

// The header's literals are kept digit for digit (C rounds them double → float; so does `as f32`).
#![allow(clippy::excessive_precision, clippy::approx_constant)]

/// `log256_ps` for one positive, normal lane (the inputs here lie in (0, 1]).
pub fn log_ps(x0: f32) -> f32 {
    // Cephes logf coefficients, as C turns the header's double literals into floats.
    const P: [f64; 9] = [
        7.0376836292E-2,
        -1.1514610310E-1,
        1.1676998740E-1,
        -1.2420140846E-1,
        1.4249322787E-1,
        -1.6668057665E-1,
        2.0000714765E-1,
        -2.4999993993E-1,
        3.3333331174E-1,
    ];
    const Q1: f32 = -2.12194440e-4f64 as f32;
    const Q2: f32 = 0.693359375;
    const SQRTHF: f32 = 0.707106781186547524f64 as f32;
    if x0.is_nan() || x0 <= 0.0 {
        return f32::NAN;
    }
    // Cut off denormals, split into exponent and a mantissa in [0.5, 1).
    let bits = x0.max(f32::MIN_POSITIVE).to_bits();
    let mut e = ((bits >> 23) as i32 - 0x7f) as f32 + 1.0;
    let m = f32::from_bits((bits & !0x7f80_0000) | 0.5f32.to_bits());
    // if m < sqrt(1/2): e -= 1, x = m + m - 1; else x = m - 1.
    let x = if m < SQRTHF {
        e -= 1.0;
        (m - 1.0) + m
    } else {
        m - 1.0
    };
    let z = x * x;
    let mut y = P[0] as f32;
    for &p in &P[1..] {
        y = y.mul_add(x, p as f32);
    }
    y *= x;
    y = y.mul_add(z, e * Q1);
    y = (-z).mul_add(0.5, y);
    e.mul_add(Q2, x + y)
}

/// `sincos256_ps` for one lane: (sin x, cos x).
pub fn sincos_ps(x0: f32) -> (f32, f32) {
    const FOPI: f32 = 1.27323954473516f64 as f32; // 4 / pi
    const DP: [f64; 3] = [-0.78515625, -2.4187564849853515625e-4, -3.77489497744594108e-8];
    const SINCOF: [f64; 3] = [-1.9515295891E-4, 8.3321608736E-3, -1.6666654611E-1];
    const COSCOF: [f64; 3] = [2.443315711809948E-005, -1.388731625493765E-003, 4.166664568298827E-002];
    let f = |v: f64| v as f32;
    let mut x = x0.abs();
    // j = (int(|x| * 4/pi) + 1) & ~1: the octant, rounded to even.
    let j = ((x * FOPI) as i32 + 1) & !1;
    let y = j as f32;
    let sin_negative = x0.is_sign_negative() ^ (j & 4 != 0);
    let cos_negative = (!(j - 2)) & 4 != 0;
    let sin_poly = j & 2 == 0;
    // Extended-precision reduction: x - y*pi/4 in three parts.
    for dp in DP {
        x = y.mul_add(f(dp), x);
    }
    let z = x * x;
    let mut yc = f(COSCOF[0]).mul_add(z, f(COSCOF[1])).mul_add(z, f(COSCOF[2])) * z;
    yc = yc.mul_add(z, -(z * 0.5)) + 1.0;
    let ys = (f(SINCOF[0]).mul_add(z, f(SINCOF[1])).mul_add(z, f(SINCOF[2])) * z).mul_add(x, x);
    let (s, c) = if sin_poly { (ys, yc) } else { (yc, ys) };
    (if sin_negative { -s } else { s }, if cos_negative { -c } else { c })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_to_libm() {
        for i in 1..=1000 {
            let u = i as f32 / 1000.0;
            assert!((log_ps(u) - u.ln()).abs() <= 2e-7 * u.ln().abs().max(1.0), "log {u}");
            let t = u * std::f32::consts::TAU;
            let (s, c) = sincos_ps(t);
            assert!((s - t.sin()).abs() < 3e-7 && (c - t.cos()).abs() < 3e-7, "sincos {t}: {s} {c}");
        }
        assert!(log_ps(0.0).is_nan() && log_ps(-1.0).is_nan());
        assert_eq!(log_ps(1.0), 0.0);
    }
}
