//! Multi-GPU building blocks on the device: the block transpose against the CPU (fresh random data,
//! odd sizes, poisoned outputs), a one-rank NCCL communicator through the same Ulysses steps (identity),
//! and, where the machine has two or more GPUs, all-to-all and Ulysses attention over two ranks equal to
//! one device's attention bit for bit. NCCL tests skip with a printed reason where libnccl is not on the
//! library path (`WANRT_REQUIRE_NCCL=1` makes that a failure), the two-GPU test where one GPU is present
//! (`WANRT_REQUIRE_GPUS=2` makes that a failure).

mod common;

use std::sync::Arc;

use wanrt::runtime::dist::{SeqSplit, UlyssesLayout};
use wanrt::runtime::dist::ulysses::transpose_cpu;
use wanrt::runtime::gpu::{nccl_available, Comm, Device, NcclId};
use wanrt::runtime::ops;
use wanrt::{DType, Tensor};

fn nccl(test: &str) -> bool {
    if nccl_available() {
        return true;
    }
    assert!(std::env::var("WANRT_REQUIRE_NCCL").map_or(true, |v| v != "1"), "{test}: WANRT_REQUIRE_NCCL=1 but libnccl.so.2 is not loadable");
    eprintln!("{test}: skipped: libnccl.so.2 is not on the library path");
    false
}

#[test]
fn transpose_blocks_matches_the_cpu() {
    let Some(dev) = common::gpu("transpose_blocks_matches_the_cpu") else { return };
    let mut rng = common::rng("transpose_blocks");
    for (a, b, c) in [(1, 1, 1), (3, 5, 7), (17, 4, 128), (1, 8, 33), (129, 3, 2), (2, 1, 5)] {
        for dt in [DType::F32, DType::BF16] {
            let v = common::quantize(&common::randn(&mut rng, a * b * c, 1.0), dt);
            let x = Tensor::from_f32(&dev, &[a, b, c], dt, &v).unwrap();
            let out = Tensor::empty(&dev, &[b, a, c], dt).unwrap();
            out.fill_nan().unwrap();
            ops::transpose_blocks(&x, &out).unwrap();
            let want = transpose_cpu(&v, a, b, c).unwrap();
            let got = out.to_f32_vec().unwrap();
            assert!(got.iter().zip(&want).all(|(g, w)| g.to_bits() == w.to_bits()), "[{a},{b},{c}] {dt}");
        }
    }
    let x = Tensor::empty(&dev, &[4, 6], DType::F32).unwrap();
    assert!(ops::transpose_blocks(&x, &Tensor::empty(&dev, &[4, 6], DType::F32).unwrap()).is_err(), "wrong out shape");
    assert!(ops::transpose_blocks(&x, &x.reshape(&[6, 4]).unwrap()).is_err(), "out overlapping input");
    assert!(ops::transpose_blocks(&x.reshape(&[24]).unwrap(), &x).is_err(), "rank 1");
}

#[test]
fn one_rank_communicator_is_the_identity() {
    let Some(dev) = common::gpu("one_rank_communicator_is_the_identity") else { return };
    if !nccl("one_rank_communicator_is_the_identity") {
        return;
    }
    let mut rng = common::rng("one_rank_comm");
    let comm = Comm::init_local(std::slice::from_ref(&dev), &NcclId::new().unwrap(), 1, 0).unwrap().pop().unwrap();
    assert_eq!((comm.rank(), comm.world()), (0, 1));
    let (b, s, h, d) = (2, 5, 4, 8);
    let lay = UlyssesLayout::new(b, s, h, d, 1).unwrap();
    let v = common::quantize(&common::randn(&mut rng, b * s * h * d, 1.0), DType::BF16);
    let x = Tensor::from_f32(&dev, &[b, s, h, d], DType::BF16, &v).unwrap();
    let scratch = Tensor::empty(&dev, &[b, s, h, d], DType::BF16).unwrap();
    scratch.fill_nan().unwrap();
    let y = lay.run_device(&lay.scatter_heads(), &comm, &x, &scratch).unwrap().clone();
    assert_eq!(y.to_f32_vec().unwrap(), v, "one rank: the scatter moves nothing");
    let gathered = Tensor::empty(&dev, &[b, s, h, d], DType::BF16).unwrap();
    comm.all_gather(&x, &gathered, dev.compute()).unwrap();
    assert_eq!(gathered.to_f32_vec().unwrap(), v);
    assert!(comm.all_gather(&x, &x.narrow(0, 0, 1).unwrap(), dev.compute()).is_err(), "recv of the wrong size");
}

/// Two ranks, one thread each (NCCL's grouped calls of one rank return once its peers have joined).
#[test]
fn two_gpus_ulysses_attention_equals_one_device() {
    if Device::count() < 2 {
        assert!(std::env::var("WANRT_REQUIRE_GPUS").map_or(true, |v| v.parse::<usize>().unwrap_or(0) < 2), "WANRT_REQUIRE_GPUS=2 but {} GPU(s)", Device::count());
        eprintln!("two_gpus_ulysses_attention_equals_one_device: skipped: {} GPU(s)", Device::count());
        return;
    }
    if !nccl("two_gpus_ulysses_attention_equals_one_device") {
        return;
    }
    let devs: Vec<Arc<Device>> = (0..2).map(|i| Device::get(i).unwrap()).collect();
    let mut rng = common::rng("two_gpus_ulysses");
    // 1.3B's head shape, a token count the two ranks split with padding.
    let (tokens, heads, d, world) = (1001, 12, 128, 2);
    let split = SeqSplit::new(tokens, world).unwrap();
    let sr = split.per_part;
    let dt = DType::BF16;
    let full: Vec<Vec<f32>> = (0..3).map(|_| common::quantize(&common::randn(&mut rng, tokens * heads * d, 1.0), dt)).collect();
    let scale = 1.0 / (d as f32).sqrt();
    // The single-device reference on GPU 0.
    let up = |dev: &Arc<Device>, v: &[f32], n: usize| Tensor::from_f32(dev, &[1, n, heads, d], dt, v).unwrap();
    let reference = {
        let (q, k, v) = (up(&devs[0], &full[0], tokens), up(&devs[0], &full[1], tokens), up(&devs[0], &full[2], tokens));
        let o = Tensor::empty(&devs[0], &[1, tokens, heads, d], dt).unwrap();
        ops::attention(&q, &k, &v, None, scale, &o).unwrap();
        o.to_f32_vec().unwrap()
    };
    let comms = Comm::init_local(&devs, &NcclId::new().unwrap(), world, 0).unwrap();
    let lay = UlyssesLayout::new(1, sr, heads, d, world).unwrap();
    let outs: Vec<Vec<f32>> = std::thread::scope(|s| {
        let handles: Vec<_> = comms
            .into_iter()
            .enumerate()
            .map(|(r, comm)| {
                let (full, split, lay) = (&full, &split, &lay);
                s.spawn(move || {
                    let dev = comm.device();
                    let share = |t: &Vec<f32>| {
                        let mut v = vec![0.0f32; sr * heads * d];
                        let rg = split.range(r);
                        v[..rg.len() * heads * d].copy_from_slice(&t[rg.start * heads * d..rg.end * heads * d]);
                        v
                    };
                    let hp = lay.heads_per_rank();
                    let padded = split.padded();
                    let mut scattered = Vec::new();
                    for t in full {
                        let x = Tensor::from_f32(dev, &[1, sr, heads, d], dt, &share(t)).unwrap();
                        let scratch = Tensor::empty(dev, &[1, sr, heads, d], dt).unwrap();
                        let y = lay.run_device(&lay.scatter_heads(), &comm, &x, &scratch).unwrap().clone();
                        scattered.push(y.reshape(&[1, padded, hp, d]).unwrap());
                    }
                    let o = Tensor::empty(dev, &[1, padded, hp, d], dt).unwrap();
                    o.fill_nan().unwrap();
                    let (k, v) = (scattered[1].narrow(1, 0, tokens).unwrap(), scattered[2].narrow(1, 0, tokens).unwrap());
                    ops::attention(&scattered[0], &k, &v, None, scale, &o).unwrap();
                    let o = o.reshape(&[1, sr, heads, d]).unwrap();
                    let scratch = Tensor::empty(dev, &[1, sr, heads, d], dt).unwrap();
                    let back = lay.run_device(&lay.gather_heads(), &comm, &o, &scratch).unwrap().clone();
                    back.to_f32_vec().unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (r, out) in outs.iter().enumerate() {
        let rg = split.range(r);
        let want = &reference[rg.start * heads * d..rg.end * heads * d];
        let got = &out[..rg.len() * heads * d];
        let bad = got.iter().zip(want).position(|(g, w)| g.to_bits() != w.to_bits());
        assert!(bad.is_none(), "rank {r}: element {bad:?} differs from one device's attention");
    }
}
