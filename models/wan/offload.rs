//! The transformer on the offload engine: its checkpoint units as engine units, weight sources
//! (a Diffusers folder, or synthesized values), the engine as a [`ParamSource`], and the activation
//! peak the planner budgets for.

use std::collections::HashMap;

use super::config::{Precision, WanConfig};
use super::load::synth_range;
use super::transformer::ParamSource;
use super::weights::{ParamSpec, UnitSpec};
use wanrt_runtime::offload::{self, Engine, ModelUnits, TensorSpec, UnitGuard, WeightSource};
use wanrt_runtime::tensor::f32_to_bytes;
use wanrt_runtime::weights::WeightStore;
use wanrt_runtime::{Error, Result, Tensor};

/// The transformer's units in the engine's terms (same names, shapes, dtypes and order).
pub fn model_units(units: &[UnitSpec]) -> Result<ModelUnits> {
    ModelUnits::new(
        units
            .iter()
            .map(|u| {
                let tensors = u.params.iter().map(|p| TensorSpec::new(p.name.clone(), &p.shape, p.dtype)).collect();
                offload::UnitSpec::new(u.name.clone(), u.block, tensors)
            })
            .collect(),
    )
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
        let spec = ParamSpec { name: t.name.clone(), shape: t.shape.clone(), dtype: t.dtype };
        let (lo, hi) = synth_range(&spec);
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

/// The engine as the forward pass's parameter source: one guard per acquired unit.
pub struct Streamed<'e> {
    engine: &'e Engine,
    guards: HashMap<usize, UnitGuard<'e>>,
    unit_of: HashMap<String, usize>,
}

impl<'e> Streamed<'e> {
    pub fn new(engine: &'e Engine) -> Streamed<'e> {
        let unit_of = engine
            .units()
            .units()
            .iter()
            .enumerate()
            .flat_map(|(i, u)| u.tensors.iter().map(move |t| (t.name.clone(), i)))
            .collect();
        Streamed { engine, guards: HashMap::new(), unit_of }
    }
}

impl ParamSource for Streamed<'_> {
    fn acquire(&mut self, unit: usize) -> Result<()> {
        let g = self.engine.unit(unit)?;
        self.guards.insert(unit, g);
        Ok(())
    }

    fn get(&self, name: &str) -> Result<Tensor> {
        let unit = self.unit_of.get(name).ok_or_else(|| Error::invalid(format!("no parameter named {name}")))?;
        let g = self.guards.get(unit).ok_or_else(|| Error::invalid(format!("parameter {name} read outside its unit's acquire/release")))?;
        g.get(name).cloned()
    }

    fn release(&mut self, unit: usize) -> Result<()> {
        match self.guards.remove(&unit) {
            Some(g) => g.release(),
            None => Err(Error::invalid(format!("unit {unit} released but not acquired"))),
        }
    }
}

/// Device bytes the forward's activations need at their peak, for the planner: the block arena
/// (`transformer::Arena`: two residual buffers, two [B, N, D] scratch buffers, a region of
/// max(3·N·D, N·F) shared by three more and the FFN's hidden, text and image K/V, the f32 modulation), the projected contexts, the RoPE tables,
/// cuBLASLt's workspace, and a 10% allowance for pool rounding.
pub fn activation_peak(cfg: &WanConfig, precision: Precision, batch: usize, frames: usize, height: usize, width: usize) -> Result<u64> {
    let (gt, gh, gw) = cfg.grid(frames, height, width)?;
    let n = (batch * gt * gh * gw) as u64;
    let (d, f, b) = (cfg.inner_dim() as u64, cfg.ffn_dim as u64, batch as u64);
    let s = precision.compute().size() as u64;
    let image_tokens = if cfg.is_i2v() { 257 } else { 0 };
    let arena = 4 * n * d * s + (3 * n * d).max(n * f) * s + 2 * b * (512 + image_tokens) * d * s + b * 6 * d * 4;
    let contexts = b * (512 * (cfg.text_dim as u64 + d) + image_tokens * d) * s;
    let rope = 2 * (gt * gh * gw) as u64 * cfg.attention_head_dim as u64 * 4;
    let peak = arena + contexts + rope + (32 << 20);
    Ok(peak + peak / 10)
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
