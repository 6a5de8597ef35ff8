//! The Wan transformer against the diffusers fixtures (tests/fixtures/transformer_{t2v,i2v}), bf16 and
//! fp32, intermediate by intermediate.
//!
//! Metric: relative RMS error `‖ours − ref‖₂ / ‖ref‖₂` per named tensor.
//! - bf16: ours vs the reference's bf16 run must be no further than the reference's bf16 run is from
//!   its fp32 run (the criterion), with a floor of 2 bf16 half-ulps (2⁻⁸) for tensors where
//!   the two reference runs happen to agree almost exactly.
//! - fp16: ours vs the fp32 reference no further than the reference's bf16 run is from it.
//! - fp32: ours vs the fp32 reference ≤ 1e-5: each op's f32 result differs from the CPU reference's by
//!   reduction order only (≲ √K·u with K ≤ 512, u = 6e-8), compounded over a few dozen chained ops.

mod common;

use std::collections::HashMap;

use wanrt::models::wan::io::read_inputs;
use wanrt::models::wan::load;
use wanrt::models::wan::WanTransformer3DModel;
use wanrt::models::wan::{Precision, WanConfig};
use wanrt::runtime::weights::{SafeTensorsFile, WeightStore};
use wanrt::runtime::tensor::bytes_to_f32;
use wanrt::DType;

fn reference(file: &SafeTensorsFile, name: &str) -> Option<Vec<f32>> {
    let info = file.info(name)?;
    let bytes = file.bytes(name).ok()?;
    let dt = match info.dtype.name() {
        "F32" => DType::F32,
        "BF16" => DType::BF16,
        "F16" => DType::F16,
        _ => return None,
    };
    Some(bytes_to_f32(bytes, dt))
}

fn rel_rms(a: &[f32], b: &[f32]) -> f64 {
    let (mut num, mut den) = (0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        num += (*x as f64 - *y as f64).powi(2);
        den += (*y as f64).powi(2);
    }
    if a.iter().any(|v| !v.is_finite()) {
        return f64::INFINITY;
    }
    (num / den.max(1e-30)).sqrt()
}

fn run_case(case: &str, precision: Precision) {
    let Some(dev) = common::gpu(&format!("transformer {case} {precision:?}")) else { return };
    let dir = common::fixture(case);
    let model_dir = dir.join("transformer");
    let cfg = WanConfig::from_path(&model_dir).unwrap();
    let model = WanTransformer3DModel::new(&cfg, precision).unwrap();
    let store = WeightStore::open(&model_dir).unwrap();
    let (engine, report) = load::resident(&dev, model.units(), store).unwrap();
    if cfg.is_i2v() {
        assert_eq!(report.ignored.len(), cfg.num_layers, "the stray norm_added_q keys are reported as ignored");
    }
    let inputs = read_inputs(&dev, &dir.join("inputs.safetensors"), &cfg, precision).unwrap();
    let mut capture = HashMap::new();
    let out = model.forward(&engine, &inputs, Some(&mut capture)).unwrap();
    let ref32 = SafeTensorsFile::open(dir.join("reference_fp32.safetensors")).unwrap();
    let ref16 = SafeTensorsFile::open(dir.join("reference_bf16.safetensors")).unwrap();
    let mut names: Vec<_> = capture.keys().cloned().collect();
    names.sort();
    let mut checked = 0;
    let mut report = String::new();
    let mut failures = Vec::new();
    for name in &names {
        let got = capture[name].to_f32_vec().unwrap();
        // Every capture must have its reference: a renamed intermediate must fail here, not be skipped.
        let (Some(r32), Some(r16)) = (reference(&ref32, name), reference(&ref16, name)) else {
            failures.push(format!("{name}: captured but missing from the reference fixtures"));
            continue;
        };
        assert_eq!(got.len(), r32.len(), "{name}: element count");
        let (err, bound) = match precision {
            Precision::Fp32 => (rel_rms(&got, &r32), 1e-5),
            // fp16 has 3 more mantissa bits than bf16 and the fixtures' values stay far from its
            // range limits, so it must be at least as close to the fp32 run as the bf16 run is.
            Precision::Fp16 => (rel_rms(&got, &r32), rel_rms(&r16, &r32).max(1.0 / 256.0)),
            Precision::Bf16 => (rel_rms(&got, &r16), rel_rms(&r16, &r32).max(1.0 / 256.0)),
        };
        report.push_str(&format!("{name:40} rel_rms {err:.3e} bound {bound:.3e}\n"));
        // Negated so that a NaN error fails too.
        #[allow(clippy::neg_cmp_op_on_partial_ord)]
        if !(err <= bound) {
            failures.push(format!("{name}: {err:.3e} > {bound:.3e}"));
        }
        checked += 1;
    }
    eprintln!("{case} {precision:?}\n{report}");
    assert!(checked >= 20, "only {checked} intermediates compared");
    // And every reference intermediate was captured (the fixtures hold nothing we do not compare).
    let missing: Vec<_> = ref16.names().filter(|n| !capture.contains_key(*n)).collect();
    assert!(missing.is_empty(), "{case}: reference intermediates never captured: {missing:?}");
    assert!(capture.contains_key("sample") && capture.contains_key("blocks.1.out"));
    assert_eq!(out.shape(), &[2, 16, 3, 10, 14]);
    assert!(failures.is_empty(), "{case} {precision:?}: {}", failures.join("; "));
}

#[test]
fn t2v_bf16() {
    run_case("transformer_t2v", Precision::Bf16);
}

#[test]
fn t2v_fp32() {
    run_case("transformer_t2v", Precision::Fp32);
}

#[test]
fn t2v_fp16() {
    run_case("transformer_t2v", Precision::Fp16);
}

#[test]
fn i2v_fp16() {
    run_case("transformer_i2v", Precision::Fp16);
}

#[test]
fn i2v_bf16() {
    run_case("transformer_i2v", Precision::Bf16);
}

#[test]
fn i2v_fp32() {
    run_case("transformer_i2v", Precision::Fp32);
}

#[test]
fn bad_inputs_are_errors() {
    let Some(dev) = common::gpu("transformer bad inputs") else { return };
    let dir = common::fixture("transformer_t2v");
    let cfg = WanConfig::from_path(&dir.join("transformer")).unwrap();
    let model = WanTransformer3DModel::new(&cfg, Precision::Bf16).unwrap();
    let store = WeightStore::open(dir.join("transformer")).unwrap();
    let (engine, _) = load::resident(&dev, model.units(), store).unwrap();
    let mut inputs = read_inputs(&dev, &dir.join("inputs.safetensors"), &cfg, Precision::Bf16).unwrap();
    inputs.timestep.pop();
    let e = model.forward(&engine, &inputs, None).err().unwrap();
    assert!(e.to_string().contains("timesteps"), "{e}");
    let mut inputs = read_inputs(&dev, &dir.join("inputs.safetensors"), &cfg, Precision::Fp32).unwrap();
    inputs.timestep = vec![1.0, 2.0];
    assert!(model.forward(&engine, &inputs, None).is_err(), "fp32 inputs to a bf16 model must be refused");
}
