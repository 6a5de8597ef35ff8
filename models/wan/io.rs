//! Reading `wan forward` inputs from safetensors and writing its output.
//!
//! The inputs are checked against the model's config on the CPU when the file is opened
//! ([`InputFile::open`]): names, dtypes, ranks and every dimension diffusers'
//! `WanTransformer3DModel.forward` relies on, so a wrong file is reported before the device is opened
//! or a weight is read.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::config::{Precision, WanConfig};
use super::transformer::Inputs;
use wanrt_runtime::weights::{write_safetensors, SafeTensorsFile, StorageDType, TensorInfo, WeightStore};
use wanrt_runtime::{Device, Error, Result, Tensor};

/// Text tokens the UMT5 encoder gives (diffusers pads to `max_sequence_length=512`); the planner's
/// activation estimate assumes at most this many.
pub const TEXT_TOKENS: usize = 512;
/// Image tokens of the CLIP ViT-H/14 image encoder (256 patches + class token), I2V.
pub const IMAGE_TOKENS: usize = 257;

const HIDDEN: &str = "hidden_states";
const TIMESTEP: &str = "timestep";
const TEXT: &str = "encoder_hidden_states";
const IMAGE: &str = "encoder_hidden_states_image";

/// One input converted on the host: (name, shape, bytes in the compute dtype).
pub type HostTensor = (&'static str, Vec<usize>, Vec<u8>);

/// A `--inputs` file whose tensors match the model: `hidden_states` (B, in_channels, T, H, W) with
/// T ≥ 1 and H, W divisible by the patch, `timestep` (B,), `encoder_hidden_states` (B, L, text_dim)
/// and, exactly for I2V models, `encoder_hidden_states_image` (B, ≤257, image_dim).
#[derive(Debug)]
pub struct InputFile {
    store: WeightStore,
    timestep: Vec<f32>,
    batch: usize,
    latent: (usize, usize, usize),
}

impl InputFile {
    /// Opens and checks `path` against `cfg`; every error names the file and the tensor.
    pub fn open(path: &Path, cfg: &WanConfig) -> Result<InputFile> {
        InputFile::check(SafeTensorsFile::open(path)?, cfg)
    }

    /// [`InputFile::open`] on a whole file held in memory; `label` names it in errors.
    pub fn from_bytes(bytes: Vec<u8>, label: impl Into<PathBuf>, cfg: &WanConfig) -> Result<InputFile> {
        InputFile::check(SafeTensorsFile::from_bytes(bytes, label)?, cfg)
    }

    fn check(file: SafeTensorsFile, cfg: &WanConfig) -> Result<InputFile> {
        let path = file.path().to_path_buf();
        let fail = |tensor: &str, msg: String| Error::Tensor { path: path.clone(), tensor: tensor.into(), msg };
        let known = [HIDDEN, TIMESTEP, TEXT, IMAGE];
        if let Some(t) = file.tensors().iter().find(|t| !known.contains(&t.name.as_str())) {
            return Err(fail(&t.name, format!("unexpected tensor; an inputs file holds {}", known.join(", "))));
        }
        let get = |name: &str, shape: &str| file.info(name).ok_or_else(|| fail(name, format!("missing (shape {shape})")));
        let float = |t: &TensorInfo| {
            if t.dtype.is_float() {
                Ok(())
            } else {
                Err(fail(&t.name, format!("stored as {}, expected a float dtype (F32, BF16, F16 or F64)", t.dtype)))
            }
        };
        let c = cfg.in_channels;
        let hidden = get(HIDDEN, &format!("[B, {c}, T, H, W]"))?;
        float(hidden)?;
        let (b, latent) = match hidden.shape.as_slice() {
            &[b, ch, t, h, w] if ch == c && b > 0 && t > 0 && h > 0 && w > 0 => (b, (t, h, w)),
            s => {
                return Err(fail(HIDDEN, format!("shape {s:?}, expected [B, {c}, T, H, W] with in_channels {c} and B, T, H, W ≥ 1")));
            }
        };
        cfg.grid(latent.0, latent.1, latent.2).map_err(|e| fail(HIDDEN, e.to_string()))?;
        let timestep = timesteps(&file, get(TIMESTEP, "[B]")?, b)?;
        let text = get(TEXT, &format!("[{b}, L, {}]", cfg.text_dim))?;
        float(text)?;
        // diffusers splits image and text context at L - 512 in I2V, so I2V text is exactly 512 tokens.
        let text_ok = |l: usize| if cfg.is_i2v() { l == TEXT_TOKENS } else { (1..=TEXT_TOKENS).contains(&l) };
        match text.shape.as_slice() {
            &[tb, l, d] if tb == b && d == cfg.text_dim && text_ok(l) => {}
            s => {
                let l = if cfg.is_i2v() { format!("{TEXT_TOKENS}") } else { format!("L ≤ {TEXT_TOKENS}") };
                return Err(fail(TEXT, format!("shape {s:?}, expected [{b}, {l}, {}] (the batch of hidden_states, text_dim {})", cfg.text_dim, cfg.text_dim)));
            }
        }
        match (file.info(IMAGE), cfg.image_dim) {
            (Some(img), Some(idim)) => {
                float(img)?;
                match img.shape.as_slice() {
                    &[ib, l, d] if ib == b && d == idim && (1..=IMAGE_TOKENS).contains(&l) => {}
                    s => {
                        return Err(fail(IMAGE, format!("shape {s:?}, expected [{b}, {IMAGE_TOKENS}, {idim}] (the batch of hidden_states, image_dim {idim})")));
                    }
                }
            }
            (None, Some(idim)) => return Err(fail(IMAGE, format!("missing: this I2V model needs the image context [{b}, {IMAGE_TOKENS}, {idim}]"))),
            (Some(_), None) => return Err(fail(IMAGE, "given, but this is a T2V model (its config has no image_dim)".into())),
            (None, None) => {}
        }
        let store = WeightStore::from_files(path.clone(), vec![file])?;
        Ok(InputFile { store, timestep, batch: b, latent })
    }

    /// B, the batch size.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// The latent (T, H, W) of `hidden_states`.
    pub fn latent(&self) -> (usize, usize, usize) {
        self.latent
    }

    pub fn timestep(&self) -> &[f32] {
        &self.timestep
    }

    /// The float tensors present (hidden states, text and image context) converted to `precision`'s
    /// compute dtype on the host: (name, shape, bytes).
    pub fn host_tensors(&self, precision: Precision) -> Result<Vec<HostTensor>> {
        [HIDDEN, TEXT, IMAGE]
            .into_iter()
            .filter(|n| self.store.contains(n))
            .map(|n| {
                let shape = self.store.info(n)?.shape.to_vec();
                let bytes = self.store.load(n, &shape, precision.compute())?;
                Ok((n, shape, bytes))
            })
            .collect()
    }

    /// The inputs on the device in `precision`'s compute dtype.
    pub fn upload(&self, dev: &Arc<Device>, precision: Precision) -> Result<Inputs> {
        let (mut hidden, mut text, mut image) = (None, None, None);
        for (name, shape, bytes) in self.host_tensors(precision)? {
            let t = Some(Tensor::from_bytes(dev, &shape, precision.compute(), &bytes)?);
            match name {
                HIDDEN => hidden = t,
                TEXT => text = t,
                _ => image = t,
            }
        }
        let missing = |n: &str| Error::Tensor { path: self.store.source().to_path_buf(), tensor: n.into(), msg: "missing".into() };
        Ok(Inputs {
            hidden_states: hidden.ok_or_else(|| missing(HIDDEN))?,
            timestep: self.timestep.clone(),
            encoder_hidden_states: text.ok_or_else(|| missing(TEXT))?,
            encoder_hidden_states_image: image,
        })
    }
}

/// `timestep`: shape [B] (or a scalar for B = 1), any integer or float dtype, as the f32 values the
/// sinusoid consumes; finite.
fn timesteps(file: &SafeTensorsFile, info: &TensorInfo, batch: usize) -> Result<Vec<f32>> {
    let fail = |msg: String| Error::Tensor { path: file.path().to_path_buf(), tensor: TIMESTEP.into(), msg };
    let n = match info.shape.as_slice() {
        [] => 1,
        &[n] => n,
        s => return Err(fail(format!("shape {s:?}, expected [B]"))),
    };
    if n != batch {
        return Err(fail(format!("{n} timesteps for a batch of {batch} (hidden_states' first dimension)")));
    }
    let bytes = file.bytes(TIMESTEP)?;
    fn le<const N: usize>(c: &[u8]) -> [u8; N] {
        let mut a = [0u8; N];
        a.copy_from_slice(c);
        a
    }
    let vals: Vec<f32> = match info.dtype {
        StorageDType::I64 => bytes.chunks_exact(8).map(|c| i64::from_le_bytes(le(c)) as f32).collect(),
        StorageDType::I32 => bytes.chunks_exact(4).map(|c| i32::from_le_bytes(le(c)) as f32).collect(),
        StorageDType::F32 => bytes.chunks_exact(4).map(|c| f32::from_le_bytes(le(c))).collect(),
        StorageDType::F64 => bytes.chunks_exact(8).map(|c| f64::from_le_bytes(le(c)) as f32).collect(),
        other => return Err(fail(format!("stored as {other}, expected I64, I32, F32 or F64"))),
    };
    if let Some(v) = vals.iter().find(|v| !v.is_finite()) {
        return Err(fail(format!("value {v} is not finite")));
    }
    Ok(vals)
}

/// Loads `hidden_states`, `timestep`, `encoder_hidden_states` and (I2V) `encoder_hidden_states_image`,
/// checked against `cfg` first.
pub fn read_inputs(dev: &Arc<Device>, path: &Path, cfg: &WanConfig, precision: Precision) -> Result<Inputs> {
    InputFile::open(path, cfg)?.upload(dev, precision)
}

/// Writes `sample` in its compute dtype.
pub fn write_sample(path: &Path, sample: &Tensor) -> Result<()> {
    let bytes = sample.to_bytes()?;
    write_safetensors(path, &[("sample", StorageDType::from(sample.dtype()), sample.shape(), &bytes)], &[("producer", "wanrt")])
}
