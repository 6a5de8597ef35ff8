//! Softmax over the last axis against an f64 reference: every (input, output) dtype pair, odd and
//! attention-sized row lengths (both kernels, and the ends of the register-resident one's range),
//! large logits, poisoned outputs, in place; error paths.

mod common;
mod reference;

use reference as rf;
use wanrt::runtime::{ops, Tensor};
use wanrt::{DType, Error};

#[test]
fn softmax_matches_reference() {
    let Some(dev) = common::gpu("softmax_matches_reference") else { return };
    let mut rng = common::rng("softmax_matches_reference");
    // 1024..=16384: the register-resident kernel with WANRT_UNVERIFIED=1 (its ends, odd lengths, the
    // VAE's 720p row of 14,400).
    let lengths = [(1, 1, 1.0), (3, 7, 1.0), (5, 257, 4.0), (4, 1000, 40.0), (3, 1024, 2.0), (17, 1536 + 3, 1.0), (3, 14_400, 40.0)];
    for (rows, l, spread) in lengths.into_iter().chain([(2, 16_383, 3.0), (2, 16_384, 1.0), (2, 16_385, 1.0), (2, 32_760, 3.0)]) {
        for xt in rf::DTYPES {
            // Random logits with a per-row offset (softmax is shift-invariant; the max subtraction
            // must keep exp finite: spread 40 puts exp(x) far outside f32 range without it).
            let mut x = common::randn(&mut rng, rows * l, spread);
            for (r, row) in x.chunks_mut(l).enumerate() {
                row.iter_mut().for_each(|v| *v += 50.0 * r as f32);
            }
            let (xt_, xq) = rf::upload(&dev, &[rows, l], xt, &x);
            let (want, delta) = rf::softmax(&xq, l);
            for ot in rf::DTYPES {
                let out = rf::poisoned(&dev, &[rows, l], ot);
                ops::softmax(&xt_, &out).unwrap();
                let what = format!("softmax {rows}x{l} spread {spread} {xt}->{ot}");
                rf::assert_within(&what, &out.to_f32_vec().unwrap(), &want, &rf::bounds(ot, &want, &delta));
            }
            ops::softmax(&xt_, &xt_).unwrap();
            let what = format!("softmax in place {rows}x{l} {xt}");
            rf::assert_within(&what, &xt_.to_f32_vec().unwrap(), &want, &rf::bounds(xt, &want, &delta));
        }
    }
}

#[test]
fn softmax_errors_are_reported() {
    let Some(dev) = common::gpu("softmax_errors_are_reported") else { return };
    let x = Tensor::zeros(&dev, &[4, 8], DType::F32).unwrap();
    let shape = |r: wanrt::Result<()>| matches!(r, Err(Error::Shape { .. }));
    assert!(shape(ops::softmax(&x, &Tensor::zeros(&dev, &[4, 9], DType::F32).unwrap())));
    assert!(shape(ops::softmax(&Tensor::zeros(&dev, &[4, 16], DType::F32).unwrap().narrow(1, 0, 8).unwrap(), &x)));
    assert!(shape(ops::softmax(&Tensor::zeros(&dev, &[], DType::F32).unwrap(), &Tensor::zeros(&dev, &[], DType::F32).unwrap())));
    dev.synchronize().unwrap();
}
