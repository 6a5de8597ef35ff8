//! Every offload mode gives output bit-identical to resident execution on the transformer fixtures
//! (T2V and I2V, bf16), over consecutive forwards in the CFG pattern (cond, uncond, cond, uncond with
//! different timesteps), so prefetch across forward boundaries is exercised.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use wanrt::models::wan::io::read_inputs;
use wanrt::models::wan::load::load_resident;
use wanrt::models::wan::offload::{model_units, StoreSource, Streamed};
use wanrt::models::wan::transformer::{Inputs, WanTransformer};
use wanrt::models::wan::{Precision, WanConfig};
use wanrt::runtime::offload::{Engine, Grouping, HostWeights, Mode, Plan};
use wanrt::runtime::weights::WeightStore;
use wanrt::Tensor;

fn cfg_pattern(inputs: &Inputs) -> Vec<Inputs> {
    // Uncond = the same latents with the text context zeroed; two steps with different timesteps.
    let zeros = Tensor::zeros(inputs.encoder_hidden_states.device(), inputs.encoder_hidden_states.shape(), inputs.encoder_hidden_states.dtype()).unwrap();
    let mut out = Vec::new();
    for t in [[999.0f32, 17.0], [500.0, 3.0]] {
        for ctx in [&inputs.encoder_hidden_states, &zeros] {
            out.push(Inputs {
                hidden_states: inputs.hidden_states.clone(),
                timestep: t.to_vec(),
                encoder_hidden_states: ctx.clone(),
                encoder_hidden_states_image: inputs.encoder_hidden_states_image.clone(),
            });
        }
    }
    out
}

fn run(case: &str) {
    let Some(dev) = common::gpu(&format!("transformer offload {case}")) else { return };
    let dir = common::fixture(case);
    let model_dir = dir.join("transformer");
    let cfg = WanConfig::from_path(&model_dir).unwrap();
    let model = WanTransformer::new(dev.clone(), cfg.clone(), Precision::Bf16).unwrap();
    let store = WeightStore::open(&model_dir).unwrap();
    let (mut resident, _) = load_resident(&dev, &store, &model.units).unwrap();
    let inputs = read_inputs(&dev, &dir.join("inputs.safetensors"), &cfg, Precision::Bf16).unwrap();
    let runs = cfg_pattern(&inputs);
    let want: Vec<Vec<u8>> = runs.iter().map(|i| model.forward(&mut resident, i, None).unwrap().to_bytes().unwrap()).collect();
    assert_ne!(want[0], want[1], "cond and uncond must differ for the test to mean anything");

    let units = model_units(&model.units).unwrap();
    let source = Arc::new(StoreSource(WeightStore::open(&model_dir).unwrap()));
    let n = units.len();
    let mut modes = vec![Mode::Resident];
    for streamed in [false, true] {
        for b in [1, 2, 3] {
            modes.push(Mode::Block { n: b, streamed });
        }
        modes.push(Mode::Leaf { streamed });
        modes.push(Mode::Hybrid { prefix: 6, suffix: 2, group: Grouping::Blocks(1), streamed });
        modes.push(Mode::Hybrid { prefix: 0, suffix: n / 3, group: Grouping::Leaf, streamed });
    }
    let mut results = HashMap::new();
    let variants: Vec<(Mode, usize, bool)> = modes
        .iter()
        .flat_map(|&m| {
            let mut v = vec![(m, 2, false)];
            if m != Mode::Resident {
                v.push((m, 3, false));
            }
            if m.prefetches() {
                v.push((m, 2, true)); // the byte ring
            }
            v
        })
        .collect();
    for (mode, k, ring) in variants {
        {
            let mut plan = Plan::new(&units, mode, k, 0).unwrap();
            if ring {
                plan = plan.with_ring().unwrap();
            }
            let engine = Engine::new(&dev, units.clone(), plan, HostWeights::pinned(source.clone())).unwrap();
            let mut params = Streamed::new(&engine);
            let outs: Vec<Tensor> = runs.iter().map(|i| model.forward(&mut params, i, None).unwrap()).collect();
            // Download only at the end: no host synchronization between the forwards.
            for (j, o) in outs.iter().enumerate() {
                let got = o.to_bytes().unwrap();
                results.insert(format!("{mode} K={k} ring {ring} forward {j}"), got == want[j]);
            }
            assert_eq!(engine.host_waits(), 0, "{mode}: the pinned path never waits on the host");
        }
    }
    // The low-RAM path: streamed from the mmap through a 3-buffer pinned staging ring.
    for mode in [Mode::Leaf { streamed: true }, Mode::Block { n: 1, streamed: true }] {
        let plan = Plan::new(&units, mode, 2, 0).unwrap();
        let engine = Engine::new(&dev, units.clone(), plan, HostWeights::staging(source.clone(), 3)).unwrap();
        let mut params = Streamed::new(&engine);
        for (j, i) in runs.iter().enumerate() {
            let got = model.forward(&mut params, i, None).unwrap().to_bytes().unwrap();
            results.insert(format!("{mode} low-RAM forward {j}"), got == want[j]);
        }
    }
    let bad: Vec<_> = results.iter().filter(|(_, ok)| !**ok).map(|(k, _)| k.clone()).collect();
    assert!(bad.is_empty(), "{case}: not bit-identical to resident: {bad:?}");
}

#[test]
fn t2v_every_mode_is_bit_identical() {
    run("transformer_t2v");
}

#[test]
fn i2v_every_mode_is_bit_identical() {
    run("transformer_i2v");
}
