//! Loading the VAE from a Diffusers `vae/` folder: the checkpoint checked against both halves'
//! declared units (every key present with its shape, nothing unknown), and the weight source that
//! uploads conv weights channels-last.

use std::path::Path;
use std::sync::Arc;

use wanrt_runtime::offload::{Engine, HostWeights, Mode, ModelUnits, Plan, TensorSpec, WeightSource};
use wanrt_runtime::weights::WeightStore;
use wanrt_runtime::{DType, Device, Error, Result};

use super::config::VaeConfig;
use super::model::AutoencoderKLWan;
use crate::checkpoint::{validate as validate_units, LoadReport};

/// Checkpoint weights converted to the declared dtype, with every conv weight (a `*.weight` of rank
/// ≥ 3: PyTorch's [Cout, Cin, k...]) permuted to channels-last [Cout, k..., Cin] as the conv op
/// takes it: once, while the engine fills its host memory. Norm gammas ([C, 1, 1(, 1)]) and 1×1
/// convs are unchanged by the permutation.
pub struct ChannelsLastSource(pub Arc<WeightStore>);

/// `dst` (the tensor's bytes in [Cout, Cin, R] order, R = product of the kernel dims) reordered to
/// [Cout, R, Cin].
pub fn to_channels_last(src: &[u8], shape: &[usize], elem: usize, dst: &mut [u8]) {
    let (cout, cin) = (shape[0], shape[1]);
    let r: usize = shape[2..].iter().product();
    for co in 0..cout {
        for ci in 0..cin {
            for k in 0..r {
                let s = ((co * cin + ci) * r + k) * elem;
                let d = ((co * r + k) * cin + ci) * elem;
                dst[d..d + elem].copy_from_slice(&src[s..s + elem]);
            }
        }
    }
}

impl WeightSource for ChannelsLastSource {
    fn read_into(&self, t: &TensorSpec, dst: &mut [u8]) -> Result<()> {
        let permute = t.name.ends_with(".weight") && t.shape.len() >= 3 && t.shape[2..].iter().product::<usize>() > 1;
        if !permute {
            return self.0.read_into(&t.name, &t.shape, t.dtype, dst);
        }
        let mut tmp = vec![0u8; dst.len()];
        self.0.read_into(&t.name, &t.shape, t.dtype, &mut tmp)?;
        to_channels_last(&tmp, &t.shape, t.dtype.size(), dst);
        Ok(())
    }
}

/// Checks the checkpoint against both halves: each half's keys present with their shapes, the other
/// half's keys passed over, nothing else.
pub fn validate(store: &WeightStore, model: &AutoencoderKLWan) -> Result<()> {
    let what = "AutoencoderKLWan vae/ folder matching its config.json";
    let dec = |k: &str| k.starts_with("decoder.") || k.starts_with("post_quant_conv.");
    let enc = |k: &str| k.starts_with("encoder.") || k.starts_with("quant_conv.");
    validate_units(store, &model.encoder.units, &[], dec, what)?;
    let _: LoadReport = validate_units(store, &model.decoder.units, &[], enc, what)?;
    Ok(())
}

/// A model folder read and checked without a GPU: config, declared model, weights (mapped).
pub struct VaeFolder {
    pub model: AutoencoderKLWan,
    pub store: Arc<WeightStore>,
}

impl VaeFolder {
    /// Reads `config.json` and the weights of a Diffusers `vae/` folder (or a folder holding `vae/`)
    /// and checks them against the declared model.
    pub fn open(path: &Path, encode_dtype: DType, decode_dtype: DType) -> Result<VaeFolder> {
        let dir = if path.join("vae").join("config.json").is_file() { path.join("vae") } else { path.to_path_buf() };
        if !dir.is_dir() {
            return Err(Error::File { path: dir, msg: "not a folder (expected a Diffusers vae/ folder or a model root holding one)".into() });
        }
        let cfg = VaeConfig::from_path(&dir)?;
        let model = AutoencoderKLWan::new(&cfg, encode_dtype, decode_dtype)?;
        let store = WeightStore::open(&dir)?;
        validate(&store, &model)?;
        Ok(VaeFolder { model, store: Arc::new(store) })
    }

    /// A resident engine for one half's units (VAE weights are small: 0.5 GB in fp32 for Wan2.1).
    pub fn engine(&self, dev: &Arc<Device>, units: &ModelUnits) -> Result<Engine> {
        let plan = Plan::new(units, Mode::Resident, 0, 0)?;
        Engine::new(dev, units.clone(), plan, HostWeights::pinned(Arc::new(ChannelsLastSource(self.store.clone()))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vae::config::VaeConfig;

    #[test]
    fn permutes_cout_cin_k_to_cout_k_cin() {
        // [2, 3, 2] (cout, cin, r) of bytes 0..12 → [2, 2, 3].
        let src: Vec<u8> = (0..12).collect();
        let mut dst = vec![0u8; 12];
        to_channels_last(&src, &[2, 3, 2], 1, &mut dst);
        assert_eq!(dst, [0, 2, 4, 1, 3, 5, 6, 8, 10, 7, 9, 11]);
    }

    /// The fixture's checkpoint with `drop` left out and `extra` added, as a store.
    fn edited(drop: &str, extra: Option<&str>) -> WeightStore {
        use wanrt_runtime::weights::{serialize_safetensors, SafeTensorsFile};
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/vae/vae");
        let store = WeightStore::open(&root).unwrap();
        let names: Vec<String> = store.names().map(String::from).collect();
        let refs: Vec<_> = names.iter().filter(|n| n.as_str() != drop).map(|n| store.info(n).unwrap()).collect();
        let mut entries: Vec<(&str, wanrt_runtime::weights::StorageDType, &[usize], &[u8])> = refs.iter().map(|t| (t.name, t.dtype, t.shape, t.data)).collect();
        let one = [0u8; 4];
        if let Some(e) = extra {
            entries.push((e, wanrt_runtime::weights::StorageDType::from(DType::F32), &[1], &one));
        }
        let bytes = serialize_safetensors(&entries, &[]).unwrap();
        WeightStore::from_files("edited", vec![SafeTensorsFile::from_bytes(bytes, "edited").unwrap()]).unwrap()
    }

    #[test]
    fn missing_and_unknown_keys_are_named() {
        let model = AutoencoderKLWan::new(&VaeConfig::from_path(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/vae/vae")).unwrap(), DType::F32, DType::F32).unwrap();
        let e = validate(&edited("decoder.conv_out.bias", None), &model).unwrap_err().to_string();
        assert!(e.contains("decoder.conv_out.bias") && e.contains("not found"), "{e}");
        let e = validate(&edited("encoder.mid_block.attentions.0.proj.weight", None), &model).unwrap_err().to_string();
        assert!(e.contains("encoder.mid_block.attentions.0.proj.weight"), "{e}");
        let e = validate(&edited("", Some("decoder.extra.weight")), &model).unwrap_err().to_string();
        assert!(e.contains("decoder.extra.weight") && e.contains("unexpected"), "{e}");
        let e = validate(&edited("", Some("vae.stray")), &model).unwrap_err().to_string();
        assert!(e.contains("vae.stray"), "{e}");
        validate(&edited("", None), &model).unwrap();
    }

    #[test]
    fn fixture_folder_validates_and_bad_folders_are_named() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/vae");
        let f = VaeFolder::open(&root, DType::F32, DType::BF16).unwrap();
        assert_eq!(f.model.cfg.base_dim, 4);
        let err = VaeFolder::open(&root.join("missing"), DType::F32, DType::F32).err().unwrap().to_string();
        assert!(err.contains("missing"), "{err}");
    }
}
