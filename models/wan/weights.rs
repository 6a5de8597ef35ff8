//! The transformer's dtype rules (wan-spec.md §1.2) and the checkpoint keys no module uses (§1.9).
//! The keys themselves are declared by the modules (transformer.rs, embeddings.rs, block.rs).

use super::config::Precision;
use wanrt_runtime::DType;

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

/// The dtype parameter `key` is computed in: fp32 for the kept modules, else the compute dtype.
pub fn param_dtype(key: &str, precision: Precision) -> DType {
    if keeps_fp32(key) {
        DType::F32
    } else {
        precision.compute()
    }
}

/// Parameter counts from wan-spec.md §8.1 check the unit list (a CPU unit test).
#[cfg(test)]
mod tests {
    use super::*;
    use crate::wan::transformer::WanTransformer3DModel;
    use crate::wan::WanConfig;

    fn count(cfg: &WanConfig) -> u64 {
        let m = WanTransformer3DModel::new(cfg, Precision::Fp32).unwrap();
        m.units().units().iter().flat_map(|u| &u.tensors).map(|p| p.shape.iter().product::<usize>() as u64).sum()
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
        let m = WanTransformer3DModel::new(&WanConfig::preset("wan2.1-t2v-1.3b").unwrap(), Precision::Bf16).unwrap();
        let find = |n: &str| m.units().units().iter().flat_map(|u| &u.tensors).find(|p| p.name == n).unwrap().dtype;
        assert_eq!(find("blocks.0.norm2.bias"), DType::F32);
        assert_eq!(find("blocks.0.ffn.net.2.weight"), DType::BF16);
        assert_eq!(find("scale_shift_table"), DType::F32);
        assert!(is_stray_key("blocks.7.attn2.norm_added_q.weight"));
        assert!(!is_stray_key("blocks.7.attn2.norm_added_k.weight"));
    }
}
