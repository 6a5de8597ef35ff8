//! Every offload mode gives output bit-identical to resident execution on the transformer fixtures
//! (T2V and I2V, bf16), over consecutive forwards in the CFG pattern (cond, uncond, cond, uncond with
//! different timesteps), so prefetch across forward boundaries is exercised.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use wanrt::models::wan::io::read_inputs;
use wanrt::models::wan::load::{self, StoreSource};
use wanrt::models::wan::{InputShape, Inputs, Precision, WanConfig, WanTransformer3DModel};
use wanrt::runtime::offload::{Engine, Grouping, HostWeights, Mode, Plan};
use wanrt::runtime::ops;
use wanrt::runtime::weights::WeightStore;
use wanrt::{Error, Tensor};

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
    let model = WanTransformer3DModel::new(&cfg, Precision::Bf16).unwrap();
    let (resident, _) = load::resident(&dev, model.units(), WeightStore::open(&model_dir).unwrap()).unwrap();
    let inputs = read_inputs(&dev, &dir.join("inputs.safetensors"), &cfg, Precision::Bf16).unwrap();
    let runs = cfg_pattern(&inputs);
    let want: Vec<Vec<u8>> = runs.iter().map(|i| model.forward(&resident, i, None).unwrap().to_bytes().unwrap()).collect();
    assert_ne!(want[0], want[1], "cond and uncond must differ for the test to mean anything");
    drop(resident);

    let units = model.units().clone();
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
            let outs: Vec<Tensor> = runs.iter().map(|i| model.forward(&engine, i, None).unwrap()).collect();
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
        for (j, i) in runs.iter().enumerate() {
            let got = model.forward(&engine, i, None).unwrap().to_bytes().unwrap();
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

/// Random inputs for the T2V fixture's model at latent grid (t, h, w) with `l` text tokens.
fn random_inputs(dev: &std::sync::Arc<wanrt::Device>, cfg: &WanConfig, t: usize, h: usize, w: usize, l: usize, seed: u64) -> Inputs {
    let dt = Precision::Bf16.compute();
    let mk = |shape: &[usize], s: u64| {
        let x = Tensor::empty(dev, shape, dt).unwrap();
        ops::fill_uniform(&x, s, -1.0, 1.0).unwrap();
        x
    };
    Inputs {
        hidden_states: mk(&[1, cfg.in_channels, t, h, w], seed),
        timestep: vec![500.0],
        encoder_hidden_states: mk(&[1, l, cfg.text_dim], seed + 1),
        encoder_hidden_states_image: None,
    }
}

/// Issue 13: a forward's arena is what the model reports, so alternating grids and text lengths
/// under a cap made from the largest input's reported peak never hit the budget, and each output is
/// bit-identical to the resident engine's. Then an input past the cap fails cleanly and the next
/// forward is still bit-identical.
#[test]
fn alternating_grids_under_a_tight_cap() {
    let Some(dev) = common::gpu("alternating grids under a tight cap") else { return };
    let dir = common::fixture("transformer_t2v").join("transformer");
    let cfg = WanConfig::from_path(&dir).unwrap();
    let model = WanTransformer3DModel::new(&cfg, Precision::Bf16).unwrap();
    let shapes = [(3, 10, 14, 512), (2, 6, 8, 77), (1, 4, 4, 512), (3, 12, 10, 200)];
    let inputs: Vec<Inputs> = shapes.iter().enumerate().map(|(i, &(t, h, w, l))| random_inputs(&dev, &cfg, t, h, w, l, 10 * i as u64)).collect();
    let (resident, _) = load::resident(&dev, model.units(), WeightStore::open(&dir).unwrap()).unwrap();
    let want: Vec<Vec<u8>> = inputs.iter().map(|i| model.forward(&resident, i, None).unwrap().to_bytes().unwrap()).collect();
    drop(resident);
    // Inputs are allocated already; the cap covers the weights' placement and the largest arena.
    let arena = |&(t, h, w, l): &(usize, usize, usize, usize)| {
        let s = InputShape { batch: 1, frames: t, height: h, width: w, text_tokens: l, image_tokens: None };
        model.activation_bytes(&s).unwrap()
    };
    let largest = shapes.iter().map(arena).max().unwrap();
    let source = std::sync::Arc::new(StoreSource(WeightStore::open(&dir).unwrap()));
    // Past the cap: about seven times the largest grid's tokens.
    let big = random_inputs(&dev, &cfg, 5, 20, 28, 512, 99);
    for mode in [Mode::Leaf { streamed: true }, Mode::Block { n: 1, streamed: true }, Mode::Resident] {
        let mut plan = Plan::new(model.units(), mode, 2, 0).unwrap();
        if mode.prefetches() {
            plan = plan.with_ring().unwrap();
        }
        dev.synchronize().unwrap();
        let base = dev.memory_stats().in_use;
        dev.set_budget(Some(base + plan.weight_vram() + largest + (1 << 20)));
        let engine = Engine::new(&dev, model.units().clone(), plan, HostWeights::pinned(source.clone())).unwrap();
        let mut got = Vec::new();
        for round in 0..3 {
            for (i, inp) in inputs.iter().enumerate() {
                got.push((round, i, model.forward(&engine, inp, None).and_then(|o| o.to_bytes())));
            }
        }
        let over = model.forward(&engine, &big, None).err();
        let after = model.forward(&engine, &inputs[0], None).and_then(|o| o.to_bytes());
        drop(engine);
        dev.set_budget(None);
        for (round, i, r) in got {
            match r {
                Ok(b) => assert!(b == want[i], "{mode}: round {round} input {i}: not bit-identical to resident"),
                Err(e) => panic!("{mode}: round {round} input {i} {:?}: {e}", shapes[i]),
            }
        }
        let over = over.expect("an input past the cap must fail");
        assert!(matches!(over, Error::OutOfBudget { .. }), "{mode}: {over}");
        assert!(after.unwrap() == want[0], "{mode}: after the budget error");
    }
}
