//! Reading `wan forward` inputs from safetensors and writing its output.

use std::path::Path;
use std::sync::Arc;

use super::config::{Precision, WanConfig};
use super::transformer::Inputs;
use wanrt_runtime::weights::{write_safetensors, SafeTensorsFile, StorageDType, WeightStore};
use wanrt_runtime::{Device, Error, Result, Tensor};

fn tensor(dev: &Arc<Device>, store: &WeightStore, name: &str, precision: Precision) -> Result<Tensor> {
    let info = store.info(name)?;
    let shape = info.shape.to_vec();
    let bytes = store.load(name, &shape, precision.compute())?;
    Tensor::from_bytes(dev, &shape, precision.compute(), &bytes)
}

/// Timesteps stored as any integer or float dtype, as f32 values (what the sinusoid consumes).
fn timesteps(file: &SafeTensorsFile) -> Result<Vec<f32>> {
    let info = file.info("timestep").ok_or_else(|| Error::Tensor {
        path: file.path().to_path_buf(),
        tensor: "timestep".into(),
        msg: "missing (shape [B], int64 or float)".into(),
    })?;
    let bytes = file.bytes("timestep")?;
    let vals: Vec<f32> = match info.dtype {
        StorageDType::I64 => bytes.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f32).collect(),
        StorageDType::I32 => bytes.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().unwrap()) as f32).collect(),
        StorageDType::F32 => bytes.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect(),
        StorageDType::F64 => bytes.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap()) as f32).collect(),
        other => {
            return Err(Error::Tensor { path: file.path().to_path_buf(), tensor: "timestep".into(), msg: format!("dtype {other} unsupported") })
        }
    };
    if info.shape.len() > 1 {
        return Err(Error::Tensor { path: file.path().to_path_buf(), tensor: "timestep".into(), msg: format!("shape {:?}, expected [B]", info.shape) });
    }
    Ok(vals)
}

/// Loads `hidden_states`, `timestep`, `encoder_hidden_states` and (I2V) `encoder_hidden_states_image`.
pub fn read_inputs(dev: &Arc<Device>, path: &Path, cfg: &WanConfig, precision: Precision) -> Result<Inputs> {
    let file = SafeTensorsFile::open(path)?;
    let timestep = timesteps(&file)?;
    let store = WeightStore::from_files(path, vec![file])?;
    let image = if cfg.is_i2v() { Some(tensor(dev, &store, "encoder_hidden_states_image", precision)?) } else { None };
    Ok(Inputs {
        hidden_states: tensor(dev, &store, "hidden_states", precision)?,
        timestep,
        encoder_hidden_states: tensor(dev, &store, "encoder_hidden_states", precision)?,
        encoder_hidden_states_image: image,
    })
}

/// Writes `sample` in its compute dtype.
pub fn write_sample(path: &Path, sample: &Tensor) -> Result<()> {
    let bytes = sample.to_bytes()?;
    write_safetensors(path, &[("sample", StorageDType::from(sample.dtype()), sample.shape(), &bytes)], &[("producer", "wanrt")])
}
