//! `ops::relative_bias` against a CPU reference: random tables in every dtype, odd sizes (Nq ≠ Nk,
//! not multiples of anything), outputs poisoned with NaN first. The op is a gather and one f32 add,
//! so the result must equal the reference exactly.

mod common;

use wanrt::runtime::ops::relative_bias::{bucket_table, relative_bias};
use wanrt::runtime::tensor::bytes_to_f32;
use wanrt::{DType, Tensor};

#[test]
fn relative_bias_matches_the_cpu_reference() {
    let Some(dev) = common::gpu("relative_bias_matches_the_cpu_reference") else { return };
    let mut rng = common::rng("relative_bias");
    for (dt, b, h, nq, nk) in [(DType::BF16, 2, 3, 5, 7), (DType::F32, 1, 2, 33, 17), (DType::F16, 3, 5, 1, 9), (DType::BF16, 1, 4, 300, 300)] {
        let buckets = 32;
        let table_v = common::quantize(&common::randn(&mut rng, buckets * h, 1.0), dt);
        let table = Tensor::from_f32(&dev, &[buckets, h], dt, &table_v).unwrap();
        let bucket_v = bucket_table(nq, nk, buckets, 128);
        let bucket = Tensor::from_f32(&dev, &[nq + nk - 1], DType::F32, &bucket_v).unwrap();
        let mask_v: Vec<f32> = common::randn(&mut rng, b * nk, 1.0).iter().map(|&x| if x > 0.5 { f32::MIN } else { 0.0 }).collect();
        let mask = Tensor::from_f32(&dev, &[b, nk], DType::F32, &mask_v).unwrap();
        let out = Tensor::empty(&dev, &[b, h, nq, nk], DType::F32).unwrap();
        out.fill_nan().unwrap();
        relative_bias(&table, &bucket, &mask, &out).unwrap();
        let got = bytes_to_f32(&out.to_bytes().unwrap(), DType::F32);
        let mut k = 0;
        for bi in 0..b {
            for hi in 0..h {
                for i in 0..nq {
                    for j in 0..nk {
                        let bk = bucket_v[j + nq - 1 - i] as usize;
                        let want = table_v[bk * h + hi] + mask_v[bi * nk + j];
                        assert_eq!(got[k].to_bits(), want.to_bits(), "{dt} b{bi} h{hi} i{i} j{j}");
                        k += 1;
                    }
                }
            }
        }
    }
    // Shapes that do not fit are errors, not launches.
    let t = Tensor::empty(&dev, &[32, 2], DType::BF16).unwrap();
    let bucket = Tensor::empty(&dev, &[9], DType::F32).unwrap();
    let mask = Tensor::empty(&dev, &[1, 5], DType::F32).unwrap();
    let out = Tensor::empty(&dev, &[1, 3, 5, 5], DType::F32).unwrap();
    assert!(relative_bias(&t, &bucket, &mask, &out).is_err(), "heads disagree with the table");
}
