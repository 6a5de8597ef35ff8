//! Shared by the attention kernel tests: problem cases, seeded quantized inputs, an f64 reference and
//! a naive same-dtype emulation (the error bound is 2× the naive computation's error), row sampling.
#![allow(dead_code)]

use rand::rngs::StdRng;
use rand::Rng;
use wanrt::DType;

use crate::common;

/// One attention problem: q (b, nq, h, d), k and v (b, nk, h, d).
#[derive(Clone, Copy, Debug)]
pub struct Case {
    pub b: usize,
    pub h: usize,
    pub nq: usize,
    pub nk: usize,
    pub d: usize,
    /// q is drawn with this standard deviation (8 gives logits of standard deviation about 8).
    pub q_std: f32,
}

/// Host copies of the quantized inputs, (b, n, h, d) contiguous.
pub struct Inputs {
    pub q: Vec<f32>,
    pub k: Vec<f32>,
    pub v: Vec<f32>,
}

pub fn round_to(x: f32, dtype: DType) -> f32 {
    match dtype {
        DType::BF16 => half::bf16::from_f32(x).to_f32(),
        DType::F16 => half::f16::from_f32(x).to_f32(),
        DType::F32 => x,
    }
}

/// Reference (f64) and naive same-dtype (see the module comment) outputs of query row `i` of head
/// (bi, hi): two vectors of d values.
pub fn row_outputs(c: &Case, x: &Inputs, scale: f32, dtype: DType, bi: usize, hi: usize, i: usize) -> (Vec<f64>, Vec<f32>) {
    let d = c.d;
    let qrow = &x.q[((bi * c.nq + i) * c.h + hi) * d..][..d];
    let krow = |j: usize| &x.k[((bi * c.nk + j) * c.h + hi) * d..][..d];
    let vrow = |j: usize| &x.v[((bi * c.nk + j) * c.h + hi) * d..][..d];
    let (mut s64, mut s32) = (vec![0f64; c.nk], vec![0f32; c.nk]);
    for j in 0..c.nk {
        let kr = krow(j);
        let (mut a64, mut a32) = (0f64, 0f32);
        for t in 0..d {
            a64 += qrow[t] as f64 * kr[t] as f64;
            a32 += qrow[t] * kr[t];
        }
        s64[j] = a64 * scale as f64;
        s32[j] = a32 * scale;
    }
    let m64 = s64.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let m32 = s32.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let e64: Vec<f64> = s64.iter().map(|s| (s - m64).exp()).collect();
    let e32: Vec<f32> = s32.iter().map(|s| (s - m32).exp()).collect();
    let (sum64, sum32): (f64, f32) = (e64.iter().sum(), e32.iter().sum());
    let (mut o64, mut o32) = (vec![0f64; d], vec![0f32; d]);
    for j in 0..c.nk {
        let (p64, p32) = (e64[j] / sum64, round_to(e32[j] / sum32, dtype));
        let vr = vrow(j);
        for t in 0..d {
            o64[t] += p64 * vr[t] as f64;
            o32[t] += p32 * vr[t];
        }
    }
    (o64, o32.into_iter().map(|o| round_to(o, dtype)).collect())
}

/// Query rows checked: all of them for short sequences, else both ends and a random sample.
pub fn checked_rows(nq: usize, rng: &mut StdRng) -> Vec<usize> {
    if nq <= 600 {
        return (0..nq).collect();
    }
    let mut rows: Vec<usize> = (0..64).chain(nq - 64..nq).collect();
    rows.extend((0..128).map(|_| rng.random_range(64..nq - 64)));
    rows
}

/// Reference and naive outputs at `rows` of every (batch, head), computed on all cores. Indexed
/// [((bi·h + hi)·rows.len() + r)·d + t].
pub fn reference(c: &Case, x: &Inputs, scale: f32, dtype: DType, rows: &[usize]) -> (Vec<f64>, Vec<f32>) {
    let tasks: Vec<(usize, usize, usize)> =
        (0..c.b).flat_map(|bi| (0..c.h).flat_map(move |hi| rows.iter().map(move |&i| (bi, hi, i)))).collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = tasks.len().div_ceil(threads).max(1);
    let parts: Vec<(Vec<f64>, Vec<f32>)> = std::thread::scope(|s| {
        let handles: Vec<_> = tasks
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    let (mut r, mut n) = (Vec::new(), Vec::new());
                    for &(bi, hi, i) in part {
                        let (a, b) = row_outputs(c, x, scale, dtype, bi, hi, i);
                        r.extend(a);
                        n.extend(b);
                    }
                    (r, n)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("reference thread")).collect()
    });
    parts.into_iter().fold((Vec::new(), Vec::new()), |(mut r, mut n), (a, b)| {
        r.extend(a);
        n.extend(b);
        (r, n)
    })
}

/// The GPU output at the checked rows, in `reference`'s order. `out` is (b, nq, h, d) contiguous.
pub fn gather(c: &Case, out: &[f32], rows: &[usize]) -> Vec<f32> {
    let mut g = Vec::with_capacity(c.b * c.h * rows.len() * c.d);
    for bi in 0..c.b {
        for hi in 0..c.h {
            for &i in rows {
                g.extend_from_slice(&out[((bi * c.nq + i) * c.h + hi) * c.d..][..c.d]);
            }
        }
    }
    g
}

pub fn max_err<T: Copy + Into<f64>>(got: &[T], want: &[f64]) -> f64 {
    got.iter().zip(want).map(|(&g, &w)| (g.into() - w).abs()).fold(0.0, |m, e| if e.is_nan() { f64::INFINITY } else { m.max(e) })
}

pub fn inputs(c: &Case, dtype: DType, rng: &mut StdRng) -> Inputs {
    let nq = c.b * c.nq * c.h * c.d;
    let nk = c.b * c.nk * c.h * c.d;
    Inputs {
        q: common::quantize(&common::randn(rng, nq, c.q_std), dtype),
        k: common::quantize(&common::randn(rng, nk, 1.0), dtype),
        v: common::quantize(&common::randn(rng, nk, 1.0), dtype),
    }
}
