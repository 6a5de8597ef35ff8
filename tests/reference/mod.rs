//! CPU f64 references for the op tests and the error bounds they are checked against.
//!
//! Every device op evaluates in f32 and rounds once to the output dtype. For a true value `r` and the
//! device's f32 value `v = r + δ`, the output `round(v)` is within `eps(out)·|r| + δ·(1 + eps(out))`
//! of `r`, plus half the subnormal spacing where the output underflows (f16). Each test derives δ, the
//! f32 evaluation error, from the operation (a worst-case bound, counting f32 roundings): see `tol`.
#![allow(dead_code)]

use wanrt::DType;

pub mod conv3x3;

/// f32 unit roundoff.
pub const E32: f64 = f32::EPSILON as f64 / 2.0;

/// Half the smallest subnormal spacing of a dtype: the absolute rounding error floor.
pub fn underflow(dtype: DType) -> f64 {
    match dtype {
        DType::F32 => 2f64.powi(-150),
        DType::BF16 => 2f64.powi(-134),
        DType::F16 => 2f64.powi(-25),
    }
}

/// Bound on |out - reference| for an output rounded once to `dtype` from an f32 value off by `delta`.
pub fn tol(dtype: DType, reference: f64, delta: f64) -> f64 {
    let e = crate::common::eps(dtype);
    e * reference.abs() + delta * (1.0 + e) + underflow(dtype)
}

/// Length bound of the f32 rounding chain in a block-reduced sum of `d` terms: at most d/32 terms per
/// thread (blocks have at least 32 threads) then at most 10 tree levels (1024 threads).
pub fn sum_chain(d: usize) -> f64 {
    (d.div_ceil(32) + 10) as f64
}

/// Elementwise check against per-element bounds; NaN never passes. Reports the worst element.
pub fn assert_within(what: &str, got: &[f32], want: &[f64], bound: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    assert_eq!(bound.len(), want.len(), "{what}: bound length");
    let mut worst = (0usize, 0f64);
    for i in 0..got.len() {
        let err = (got[i] as f64 - want[i]).abs();
        let excess = if err.is_nan() { f64::INFINITY } else { err / bound[i].max(f64::MIN_POSITIVE) };
        if excess > worst.1 {
            worst = (i, excess);
        }
    }
    let (i, x) = worst;
    assert!(
        x <= 1.0,
        "{what}: element {i}: got {} want {} (|err| = {:.3e}, bound {:.3e}; {x:.2}x over)",
        got[i],
        want[i],
        (got[i] as f64 - want[i]).abs(),
        bound[i]
    );
}

/// Per-row LayerNorm statistics (mean, 1/sqrt(var + eps)) with biased variance.
pub fn ln_stats(row: &[f32], eps: f64) -> (f64, f64) {
    let d = row.len() as f64;
    let mean = row.iter().map(|&v| v as f64).sum::<f64>() / d;
    let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / d;
    (mean, 1.0 / (var + eps).sqrt())
}

/// f32 evaluation error bound of a LayerNorm-normalized value n = (x - mean)·rstd of a row of `d`
/// values with mean |x| `mean_abs`: the mean's summation error (scaled by rstd) plus the relative
/// error of the variance sum, the rsqrt (2 ulp) and the subtract/multiply roundings.
pub fn ln_delta(d: usize, mean_abs: f64, rstd: f64, n: f64) -> f64 {
    let l = sum_chain(d);
    E32 * ((l + 2.0) * mean_abs * rstd + (0.5 * l + 8.0) * n.abs())
}

/// LayerNorm over rows of `d`; returns (reference, per-element f32 error bound δ).
pub fn layer_norm(x: &[f32], d: usize, w: Option<&[f32]>, b: Option<&[f32]>, eps: f64) -> (Vec<f64>, Vec<f64>) {
    let mut out = Vec::with_capacity(x.len());
    let mut delta = Vec::with_capacity(x.len());
    for row in x.chunks(d) {
        let (mean, rstd) = ln_stats(row, eps);
        let mean_abs = row.iter().map(|&v| (v as f64).abs()).sum::<f64>() / d as f64;
        for (i, &v) in row.iter().enumerate() {
            let n = (v as f64 - mean) * rstd;
            let wi = w.map_or(1.0, |w| w[i] as f64);
            let bi = b.map_or(0.0, |b| b[i] as f64);
            let y = n * wi + bi;
            out.push(y);
            delta.push(ln_delta(d, mean_abs, rstd, n) * wi.abs() + 2.0 * E32 * ((n * wi).abs() + bi.abs()));
        }
    }
    (out, delta)
}

/// RMSNorm over rows of `d` (weight applied in full precision, as torch 2.11); returns (reference, δ):
/// the sum of squares (positive terms) and the rsqrt give a relative error, then two products.
pub fn rms_norm(x: &[f32], d: usize, w: Option<&[f32]>, eps: f64) -> (Vec<f64>, Vec<f64>) {
    let mut out = Vec::with_capacity(x.len());
    let mut delta = Vec::with_capacity(x.len());
    let rel = E32 * (0.5 * sum_chain(d) + 6.0);
    for row in x.chunks(d) {
        let ms = row.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / d as f64;
        let r = 1.0 / (ms + eps).sqrt();
        for (i, &v) in row.iter().enumerate() {
            let y = v as f64 * r * w.map_or(1.0, |w| w[i] as f64);
            out.push(y);
            delta.push(rel * y.abs());
        }
    }
    (out, delta)
}

/// Interleaved-pair rotation of `x` [.., N, H, dh] (rows of H·dh per token, `n` tokens per sample)
/// with f32 tables [N, dh]; returns (reference, δ) with δ = 2 roundings of each product and the sum.
pub fn rope(x: &[f32], n: usize, hd: usize, dh: usize, cos: &[f32], sin: &[f32]) -> (Vec<f64>, Vec<f64>) {
    let mut out = vec![0f64; x.len()];
    let mut delta = vec![0f64; x.len()];
    for e in (0..x.len()).step_by(2) {
        let tok = (e / hd) % n;
        let c = e % dh;
        let (co, si) = (cos[tok * dh + c] as f64, sin[tok * dh + c + 1] as f64);
        let (x0, x1) = (x[e] as f64, x[e + 1] as f64);
        out[e] = x0 * co - x1 * si;
        out[e + 1] = x0 * si + x1 * co;
        let mag = (x0 * co).abs() + (x1 * si).abs();
        let mag1 = (x0 * si).abs() + (x1 * co).abs();
        delta[e] = 2.0 * E32 * mag;
        delta[e + 1] = 2.0 * E32 * mag1;
    }
    (out, delta)
}

/// Softmax over rows of `l`; returns (reference, δ): exp's argument x - max is off by |x - max|·eps,
/// expf by 2 ulp, the sum (positive terms) by its chain length, the division by 1 rounding. Where
/// exp(x - max) is an f32 subnormal, expf's 2 ulp are absolute (2·2^-149); dividing by the sum (≥ 1)
/// does not grow it: an absolute term 2^-148.
pub fn softmax(x: &[f32], l: usize) -> (Vec<f64>, Vec<f64>) {
    let mut out = Vec::with_capacity(x.len());
    let mut delta = Vec::with_capacity(x.len());
    for row in x.chunks(l) {
        let m = row.iter().fold(f64::NEG_INFINITY, |a, &v| a.max(v as f64));
        let s: f64 = row.iter().map(|&v| (v as f64 - m).exp()).sum();
        for &v in row {
            let p = (v as f64 - m).exp() / s;
            out.push(p);
            delta.push(E32 * ((v as f64 - m).abs() + sum_chain(l) + 6.0) * p + 2f64.powi(-148));
        }
    }
    (out, delta)
}

pub fn gelu_tanh(x: f64) -> f64 {
    0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x)).tanh())
}

/// erf by its Maclaurin series (|x| < 3) or the continued fraction of erfc (|x| ≥ 3): within 1e-15,
/// far below the f32 errors under test (std has no erf).
pub fn erf(x: f64) -> f64 {
    let a = x.abs();
    let r = if a < 3.0 {
        // erf(x) = 2/sqrt(pi) · sum_n (-1)^n x^(2n+1) / (n! (2n+1))
        let (mut term, mut sum, mut n) = (a, a, 0.0f64);
        loop {
            n += 1.0;
            term *= -a * a / n;
            let t = term / (2.0 * n + 1.0);
            sum += t;
            if t.abs() <= 1e-17 * sum.abs() {
                break;
            }
        }
        2.0 / std::f64::consts::PI.sqrt() * sum
    } else {
        // erfc(a) = exp(-a²)/sqrt(pi) · 1/(a + 1/2/(a + 1/(a + 3/2/(a + 2/(a + ...))))), evaluated bottom-up.
        let mut f = a;
        for k in (1..60).rev() {
            f = a + (k as f64 / 2.0) / f;
        }
        1.0 - (-a * a).exp() / (std::f64::consts::PI.sqrt() * f)
    };
    r.copysign(x)
}

pub fn gelu_erf(x: f64) -> f64 {
    0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2))
}

pub fn silu(x: f64) -> f64 {
    x / (1.0 + (-x).exp())
}

/// Attention over [B, N, H, d] tensors for the query rows `rows` (indices into Nq) of every batch and
/// head, in f64. Returns the outputs of those rows, laid out [B][rows][H][d].
#[allow(clippy::too_many_arguments)]
pub fn attention(
    q: &[f32], k: &[f32], v: &[f32], bias: Option<(&[f32], bool)>, dims: (usize, usize, usize, usize, usize), scale: f64,
    rows: &[usize],
) -> Vec<f64> {
    let (b, nq, nk, h, d) = dims;
    let mut out = Vec::with_capacity(b * rows.len() * h * d);
    let mut s = vec![0f64; nk];
    for bi in 0..b {
        for &qi in rows {
            for hi in 0..h {
                let qr = &q[((bi * nq + qi) * h + hi) * d..][..d];
                let mut m = f64::NEG_INFINITY;
                for (j, sj) in s.iter_mut().enumerate() {
                    let kr = &k[((bi * nk + j) * h + hi) * d..][..d];
                    let mut t = qr.iter().zip(kr).map(|(&a, &c)| a as f64 * c as f64).sum::<f64>() * scale;
                    if let Some((bias, per_batch)) = bias {
                        let bb = if per_batch { bi } else { 0 };
                        t += bias[((bb * h + hi) * nq + qi) * nk + j] as f64;
                    }
                    *sj = t;
                    m = m.max(t);
                }
                let mut l = 0.0;
                for sj in s.iter_mut() {
                    *sj = (*sj - m).exp();
                    l += *sj;
                }
                for c in 0..d {
                    let o: f64 = s.iter().enumerate().map(|(j, &p)| p * v[((bi * nk + j) * h + hi) * d + c] as f64).sum();
                    out.push(o / l);
                }
            }
        }
    }
    out
}

/// A naive attention in `dtype` for the same rows: S = q·kᵀ accumulated in f32, scaled and biased in
/// f32, softmax in f32, P rounded to `dtype`, P·V accumulated in f32, output rounded to `dtype` — what
/// an unfused framework path does. Its error is the yardstick for the fused kernel's.
#[allow(clippy::too_many_arguments)]
pub fn attention_naive(
    q: &[f32], k: &[f32], v: &[f32], bias: Option<(&[f32], bool)>, dims: (usize, usize, usize, usize, usize), scale: f32,
    rows: &[usize], dtype: DType,
) -> Vec<f64> {
    let (b, nq, nk, h, d) = dims;
    let round = |x: f32| round_to(dtype, x);
    let mut out = Vec::with_capacity(b * rows.len() * h * d);
    let mut s = vec![0f32; nk];
    for bi in 0..b {
        for &qi in rows {
            for hi in 0..h {
                let qr = &q[((bi * nq + qi) * h + hi) * d..][..d];
                let mut m = f32::NEG_INFINITY;
                for (j, sj) in s.iter_mut().enumerate() {
                    let kr = &k[((bi * nk + j) * h + hi) * d..][..d];
                    let mut t = qr.iter().zip(kr).fold(0f32, |acc, (&a, &c)| acc + a * c) * scale;
                    if let Some((bias, per_batch)) = bias {
                        let bb = if per_batch { bi } else { 0 };
                        t += bias[((bb * h + hi) * nq + qi) * nk + j];
                    }
                    *sj = t;
                    m = m.max(t);
                }
                let mut l = 0f32;
                for sj in s.iter_mut() {
                    *sj = (*sj - m).exp();
                    l += *sj;
                }
                let p: Vec<f32> = s.iter().map(|&e| round(e / l)).collect();
                for c in 0..d {
                    let o = p.iter().enumerate().fold(0f32, |acc, (j, &pj)| acc + pj * v[((bi * nk + j) * h + hi) * d + c]);
                    out.push(round(o) as f64);
                }
            }
        }
    }
    out
}

/// Rounds one value through `dtype` (round to nearest even).
pub fn round_to(dtype: DType, x: f32) -> f32 {
    match dtype {
        DType::F32 => x,
        DType::BF16 => half::bf16::from_f32(x).to_f32(),
        DType::F16 => half::f16::from_f32(x).to_f32(),
    }
}

pub const DTYPES: [DType; 3] = [DType::F32, DType::BF16, DType::F16];

/// Uploads `values` rounded to `dtype`; returns the tensor and the rounded values (what the device sees).
pub fn upload(dev: &std::sync::Arc<wanrt::runtime::Device>, shape: &[usize], dtype: DType, values: &[f32]) -> (wanrt::runtime::Tensor, Vec<f32>) {
    let q = crate::common::quantize(values, dtype);
    (wanrt::runtime::Tensor::from_f32(dev, shape, dtype, &q).expect("upload"), q)
}

/// An output tensor filled with NaN, so an element the kernel skips fails the comparison.
pub fn poisoned(dev: &std::sync::Arc<wanrt::runtime::Device>, shape: &[usize], dtype: DType) -> wanrt::runtime::Tensor {
    let t = wanrt::runtime::Tensor::empty(dev, shape, dtype).expect("alloc");
    t.fill_nan().expect("poison");
    t
}

/// Per-element bounds `tol(dtype, want[i], delta[i])`.
pub fn bounds(dtype: DType, want: &[f64], delta: &[f64]) -> Vec<f64> {
    want.iter().zip(delta).map(|(&w, &d)| tol(dtype, w, d)).collect()
}

/// Worst-case forward error bound of the f32 attention kernel for the same rows (layout as
/// `attention`), per output element, from the f32 roundings it performs:
/// - score t_j = q·k_j·scale + bias_j: d fused multiply-adds (d·E32·scale·Σ|q k|), then the scale,
///   bias and log2(e) products and sum (≤ 4·E32·(|q·k·scale| + |bias|));
/// - exp2(t_j − m) in the log2 domain: the subtraction (E32·|t_j − m| in natural units) and exp2f's
///   2 ulp (4·E32); with ε = the largest of these over the row, p_j = e_j / l is off by ≤ 2ε relative;
/// - the sums: l (≤ 3 roundings per key tile of 64 plus 8), o = Σ e_j v_j (one fused multiply-add per
///   key, one rescale per tile) and the final 1/l and product: (nk + 4·tiles + 10)·E32 relative to
///   Σ p_j |v_j|.
///
/// So |Δo_c| ≤ Σ_j p_j |v_jc| · (2ε + (nk + 4·tiles + 10)·E32).
#[allow(clippy::too_many_arguments)]
pub fn attention_f32_bound(
    q: &[f32], k: &[f32], v: &[f32], bias: Option<(&[f32], bool)>, dims: (usize, usize, usize, usize, usize), scale: f64,
    rows: &[usize],
) -> Vec<f64> {
    let (b, nq, nk, h, d) = dims;
    let tiles = nk.div_ceil(64) as f64;
    let chain = (nk as f64 + 4.0 * tiles + 10.0) * E32;
    let mut out = Vec::with_capacity(b * rows.len() * h * d);
    let (mut t, mut mag) = (vec![0f64; nk], vec![0f64; nk]);
    for bi in 0..b {
        for &qi in rows {
            for hi in 0..h {
                let qr = &q[((bi * nq + qi) * h + hi) * d..][..d];
                for j in 0..nk {
                    let kr = &k[((bi * nk + j) * h + hi) * d..][..d];
                    let s: f64 = qr.iter().zip(kr).map(|(&a, &c)| a as f64 * c as f64).sum::<f64>() * scale;
                    let abs: f64 = qr.iter().zip(kr).map(|(&a, &c)| (a as f64 * c as f64).abs()).sum::<f64>() * scale;
                    let bj = bias.map_or(0.0, |(bias, per_batch)| {
                        let bb = if per_batch { bi } else { 0 };
                        bias[((bb * h + hi) * nq + qi) * nk + j] as f64
                    });
                    t[j] = s + bj;
                    mag[j] = d as f64 * E32 * abs + 4.0 * E32 * (s.abs() + bj.abs());
                }
                let m = t.iter().fold(f64::NEG_INFINITY, |a, &x| a.max(x));
                let eps_row = (0..nk).map(|j| mag[j] + E32 * (t[j] - m).abs() + 4.0 * E32).fold(0f64, f64::max);
                let l: f64 = t.iter().map(|&x| (x - m).exp()).sum();
                let p: Vec<f64> = t.iter().map(|&x| (x - m).exp() / l).collect();
                for c in 0..d {
                    let pv: f64 = (0..nk).map(|j| p[j] * (v[((bi * nk + j) * h + hi) * d + c] as f64).abs()).sum();
                    out.push(pv * (2.0 * eps_row + chain));
                }
            }
        }
    }
    out
}
