//! The component folders a pipeline loads: those of a Diffusers model root ([`ModelFolder`]), or
//! folders given one by one (the test fixtures share their encoders and VAE between pipelines).

use std::path::PathBuf;

use wanrt_runtime::{Error, Result};

use super::folder::{ModelFolder, PipelineKind};

#[derive(Clone, Debug)]
pub struct Components {
    /// What the user calls the model (hub id or folder name): its tier comes from it.
    pub name: String,
    pub kind: PipelineKind,
    pub transformer: PathBuf,
    pub text_encoder: PathBuf,
    pub tokenizer: PathBuf,
    pub vae: PathBuf,
    pub scheduler: PathBuf,
    /// I2V only.
    pub image_encoder: Option<PathBuf>,
    /// I2V only.
    pub image_processor: Option<PathBuf>,
}

impl Components {
    pub fn from_folder(f: &ModelFolder) -> Result<Components> {
        let c = |n: &str| f.component(n).map(PathBuf::from);
        let i2v = f.kind() == PipelineKind::I2V;
        Ok(Components {
            name: f.name(),
            kind: f.kind(),
            transformer: c("transformer")?,
            text_encoder: c("text_encoder")?,
            tokenizer: c("tokenizer")?,
            vae: c("vae")?,
            scheduler: c("scheduler")?,
            image_encoder: if i2v { Some(c("image_encoder")?) } else { None },
            image_processor: if i2v { Some(c("image_processor")?) } else { None },
        })
    }

    /// The I2V folders, or an error naming the missing one.
    pub fn image_folders(&self) -> Result<(PathBuf, PathBuf)> {
        match (&self.image_encoder, &self.image_processor) {
            (Some(e), Some(p)) => Ok((e.clone(), p.clone())),
            (None, _) => Err(Error::invalid(format!("{}: an image-to-video pipeline needs the image_encoder component", self.name))),
            (_, None) => Err(Error::invalid(format!("{}: an image-to-video pipeline needs the image_processor component", self.name))),
        }
    }
}
