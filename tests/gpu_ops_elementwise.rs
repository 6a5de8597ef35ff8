//! add / mul / scale, GELU (tanh, erf), SiLU and the embedding gather against f64 references for every
//! (input, output) dtype pair and odd lengths, outputs poisoned; 64-bit indexing over 2^31 elements;
//! error paths.

mod common;
mod reference;

use reference as rf;
use wanrt::runtime::{ops, Tensor};
use wanrt::{DType, Error};

/// Odd lengths (the scalar kernels) and multiples of 8 (the packed kernels, one pack and many).
const LENGTHS: [usize; 6] = [1, 7, 1000, 65_537, 8, 65_544];

#[test]
fn add_mul_scale_match_reference() {
    let Some(dev) = common::gpu("add_mul_scale_match_reference") else { return };
    let mut rng = common::rng("add_mul_scale_match_reference");
    for n in LENGTHS {
        for xt in rf::DTYPES {
            let (a, aq) = rf::upload(&dev, &[n], xt, &common::randn(&mut rng, n, 3.0));
            let (b, bq) = rf::upload(&dev, &[n], xt, &common::randn(&mut rng, n, 3.0));
            let s = 0.37f32;
            let sum: Vec<f64> = aq.iter().zip(&bq).map(|(&x, &y)| x as f64 + y as f64).collect();
            let prod: Vec<f64> = aq.iter().zip(&bq).map(|(&x, &y)| x as f64 * y as f64).collect();
            let scaled: Vec<f64> = aq.iter().map(|&x| x as f64 * s as f64).collect();
            for ot in rf::DTYPES {
                // One f32 operation (one rounding, δ = E32·|r|) then the output rounding.
                let check = |what: &str, out: &Tensor, want: &[f64]| {
                    let delta: Vec<f64> = want.iter().map(|w| rf::E32 * w.abs()).collect();
                    rf::assert_within(&format!("{what} n={n} {xt}->{ot}"), &out.to_f32_vec().unwrap(), want, &rf::bounds(ot, want, &delta));
                };
                let out = rf::poisoned(&dev, &[n], ot);
                ops::add(&a, &b, &out).unwrap();
                check("add", &out, &sum);
                let out = rf::poisoned(&dev, &[n], ot);
                ops::mul(&a, &b, &out).unwrap();
                check("mul", &out, &prod);
                let out = rf::poisoned(&dev, &[n], ot);
                ops::scale(&a, s, &out).unwrap();
                check("scale", &out, &scaled);
            }
        }
    }
}

#[test]
fn bf16_add_rounds_once_in_place() {
    // bf16 + bf16 into bf16, in place over the first operand: one rounding of the exact sum.
    let Some(dev) = common::gpu("bf16_add_rounds_once_in_place") else { return };
    let mut rng = common::rng("bf16_add_rounds_once_in_place");
    let n = 4099;
    let (a, aq) = rf::upload(&dev, &[n], DType::BF16, &common::randn(&mut rng, n, 1.0));
    let (b, bq) = rf::upload(&dev, &[n], DType::BF16, &common::randn(&mut rng, n, 1e-2));
    ops::add(&a, &b, &a).unwrap();
    // The sum of two bf16 values is exact in f32 here (exponents within 24 bits): round(a + b) exactly.
    let want: Vec<f64> = aq.iter().zip(&bq).map(|(&x, &y)| rf::round_to(DType::BF16, x + y) as f64).collect();
    common::assert_close("bf16 add", &a.to_f32_vec().unwrap(), &want, 0.0, 0.0);
}

/// A contiguous view of `n` elements at element offset `off` of a fresh buffer holding `values` there:
/// offset 0 is 16-byte aligned (the packed kernels), offset 1 is not (the scalar ones).
fn view_at(dev: &std::sync::Arc<wanrt::runtime::Device>, dtype: DType, values: &[f32], off: usize) -> Tensor {
    let mut all = vec![0.0f32; values.len() + 1];
    all[off..off + values.len()].copy_from_slice(values);
    let t = Tensor::from_f32(dev, &[values.len() + 1], dtype, &all).unwrap();
    t.narrow(0, off, values.len()).unwrap()
}

#[test]
fn packed_and_scalar_forms_agree_bit_for_bit() {
    // The same inputs through an aligned view (packed kernels) and a misaligned one (scalar kernels):
    // the per-element math is the same, so the bits must be.
    let Some(dev) = common::gpu("packed_and_scalar_forms_agree_bit_for_bit") else { return };
    let mut rng = common::rng("packed_and_scalar_forms_agree_bit_for_bit");
    let n = 8 * 4099;
    let a = activation_inputs(&mut rng, n);
    let b = common::randn(&mut rng, n, 3.0);
    for xt in rf::DTYPES {
        for ot in rf::DTYPES {
            let run = |off: usize| -> Vec<(&str, Vec<f32>)> {
                let (x, y) = (view_at(&dev, xt, &a, off), view_at(&dev, xt, &b, off));
                let out = view_at(&dev, ot, &vec![f32::NAN; n], off);
                let mut got = Vec::new();
                let mut keep = |name, r: wanrt::Result<()>| {
                    r.unwrap();
                    got.push((name, out.to_f32_vec().unwrap()));
                };
                keep("gelu_tanh", ops::gelu(&x, &out, ops::GeluApprox::Tanh));
                keep("gelu_erf", ops::gelu(&x, &out, ops::GeluApprox::Erf));
                keep("gelu_new", ops::gelu_new(&x, &out));
                keep("silu", ops::silu(&x, &out));
                keep("add", ops::add(&x, &y, &out));
                keep("mul", ops::mul(&x, &y, &out));
                got
            };
            for ((name, packed), (_, scalar)) in run(0).into_iter().zip(run(1)) {
                let same = packed.iter().zip(&scalar).all(|(p, s)| p.to_bits() == s.to_bits());
                assert!(same, "{name} {xt}->{ot}: the packed and scalar kernels differ");
                assert!(packed.iter().all(|v| !v.is_nan()), "{name} {xt}->{ot}: an element was not written");
            }
        }
    }
}

/// Activation inputs: normals of several scales plus the extremes and zero.
fn activation_inputs(rng: &mut rand::rngs::StdRng, n: usize) -> Vec<f32> {
    let mut x = common::randn(rng, n, 3.0);
    let special = [0.0, -0.0, 1e-30, -1e-30, 10.0, -10.0, 20.0, -20.0, 88.0, -88.0, 1e-3, -1e-3];
    for (i, v) in special.iter().enumerate().take(n) {
        x[i] = *v;
    }
    x
}

#[test]
fn activations_match_reference() {
    let Some(dev) = common::gpu("activations_match_reference") else { return };
    let mut rng = common::rng("activations_match_reference");
    type Launch = fn(&Tensor, &Tensor) -> wanrt::Result<()>;
    type Case = (&'static str, fn(f64) -> f64, Launch);
    let cases: [Case; 3] = [
        ("gelu_tanh", rf::gelu_tanh, |x, o| ops::gelu(x, o, ops::GeluApprox::Tanh)),
        ("gelu_erf", rf::gelu_erf, |x, o| ops::gelu(x, o, ops::GeluApprox::Erf)),
        ("silu", rf::silu, ops::silu),
    ];
    for n in LENGTHS {
        for xt in rf::DTYPES {
            let (x, xq) = rf::upload(&dev, &[n], xt, &activation_inputs(&mut rng, n));
            for (name, f, launch) in cases {
                let want: Vec<f64> = xq.iter().map(|&v| f(v as f64)).collect();
                // f32 evaluation error: GELU's 0.5·x·(1 + t) with t = tanh/erf of a scaled argument,
                // t off by at most ~7 roundings (argument, constants, tanhf/erff's 2 ulp), so
                // ≤ 4·E32·|x| absolute, plus 3 roundings of the result. SiLU: expf (2 ulp), 1 + e, the
                // division: ≤ 6·E32·|r|; the |x| term covers it too.
                let delta: Vec<f64> = xq.iter().zip(&want).map(|(&v, &w)| rf::E32 * (4.0 * (v as f64).abs() + 6.0 * w.abs())).collect();
                for ot in rf::DTYPES {
                    let out = rf::poisoned(&dev, &[n], ot);
                    launch(&x, &out).unwrap();
                    let what = format!("{name} n={n} {xt}->{ot}");
                    rf::assert_within(&what, &out.to_f32_vec().unwrap(), &want, &rf::bounds(ot, &want, &delta));
                }
            }
        }
    }
}

#[test]
fn reference_erf_is_accurate() {
    // The reference's own erf against known values (CPU only).
    for (x, want) in [(0.5, 0.5204998778130465), (1.0, 0.8427007929497149), (2.0, 0.9953222650189527), (3.5, 0.9999992569016276), (-1.5, -0.9661051464753108), (6.0, 1.0), (0.0, 0.0), (-0.0, 0.0), (1e-30, 1.1283791670955127e-30)] {
        assert!((rf::erf(x) - want).abs() < 1e-15, "erf({x}) = {} want {want}", rf::erf(x));
    }
    // Near the switch between series and continued fraction the series loses a few digits.
    for (x, want) in [(2.9, 0.9999589021219005), (3.0, 0.9999779095030014), (4.0, 0.9999999845827421), (0.01, 0.011283415555849616)] {
        assert!((rf::erf(x) - want).abs() < 1e-13, "erf({x}) = {} want {want}", rf::erf(x));
    }
}

#[test]
fn embedding_gathers_rows() {
    let Some(dev) = common::gpu("embedding_gathers_rows") else { return };
    let mut rng = common::rng("embedding_gathers_rows");
    for (v, d) in [(1, 1), (37, 7), (1000, 257), (300, 1536 + 3)] {
        for tt in rf::DTYPES {
            let (table, tq) = rf::upload(&dev, &[v, d], tt, &common::randn(&mut rng, v * d, 1.0));
            let ids: Vec<i64> = (0..23).map(|i| ((i * 7919 + 13) % v) as i64).chain([0, v as i64 - 1]).collect();
            for ot in rf::DTYPES {
                let out = rf::poisoned(&dev, &[1, ids.len(), d], ot);
                ops::embedding(&table, &ids, &out).unwrap();
                let want: Vec<f64> = ids
                    .iter()
                    .flat_map(|&id| tq[id as usize * d..(id as usize + 1) * d].iter().map(|&x| rf::round_to(ot, x) as f64))
                    .collect();
                // A gather converts each element once: exact.
                common::assert_close(&format!("embedding {v}x{d} {tt}->{ot}"), &out.to_f32_vec().unwrap(), &want, 0.0, 0.0);
            }
        }
    }
}

#[test]
fn elementwise_indexes_past_2_pow_31() {
    // A bf16 tensor of 2^31 + 2^20 + 3 elements (4.3 GB): 32-bit indices would leave its tail unwritten
    // (still NaN) or wrap around.
    let Some(dev) = common::gpu("elementwise_indexes_past_2_pow_31") else { return };
    let n = (1usize << 31) + (1 << 20) + 3;
    let x = Tensor::empty(&dev, &[n], DType::BF16).unwrap();
    x.fill_bytes(0x3f).unwrap(); // every element 0x3f3f = 0.74609375
    let out = rf::poisoned(&dev, &[n], DType::BF16);
    ops::scale(&x, 2.0, &out).unwrap();
    let want = 2.0 * 0.74609375f64;
    for start in [0, (1usize << 31) - 4096, (1 << 31) + 4096, n - 65_536] {
        let got = out.narrow(0, start, 65_536.min(n - start)).unwrap().to_f32_vec().unwrap();
        common::assert_close(&format!("scale window at {start}"), &got, &vec![want; got.len()], 0.0, 0.0);
    }
}

#[test]
fn elementwise_errors_are_reported() {
    let Some(dev) = common::gpu("elementwise_errors_are_reported") else { return };
    let a = Tensor::zeros(&dev, &[4, 8], DType::BF16).unwrap();
    let b16 = Tensor::zeros(&dev, &[4, 8], DType::F16).unwrap();
    let b_short = Tensor::zeros(&dev, &[4, 7], DType::BF16).unwrap();
    let strided = Tensor::zeros(&dev, &[4, 16], DType::BF16).unwrap().narrow(1, 0, 8).unwrap();
    let shape = |r: wanrt::Result<()>| matches!(r, Err(Error::Shape { .. }));
    assert!(matches!(ops::add(&a, &b16, &a), Err(Error::DType { .. })));
    assert!(shape(ops::add(&a, &b_short, &a)));
    assert!(shape(ops::mul(&a, &a, &b_short)));
    assert!(shape(ops::mul(&a, &strided, &a)), "non-contiguous operand");
    assert!(shape(ops::scale(&a, 2.0, &b_short)));
    assert!(shape(ops::scale(&strided, 2.0, &a)));
    assert!(shape(ops::gelu(&a, &b_short, ops::GeluApprox::Tanh)));
    assert!(shape(ops::silu(&strided, &a)));

    let table = Tensor::zeros(&dev, &[10, 8], DType::BF16).unwrap();
    let out = Tensor::zeros(&dev, &[3, 8], DType::F32).unwrap();
    assert!(ops::embedding(&table, &[0, 9, 5], &out).is_ok());
    assert!(matches!(ops::embedding(&table, &[0, 10, 5], &out), Err(Error::Invalid(_))), "id == V");
    assert!(matches!(ops::embedding(&table, &[-1, 1, 5], &out), Err(Error::Invalid(_))), "negative id");
    assert!(shape(ops::embedding(&table, &[0, 1], &out)), "2 ids, 3 rows");
    assert!(shape(ops::embedding(&table, &[0, 1, 2], &Tensor::zeros(&dev, &[3, 7], DType::F32).unwrap())));
    assert!(shape(ops::embedding(&a.reshape(&[32]).unwrap(), &[0], &out)), "1-D table");
    dev.synchronize().unwrap();
}
