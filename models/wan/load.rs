//! Loading the transformer's parameters from a Diffusers `transformer/` folder (single or sharded
//! safetensors, any stored float dtype, converted once at load), and the value ranges of synthesized
//! weights (`offload::SynthSource`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::transformer::Resident;
use super::weights::{is_stray_key, ParamSpec, UnitSpec};
use wanrt_runtime::weights::WeightStore;
use wanrt_runtime::{Device, Error, Result, Tensor};

/// What loading found besides the expected parameters.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Checkpoint keys that no module uses and are skipped on purpose (the I2V `norm_added_q`).
    pub ignored: Vec<String>,
}

/// Checks that the checkpoint holds exactly the parameters the units need (plus known stray keys),
/// with the right shapes and convertible dtypes. Needs no GPU.
pub fn validate(store: &WeightStore, units: &[UnitSpec]) -> Result<LoadReport> {
    let mut expected = HashSet::new();
    for p in units.iter().flat_map(|u| &u.params) {
        let t = store.expect(&p.name, &p.shape)?;
        if !t.dtype.is_float() {
            return Err(Error::Tensor { path: t.file.to_path_buf(), tensor: p.name.clone(), msg: format!("stored as {}, expected a float dtype", t.dtype) });
        }
        expected.insert(p.name.as_str());
    }
    let mut report = LoadReport::default();
    let mut unknown = Vec::new();
    for name in store.names() {
        if expected.contains(name) {
            continue;
        }
        if is_stray_key(name) {
            report.ignored.push(name.to_string());
        } else {
            unknown.push(name.to_string());
        }
    }
    if !unknown.is_empty() {
        unknown.sort();
        let shown: Vec<_> = unknown.iter().take(5).cloned().collect();
        return Err(Error::File {
            path: store.source().to_path_buf(),
            msg: format!(
                "{} unexpected tensors (is this a WanTransformer3DModel folder matching its config.json?): {}{}",
                unknown.len(),
                shown.join(", "),
                if unknown.len() > 5 { ", ..." } else { "" }
            ),
        });
    }
    report.ignored.sort();
    Ok(report)
}

/// Every parameter on the device, converted to its compute dtype.
pub fn load_resident(dev: &Arc<Device>, store: &WeightStore, units: &[UnitSpec]) -> Result<(Resident, LoadReport)> {
    let report = validate(store, units)?;
    // Each unit in one device buffer, packed exactly as the offload engine packs it, so every parameter
    // source lays a unit's tensors out alike (the stacked q/k/v GEMM depends on that adjacency).
    let packing = super::offload::model_units(units)?;
    let mut tensors = HashMap::new();
    for (i, u) in units.iter().enumerate() {
        let buf = Arc::new(dev.alloc(packing.unit_bytes(i), &format!("weights {}", u.name))?);
        for (p, &off) in u.params.iter().zip(&packing.layout(i).offsets) {
            let view = Tensor::from_buffer(buf.clone(), off, &p.shape, p.dtype)?;
            view.write_bytes(&store.load(&p.name, &p.shape, p.dtype)?)?;
            tensors.insert(p.name.clone(), view);
        }
    }
    Ok((Resident { tensors }, report))
}

/// Range of synthesized values for a parameter: Linear-like weights uniform in ±1/√fan_in (PyTorch's
/// default init scale), biases and tables small, norm weights near 1.
pub fn synth_range(p: &ParamSpec) -> (f32, f32) {
    let n = &p.name;
    if n.contains("norm") && n.ends_with(".weight") {
        (0.8, 1.2)
    } else if n.ends_with(".bias") || n.ends_with("scale_shift_table") {
        (-0.05, 0.05)
    } else {
        let fan_in: usize = p.shape[1..].iter().product::<usize>().max(1);
        let a = 1.0 / (fan_in as f32).sqrt();
        (-a, a)
    }
}
