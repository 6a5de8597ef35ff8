//! A saved video tensor for `wan save-video`: (B, 3, F, H, W) or (3, F, H, W), floats in [-1, 1], as
//! diffusers' VAE returns it (`output_type="pt"`, or `latent` decoded by hand) or `wan generate` writes it.

use std::path::Path;

use wanrt_runtime::tensor::bytes_to_f32;
use wanrt_runtime::weights::{SafeTensorsFile, StorageDType};
use wanrt_runtime::{DType, Error, Result};

use super::frames::VideoShape;

/// A video tensor in a safetensors file whose header has been checked (key, rank, channels, dtype).
pub struct VideoFile {
    file: SafeTensorsFile,
    key: String,
    dtype: DType,
    pub shape: VideoShape,
}

impl VideoFile {
    /// Opens `path` and checks the header of `key`; no values are read yet.
    pub fn open(path: &Path, key: &str) -> Result<VideoFile> {
        let file = SafeTensorsFile::open(path)?;
        let Some(info) = file.info(key) else {
            let names: Vec<&str> = file.names().take(8).collect();
            return Err(Error::Tensor {
                path: path.to_path_buf(),
                tensor: key.to_string(),
                msg: format!("not in this file (it holds: {}); choose one with --key", if names.is_empty() { "nothing".into() } else { names.join(", ") }),
            });
        };
        let dtype = match info.dtype {
            StorageDType::F32 => DType::F32,
            StorageDType::BF16 => DType::BF16,
            StorageDType::F16 => DType::F16,
            d => {
                return Err(Error::Tensor { path: path.to_path_buf(), tensor: key.into(), msg: format!("dtype {} where a video is f32, bf16 or f16", d.name()) })
            }
        };
        let shape = VideoShape::from_dims(&info.shape, &format!("{}: tensor {key}", path.display()))?;
        Ok(VideoFile { file, key: key.to_string(), dtype, shape })
    }

    /// The values as f32, (B, 3, F, H, W) row-major; a NaN or infinity is an error naming its place.
    pub fn read(&self) -> Result<Vec<f32>> {
        let values = bytes_to_f32(self.file.bytes(&self.key)?, self.dtype);
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            let s = self.shape;
            let (plane, per_c) = (s.height * s.width, s.frames * s.height * s.width);
            let (b, c, f) = (i / (3 * per_c), i / per_c % 3, i / plane % s.frames);
            return Err(Error::Tensor {
                path: self.file.path().to_path_buf(),
                tensor: self.key.clone(),
                msg: format!("value {} at video {b}, channel {c}, frame {f} is not finite", values[i]),
            });
        }
        Ok(values)
    }
}
