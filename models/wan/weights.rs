//! The transformer's dtype rules (diffusers `transformer_wan.py`
//! `WanTransformer3DModel._keep_in_fp32_modules`, applied by `model_loading_utils.py`
//! `load_model_dict_into_meta`) and the checkpoint keys no module uses
//! (`_keys_to_ignore_on_load_unexpected`).
//! The keys themselves are declared by the modules (transformer.rs, embeddings.rs, block.rs).

use super::config::Precision;
use wanrt_runtime::DType;

/// diffusers' `_keep_in_fp32_modules` for Wan: a parameter is kept in fp32 when one of its dotted
/// name's components is one of these.
const KEEP_FP32: [&str; 6] = ["rope", "time_embedder", "scale_shift_table", "norm1", "norm2", "norm3"];

pub fn keeps_fp32(name: &str) -> bool {
    name.split('.').any(|c| KEEP_FP32.contains(&c))
}

/// The checkpoint keys published I2V checkpoints carry that no module uses (diffusers `transformer_wan.py`
/// `WanTransformer3DModel._keys_to_ignore_on_load_unexpected = ["norm_added_q"]`).
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
