//! The transformer's checkpoint keys, shapes and dtype rules (wan-spec.md §1.2, §1.9), grouped into
//! offload units in execution order.

use super::config::{Precision, WanConfig};
use wanrt_runtime::DType;

/// One parameter of the checkpoint.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamSpec {
    pub name: String,
    pub shape: Vec<usize>,
    pub dtype: DType,
}

/// Parameters that run as one piece of the forward pass, in execution order: one Linear, or the
/// small parameter-only tensors of a block. `block` groups units into transformer blocks.
#[derive(Clone, Debug, PartialEq)]
pub struct UnitSpec {
    pub name: String,
    pub block: Option<usize>,
    pub params: Vec<ParamSpec>,
}

/// diffusers' `_keep_in_fp32_modules` for Wan: a parameter is kept in fp32 when one of its dotted
/// name's components is one of these.
const KEEP_FP32: [&str; 6] = ["rope", "time_embedder", "scale_shift_table", "norm1", "norm2", "norm3"];

pub fn keeps_fp32(name: &str) -> bool {
    name.split('.').any(|c| KEEP_FP32.contains(&c))
}

/// The checkpoint keys published I2V checkpoints carry that no module uses (wan-spec.md §7.4).
pub fn is_stray_key(name: &str) -> bool {
    name.starts_with("blocks.") && name.ends_with(".attn2.norm_added_q.weight")
}

struct Builder {
    precision: Precision,
    units: Vec<UnitSpec>,
}

impl Builder {
    fn dtype(&self, name: &str) -> DType {
        if keeps_fp32(name) {
            DType::F32
        } else {
            self.precision.compute()
        }
    }
    fn unit(&mut self, name: &str, block: Option<usize>, params: &[(&str, Vec<usize>)]) {
        let params = params
            .iter()
            .map(|(n, s)| {
                let full = format!("{name}.{n}");
                ParamSpec { dtype: self.dtype(&full), name: full, shape: s.clone() }
            })
            .collect();
        self.units.push(UnitSpec { name: name.to_string(), block, params });
    }
    fn linear(&mut self, name: &str, block: Option<usize>, inp: usize, out: usize) {
        self.unit(name, block, &[("weight", vec![out, inp]), ("bias", vec![out])]);
    }
    /// Linears of one input in one unit named `unit`, their weights first and then their biases: the
    /// packing puts the weights back to back as one [G, out, in] stack (and the biases as [G, out])
    /// whenever each is a multiple of the 256-byte alignment, so one batched GEMM computes them all.
    fn stacked_linears(&mut self, unit: &str, block: Option<usize>, names: &[String], inp: usize, out: usize) {
        let spec = |name: String, shape: Vec<usize>| ParamSpec { dtype: self.dtype(&name), name, shape };
        let mut params: Vec<ParamSpec> = names.iter().map(|n| spec(format!("{n}.weight"), vec![out, inp])).collect();
        params.extend(names.iter().map(|n| spec(format!("{n}.bias"), vec![out])));
        self.units.push(UnitSpec { name: unit.to_string(), block, params });
    }
}

/// Every parameter of the model, as units in execution order.
pub fn units(cfg: &WanConfig, precision: Precision) -> Vec<UnitSpec> {
    let d = cfg.inner_dim();
    let mut b = Builder { precision, units: Vec::new() };
    let [pt, ph, pw] = cfg.patch_size;
    b.unit("patch_embedding", None, &[("weight", vec![d, cfg.in_channels, pt, ph, pw]), ("bias", vec![d])]);
    b.linear("condition_embedder.time_embedder.linear_1", None, cfg.freq_dim, d);
    b.linear("condition_embedder.time_embedder.linear_2", None, d, d);
    b.linear("condition_embedder.time_proj", None, d, 6 * d);
    b.linear("condition_embedder.text_embedder.linear_1", None, cfg.text_dim, d);
    b.linear("condition_embedder.text_embedder.linear_2", None, d, d);
    if let Some(img) = cfg.image_dim {
        let p = "condition_embedder.image_embedder";
        b.unit(&format!("{p}.norm1"), None, &[("weight", vec![img]), ("bias", vec![img])]);
        b.linear(&format!("{p}.ff.net.0.proj"), None, img, img);
        b.linear(&format!("{p}.ff.net.2"), None, img, d);
        b.unit(&format!("{p}.norm2"), None, &[("weight", vec![d]), ("bias", vec![d])]);
    }
    for i in 0..cfg.num_layers {
        let p = format!("blocks.{i}");
        let blk = Some(i);
        // Parameter-only unit: everything small the block needs (modulation table, norms).
        let mut small: Vec<(&str, Vec<usize>)> = vec![
            ("scale_shift_table", vec![1, 6, d]),
            ("attn1.norm_q.weight", vec![d]),
            ("attn1.norm_k.weight", vec![d]),
            ("norm2.weight", vec![d]),
            ("norm2.bias", vec![d]),
            ("attn2.norm_q.weight", vec![d]),
            ("attn2.norm_k.weight", vec![d]),
        ];
        if cfg.is_i2v() {
            small.push(("attn2.norm_added_k.weight", vec![d]));
        }
        b.unit(&p, blk, &small);
        let qkv: Vec<String> = ["to_q", "to_k", "to_v"].iter().map(|l| format!("{p}.attn1.{l}")).collect();
        b.stacked_linears(&format!("{p}.attn1.to_qkv"), blk, &qkv, d, d);
        b.linear(&format!("{p}.attn1.to_out.0"), blk, d, d);
        for l in ["to_q", "to_k", "to_v"] {
            b.linear(&format!("{p}.attn2.{l}"), blk, d, d);
        }
        if let Some(kv) = cfg.added_kv_proj_dim {
            b.linear(&format!("{p}.attn2.add_k_proj"), blk, kv, d);
            b.linear(&format!("{p}.attn2.add_v_proj"), blk, kv, d);
        }
        b.linear(&format!("{p}.attn2.to_out.0"), blk, d, d);
        b.linear(&format!("{p}.ffn.net.0.proj"), blk, d, cfg.ffn_dim);
        b.linear(&format!("{p}.ffn.net.2"), blk, cfg.ffn_dim, d);
    }
    b.unit("head", None, &[("scale_shift_table", vec![1, 2, d])]);
    // The head's table is a top-level key; fix its name (the unit is named for readability).
    if let Some(u) = b.units.last_mut() {
        u.params[0].name = "scale_shift_table".into();
        u.params[0].dtype = DType::F32;
    }
    b.linear("proj_out", None, d, cfg.patch_features_out());
    b.units
}

/// Parameter counts from wan-spec.md §8.1 check the unit list (a CPU unit test).
#[cfg(test)]
mod tests {
    use super::*;

    fn count(cfg: &WanConfig) -> u64 {
        units(cfg, Precision::Fp32).iter().flat_map(|u| &u.params).map(|p| p.shape.iter().product::<usize>() as u64).sum()
    }

    #[test]
    fn parameter_counts_match_the_spec() {
        assert_eq!(count(&WanConfig::preset("wan2.1-t2v-1.3b").unwrap()), 1_418_996_800);
        assert_eq!(count(&WanConfig::preset("wan2.1-t2v-14b").unwrap()), 14_288_491_584);
        assert_eq!(count(&WanConfig::preset("wan2.1-i2v-14b-480p").unwrap()), 16_394_878_784);
    }

    #[test]
    fn fp32_kept_set_matches_diffusers() {
        for (name, kept) in [
            ("condition_embedder.time_embedder.linear_1.weight", true),
            ("blocks.3.scale_shift_table", true),
            ("scale_shift_table", true),
            ("blocks.0.norm2.weight", true),
            ("condition_embedder.image_embedder.norm1.bias", true),
            ("blocks.0.attn1.norm_q.weight", false),
            ("condition_embedder.time_proj.weight", false),
            ("blocks.0.attn2.norm_added_k.weight", false),
        ] {
            assert_eq!(keeps_fp32(name), kept, "{name}");
        }
        let u = units(&WanConfig::preset("wan2.1-t2v-1.3b").unwrap(), Precision::Bf16);
        let find = |n: &str| u.iter().flat_map(|u| &u.params).find(|p| p.name == n).unwrap().dtype;
        assert_eq!(find("blocks.0.norm2.bias"), DType::F32);
        assert_eq!(find("blocks.0.ffn.net.2.weight"), DType::BF16);
        assert_eq!(find("scale_shift_table"), DType::F32);
        assert!(is_stray_key("blocks.7.attn2.norm_added_q.weight"));
        assert!(!is_stray_key("blocks.7.attn2.norm_added_k.weight"));
    }
}
