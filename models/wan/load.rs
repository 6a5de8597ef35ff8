//! Where the transformer's weights come from, as offload-engine weight sources: a Diffusers
//! `transformer/` folder (single or sharded safetensors, any stored float dtype, converted to the
//! compute dtype as the engine fills its host memory), or deterministic synthesized values at the
//! published shapes (benchmarks).

use std::sync::Arc;

use super::weights::is_stray_key;
use wanrt_runtime::offload::{Engine, HostWeights, Mode, ModelUnits, Plan, TensorSpec, WeightSource};
use wanrt_runtime::tensor::f32_to_bytes;
use wanrt_runtime::weights::WeightStore;
use wanrt_runtime::{Device, Result};

pub use crate::checkpoint::LoadReport;

/// Checks that the checkpoint holds exactly the parameters the units need (plus the I2V stray
/// keys), with the right shapes and convertible dtypes. Needs no GPU.
pub fn validate(store: &WeightStore, units: &ModelUnits) -> Result<LoadReport> {
    crate::checkpoint::validate(store, units, &[], is_stray_key, "WanTransformer3DModel folder matching its config.json")
}

/// An engine with every weight of the folder on the device (the resident plan), validated first.
pub fn resident(dev: &Arc<Device>, units: &ModelUnits, store: WeightStore) -> Result<(Engine, LoadReport)> {
    let report = validate(&store, units)?;
    let plan = Plan::new(units, Mode::Resident, 0, 0)?;
    let engine = Engine::new(dev, units.clone(), plan, HostWeights::pinned(Arc::new(StoreSource(store))))?;
    Ok((engine, report))
}

/// Weights read from a checkpoint (safetensors mmap, converted to the compute dtype on the fly).
pub struct StoreSource(pub WeightStore);

impl WeightSource for StoreSource {
    fn read_into(&self, t: &TensorSpec, dst: &mut [u8]) -> Result<()> {
        self.0.read_into(&t.name, &t.shape, t.dtype, dst)
    }
}

/// Deterministic synthesized weights (benchmarks): value i of a tensor depends on (seed, name, i).
pub struct SynthSource {
    pub seed: u64,
}

fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51afd7ed558ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ceb9fe1a85ec53);
    x ^ (x >> 33)
}

impl WeightSource for SynthSource {
    /// One block of 2¹⁶ hashed values per tensor, tiled over the tensor with a rotation per tile:
    /// synthesizing 14B parameters must take seconds, not minutes, and values need only be
    /// non-degenerate and in range.
    fn read_into(&self, t: &TensorSpec, dst: &mut [u8]) -> Result<()> {
        let (lo, hi) = synth_range(t);
        let key = t.name.bytes().fold(self.seed, |h, b| mix(h ^ b as u64));
        let esz = t.dtype.size();
        let n = dst.len() / esz;
        let m = n.min(1 << 16);
        let vals: Vec<f32> = (0..m).map(|j| lo + (hi - lo) * ((mix(key ^ j as u64) >> 40) as f32 / (1u64 << 24) as f32)).collect();
        let block = f32_to_bytes(&vals, t.dtype);
        for (tile, chunk) in dst.chunks_mut(block.len()).enumerate() {
            let rot = (tile * 7919 % m) * esz;
            let len = chunk.len();
            let first = (block.len() - rot).min(len);
            chunk[..first].copy_from_slice(&block[rot..rot + first]);
            if first < len {
                chunk[first..].copy_from_slice(&block[..len - first]);
            }
        }
        Ok(())
    }
}

/// Range of synthesized values for a parameter: Linear-like weights uniform in ±1/√fan_in (PyTorch's
/// default init scale), biases and tables small, norm weights near 1.
pub fn synth_range(p: &TensorSpec) -> (f32, f32) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use wanrt_runtime::tensor::bytes_to_f32;
    use wanrt_runtime::DType;

    #[test]
    fn synthesized_weights_are_deterministic_in_range_and_not_constant() {
        let t = TensorSpec::new("blocks.0.ffn.net.0.proj.weight", &[300, 1000], DType::BF16);
        let mut a = vec![0u8; 300 * 1000 * 2];
        let mut b = a.clone();
        SynthSource { seed: 7 }.read_into(&t, &mut a).unwrap();
        SynthSource { seed: 7 }.read_into(&t, &mut b).unwrap();
        assert_eq!(a, b);
        let v = bytes_to_f32(&a, DType::BF16);
        let bound = 1.0 / (1000f32).sqrt() * 1.01;
        assert!(v.iter().all(|x| x.abs() <= bound), "range ±1/√fan_in");
        // Rows differ (the tiling rotates), and the mean is near zero.
        assert_ne!(v[..1000], v[1000..2000]);
        let mean = v.iter().map(|x| *x as f64).sum::<f64>() / v.len() as f64;
        assert!(mean.abs() < 1e-3, "mean {mean}");
        let mut c = a.clone();
        SynthSource { seed: 8 }.read_into(&t, &mut c).unwrap();
        assert_ne!(a, c, "the seed matters");
    }
}
