//! Patchify / unpatchify and the row-broadcast add against CPU references (exact: data movement and
//! single f32 additions).

mod common;

use wanrt::runtime::ops;
use wanrt::{DType, Tensor};

#[test]
fn patchify_and_unpatchify_move_the_right_elements() {
    let Some(dev) = common::gpu("patchify_and_unpatchify_move_the_right_elements") else { return };
    let mut rng = common::rng("patch");
    for &(b, c, t, h, w, patch) in &[(2usize, 3usize, 3usize, 10usize, 14usize, [1usize, 2, 2]), (1, 5, 4, 6, 9, [2, 3, 3])] {
        for dt in [DType::BF16, DType::F32] {
            let vol = common::quantize(&common::randn(&mut rng, b * c * t * h * w, 1.0), dt);
            let tv = Tensor::from_f32(&dev, &[b, c, t, h, w], dt, &vol).unwrap();
            let (gt, gh, gw) = (t / patch[0], h / patch[1], w / patch[2]);
            let feat = c * patch.iter().product::<usize>();
            let tok = Tensor::empty(&dev, &[b, gt * gh * gw, feat], dt).unwrap();
            tok.fill_nan().unwrap();
            ops::patchify(&tv, patch, &tok).unwrap();
            let got = tok.to_f32_vec().unwrap();
            let at = |bb: usize, cc: usize, tt: usize, yy: usize, xx: usize| vol[(((bb * c + cc) * t + tt) * h + yy) * w + xx];
            for bb in 0..b {
                for f in 0..gt {
                    for y in 0..gh {
                        for x in 0..gw {
                            let n = (f * gh + y) * gw + x;
                            for cc in 0..c {
                                for kt in 0..patch[0] {
                                    for kh in 0..patch[1] {
                                        for kw in 0..patch[2] {
                                            let fi = ((cc * patch[0] + kt) * patch[1] + kh) * patch[2] + kw;
                                            let g = got[(bb * gt * gh * gw + n) * feat + fi];
                                            let want = at(bb, cc, f * patch[0] + kt, y * patch[1] + kh, x * patch[2] + kw);
                                            assert_eq!(g.to_bits(), want.to_bits(), "patchify {dt} b{bb} n{n} feature {fi}");
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            // Unpatchify uses the head's feature order (patch position slowest): check it against the
            // definition, then that it inverts the matching permutation of the tokens.
            let toks = common::quantize(&common::randn(&mut rng, b * gt * gh * gw * feat, 1.0), dt);
            let tt = Tensor::from_f32(&dev, &[b, gt * gh * gw, feat], dt, &toks).unwrap();
            let out = Tensor::empty(&dev, &[b, c, t, h, w], dt).unwrap();
            out.fill_nan().unwrap();
            ops::unpatchify(&tt, patch, &out).unwrap();
            let got = out.to_f32_vec().unwrap();
            for bb in 0..b {
                for cc in 0..c {
                    for z in 0..t {
                        for y in 0..h {
                            for x in 0..w {
                                let n = ((z / patch[0]) * gh + y / patch[1]) * gw + x / patch[2];
                                let k = ((z % patch[0]) * patch[1] + y % patch[1]) * patch[2] + x % patch[2];
                                let want = toks[(bb * gt * gh * gw + n) * feat + k * c + cc];
                                let g = got[(((bb * c + cc) * t + z) * h + y) * w + x];
                                assert_eq!(g.to_bits(), want.to_bits(), "unpatchify {dt} at b{bb} c{cc} t{z} y{y} x{x}");
                            }
                        }
                    }
                }
            }
        }
    }
    let vol = Tensor::empty(&dev, &[1, 2, 3, 5, 4], DType::F32).unwrap();
    let tok = Tensor::empty(&dev, &[1, 6, 8], DType::F32).unwrap();
    assert!(ops::patchify(&vol, [1, 2, 2], &tok).is_err(), "odd height must be refused");
}

#[test]
fn add_rows_is_one_f32_addition() {
    let Some(dev) = common::gpu("add_rows_is_one_f32_addition") else { return };
    let mut rng = common::rng("add_rows");
    let (rows, width) = (5, 6 * 257);
    let a = common::randn(&mut rng, width, 1.0);
    for dt in [DType::BF16, DType::F16, DType::F32] {
        let x = common::quantize(&common::randn(&mut rng, rows * width, 1.0), dt);
        let ta = Tensor::from_f32(&dev, &[1, 6, 257], DType::F32, &a).unwrap();
        let tx = Tensor::from_f32(&dev, &[rows, 6, 257], dt, &x).unwrap();
        let out = Tensor::empty(&dev, &[rows, 6, 257], DType::F32).unwrap();
        out.fill_nan().unwrap();
        ops::add_rows_f32(&ta, &tx, &out).unwrap();
        let got = out.to_f32_vec().unwrap();
        for i in 0..rows * width {
            assert_eq!(got[i].to_bits(), (a[i % width] + x[i]).to_bits(), "{dt} element {i}");
        }
        let bad = Tensor::empty(&dev, &[rows, 6, 257], DType::BF16).unwrap();
        assert!(ops::add_rows_f32(&ta, &tx, &bad).is_err());
    }
}
