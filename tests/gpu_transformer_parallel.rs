//! The sequence-parallel transformer forward (`WanTransformer3DModel::forward_parallel`) on the fixture
//! models (T2V and I2V, bf16, batch 2):
//! - one rank (any single GPU): bit-identical to `forward`: the same GEMMs over the same rows, the
//!   exchanges moving every byte back where it was;
//! - two ranks on two GPUs: every rank returns the same sample, no further from the one-GPU bf16
//!   result than that is from the one-GPU fp32 result (the bound: bf16's own rounding noise on these
//!   inputs; the split changes the GEMMs' row counts, so cuBLASLt may sum in another order).
//!
//! NCCL tests skip with a printed reason where libnccl is not loadable (`WANRT_REQUIRE_NCCL=1` fails
//! instead), the two-GPU test where fewer GPUs are present (`WANRT_REQUIRE_GPUS=2` fails instead).

mod common;

use std::sync::Arc;

use wanrt::models::wan::io::read_inputs;
use wanrt::models::wan::load;
use wanrt::models::wan::parallel::SequenceParallel;
use wanrt::models::wan::{Precision, WanConfig, WanTransformer3DModel};
use wanrt::runtime::gpu::{nccl_available, Comm, Device, NcclId};
use wanrt::runtime::weights::WeightStore;

fn nccl(test: &str) -> bool {
    if nccl_available() {
        return true;
    }
    assert!(std::env::var("WANRT_REQUIRE_NCCL").map_or(true, |v| v != "1"), "{test}: WANRT_REQUIRE_NCCL=1 but libnccl.so.2 is not loadable");
    eprintln!("{test}: skipped: libnccl.so.2 is not on the library path");
    false
}

fn tokens(cfg: &WanConfig, shape: &[usize]) -> usize {
    let (t, h, w) = cfg.grid(shape[2], shape[3], shape[4]).unwrap();
    t * h * w
}

fn one_rank(case: &str) {
    let Some(dev) = common::gpu(&format!("parallel one rank {case}")) else { return };
    if !nccl(case) {
        return;
    }
    let dir = common::fixture(case);
    let model_dir = dir.join("transformer");
    let cfg = WanConfig::from_path(&model_dir).unwrap();
    let model = WanTransformer3DModel::new(&cfg, Precision::Bf16).unwrap();
    let (engine, _) = load::resident(&dev, model.units(), WeightStore::open(&model_dir).unwrap()).unwrap();
    let inputs = read_inputs(&dev, &dir.join("inputs.safetensors"), &cfg, Precision::Bf16).unwrap();
    let want = model.forward(&engine, &inputs, None).unwrap().to_bytes().unwrap();
    let comm = Comm::init_local(std::slice::from_ref(&dev), &NcclId::new().unwrap(), 1, 0).unwrap().pop().unwrap();
    let sp = SequenceParallel::new(&comm, tokens(&cfg, inputs.hidden_states.shape())).unwrap();
    let got = model.forward_parallel(&engine, &inputs, &sp).unwrap().to_bytes().unwrap();
    assert!(got == want, "{case}: one-rank sequence parallelism is not bit-identical to forward");
    let wrong = SequenceParallel::new(&comm, 7).unwrap();
    assert!(model.forward_parallel(&engine, &inputs, &wrong).is_err(), "a split for another token count is refused");
}

#[test]
fn one_rank_t2v_is_bit_identical() {
    one_rank("transformer_t2v");
}

#[test]
fn one_rank_i2v_is_bit_identical() {
    one_rank("transformer_i2v");
}

fn rel_rms(a: &[f32], b: &[f32]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| ((*x - *y) as f64).powi(2)).sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den.max(f64::MIN_POSITIVE)).sqrt()
}

fn two_gpus(case: &str) {
    if Device::count() < 2 {
        assert!(std::env::var("WANRT_REQUIRE_GPUS").map_or(true, |v| v.parse::<usize>().unwrap_or(0) < 2), "WANRT_REQUIRE_GPUS=2 but {} GPU(s)", Device::count());
        eprintln!("{case}: two-GPU test skipped: {} GPU(s)", Device::count());
        return;
    }
    if !nccl(case) {
        return;
    }
    let dir = common::fixture(case);
    let model_dir = dir.join("transformer");
    let cfg = WanConfig::from_path(&model_dir).unwrap();
    let devs: Vec<Arc<Device>> = (0..2).map(|i| Device::get(i).unwrap()).collect();
    let single = |precision: Precision| -> Vec<f32> {
        let model = WanTransformer3DModel::new(&cfg, precision).unwrap();
        let (engine, _) = load::resident(&devs[0], model.units(), WeightStore::open(&model_dir).unwrap()).unwrap();
        let inputs = read_inputs(&devs[0], &dir.join("inputs.safetensors"), &cfg, precision).unwrap();
        model.forward(&engine, &inputs, None).unwrap().to_f32_vec().unwrap()
    };
    let (bf16, fp32) = (single(Precision::Bf16), single(Precision::Fp32));
    let bound = rel_rms(&bf16, &fp32);
    let model = WanTransformer3DModel::new(&cfg, Precision::Bf16).unwrap();
    let comms = Comm::init_local(&devs, &NcclId::new().unwrap(), 2, 0).unwrap();
    let outs: Vec<Vec<f32>> = std::thread::scope(|s| {
        let handles: Vec<_> = comms
            .into_iter()
            .map(|comm| {
                let (model, dir, model_dir, cfg) = (&model, &dir, &model_dir, &cfg);
                s.spawn(move || {
                    let dev = comm.device().clone();
                    let (engine, _) = load::resident(&dev, model.units(), WeightStore::open(model_dir).unwrap()).unwrap();
                    let inputs = read_inputs(&dev, &dir.join("inputs.safetensors"), cfg, Precision::Bf16).unwrap();
                    let sp = SequenceParallel::new(&comm, tokens(cfg, inputs.hidden_states.shape())).unwrap();
                    model.forward_parallel(&engine, &inputs, &sp).unwrap().to_f32_vec().unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(outs[0].iter().zip(&outs[1]).all(|(a, b)| a.to_bits() == b.to_bits()), "{case}: the two ranks return different samples");
    let err = rel_rms(&outs[0], &bf16);
    eprintln!("{case}: two ranks vs one GPU (bf16) {err:.3e}; one GPU bf16 vs fp32 {bound:.3e}");
    assert!(err <= bound, "{case}: two-rank result {err:.3e} from one GPU's, beyond bf16's own noise {bound:.3e}");
}

#[test]
fn two_gpus_t2v_within_bf16_noise() {
    two_gpus("transformer_t2v");
}

#[test]
fn two_gpus_i2v_within_bf16_noise() {
    two_gpus("transformer_i2v");
}
