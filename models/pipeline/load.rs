//! [`Pipeline`]: every component of a Wan2.1 model declared, its checkpoint checked and mapped, once
//! (no device work); [`Pipeline::generate`](crate::pipeline::Pipeline::generate) then runs a request
//! as diffusers' `WanPipeline` / `WanImageToVideoPipeline` `__call__` does, any number of times.
//!
//! Precision follows the diffusers Wan docs: the text encoder and the transformer in the chosen
//! precision, the image encoder and the VAE encoder in fp32; the VAE decoder in bf16 by default
//! (`vae_decode_dtype`: fp32 is the diffusers example's setting, about 4-5x slower on an H100 at 480p-81f).

use std::path::Path;
use std::sync::Arc;

use wanrt_runtime::weights::WeightStore;
use wanrt_runtime::{DType, Error, Result};

use super::components::Components;
use super::folder::PipelineKind;
use super::i2v::MASK_CHANNELS;
use super::request::{GenerateRequest, ModelDefaults, Tier};
use crate::checkpoint::validate;
use crate::clip::preprocess::ClipImageProcessor;
use crate::clip::vision::is_unused_key as clip_unused;
use crate::clip::{ClipVisionConfig, ClipVisionModel};
use crate::schedulers::SchedulerConfig;
use crate::umt5::encoder::{embedding_key, is_unused_key as umt5_unused};
use crate::umt5::tokenizer::UmtTokenizer;
use crate::umt5::{Umt5Config, Umt5EncoderModel};
use crate::vae::VaeFolder;
use crate::wan::run::OffloadChoice;
use crate::wan::{Precision, WanConfig, WanTransformer3DModel};

/// How classifier-free guidance runs its two predictions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CfgBatch {
    /// One batch-2 forward when the budget holds it without streaming more weights per step than
    /// two batch-1 forwards would, else two.
    #[default]
    Auto,
    /// Always one batch-2 forward (an error if the budget cannot hold it).
    Batched,
    /// Always two batch-1 forwards, as diffusers runs them.
    Split,
}

/// How a pipeline runs: precisions, where weights live, the device budget every stage shares.
#[derive(Clone, Copy, Debug)]
pub struct PipelineOptions {
    /// The text encoder's and the transformer's precision.
    pub precision: Precision,
    /// The VAE encoder's dtype (I2V condition): fp32, as the diffusers Wan docs load the VAE (a bf16
    /// encode drifts over the causal rollout).
    pub vae_encode_dtype: DType,
    /// The VAE decoder's dtype: bf16 by default (tensor-core convs, about 12x faster than fp32 here;
    /// within bf16 rounding of the fp32 decode); fp32 gives the diffusers example's exact setting.
    pub vae_decode_dtype: DType,
    /// The transformer's placement and the VRAM budget of every stage (encoders and VAE take the
    /// fastest plan that fits the same budget).
    pub offload: OffloadChoice,
    /// Stream weights from the mmap'd files through a small pinned ring instead of pinning them.
    pub low_ram: bool,
    pub cfg_batch: CfgBatch,
}

impl Default for PipelineOptions {
    fn default() -> Self {
        PipelineOptions { precision: Precision::Bf16, vae_encode_dtype: DType::F32, vae_decode_dtype: DType::BF16, offload: OffloadChoice::default(), low_ram: false, cfg_batch: CfgBatch::Auto }
    }
}

pub(crate) struct ClipParts {
    pub model: ClipVisionModel,
    pub store: Arc<WeightStore>,
    pub processor: ClipImageProcessor,
}

/// A loaded (declared, checked, mapped) Wan2.1 pipeline.
pub struct Pipeline {
    pub components: Components,
    pub defaults: ModelDefaults,
    pub options: PipelineOptions,
    pub(crate) tokenizer: UmtTokenizer,
    pub(crate) umt5: Umt5EncoderModel,
    pub(crate) umt5_store: Arc<WeightStore>,
    pub(crate) clip: Option<ClipParts>,
    pub(crate) vae: VaeFolder,
    pub(crate) transformer: WanTransformer3DModel,
    pub(crate) transformer_store: Arc<WeightStore>,
    pub(crate) scheduler: SchedulerConfig,
}

fn mismatch(what: String) -> Error {
    Error::invalid(format!("the components do not fit together: {what}"))
}

impl Pipeline {
    /// Reads every config, declares every model and checks every checkpoint tensor (names, shapes,
    /// dtypes) and the components against each other. Needs no GPU.
    pub fn load(components: Components, options: PipelineOptions) -> Result<Pipeline> {
        let c = &components;
        let cfg = WanConfig::from_path(&c.transformer)?;
        if cfg.is_i2v() != (c.kind == PipelineKind::I2V) {
            return Err(mismatch(format!("{} is a {} pipeline but transformer/config.json is a {} transformer", c.name, c.kind.class_name(), if cfg.is_i2v() { "I2V" } else { "T2V" })));
        }
        let transformer = WanTransformer3DModel::new(&cfg, options.precision)?;
        let transformer_store = Arc::new(WeightStore::open(&c.transformer)?);
        crate::wan::load::validate(&transformer_store, transformer.units())?;

        let tokenizer = UmtTokenizer::from_folder(&c.tokenizer)?;
        let tcfg = Umt5Config::from_path(&c.text_encoder)?;
        tokenizer.check_vocab(tcfg.vocab_size)?;
        let umt5 = Umt5EncoderModel::new(&tcfg, options.precision)?;
        let umt5_store = Arc::new(WeightStore::open(&c.text_encoder)?);
        validate(&umt5_store, umt5.units(), &[(embedding_key(&umt5_store), &[tcfg.vocab_size, tcfg.d_model])], umt5_unused, "UMT5EncoderModel folder (text_encoder/)")?;
        if tcfg.d_model != cfg.text_dim {
            return Err(mismatch(format!("the text encoder's d_model {} is not the transformer's text_dim {}", tcfg.d_model, cfg.text_dim)));
        }

        let vae = VaeFolder::open(&c.vae, options.vae_encode_dtype, options.vae_decode_dtype)?;
        let z = vae.model.cfg.z_dim;
        let want_in = if cfg.is_i2v() { 2 * z + MASK_CHANNELS } else { z };
        if cfg.out_channels != z || cfg.in_channels != want_in {
            return Err(mismatch(format!(
                "the transformer takes {} channels and gives {}, the VAE's z_dim {z} needs {want_in} and {z}",
                cfg.in_channels, cfg.out_channels
            )));
        }
        if vae.model.cfg.scale_factor_temporal != MASK_CHANNELS || vae.model.cfg.scale_factor_spatial * cfg.patch_size[1] != 16 {
            return Err(mismatch("the VAE's scale factors are not Wan2.1's (4 in time, 8 in space)".into()));
        }
        let scheduler = SchedulerConfig::load(&c.scheduler.join("scheduler_config.json"))?;

        let clip = if c.kind == PipelineKind::I2V {
            let (enc, proc) = c.image_folders()?;
            let ccfg = ClipVisionConfig::from_path(&enc)?;
            let model = ClipVisionModel::new(&ccfg, Precision::Fp32)?;
            let store = Arc::new(WeightStore::open(&enc)?);
            validate(&store, model.units(), &[], |k| clip_unused(&ccfg, k), "CLIPVisionModel folder (image_encoder/)")?;
            let processor = ClipImageProcessor::from_folder(&proc)?;
            let [ch, h, w] = processor.output_shape(0, 0);
            if (ch, h, w) != (ccfg.num_channels, ccfg.image_size, ccfg.image_size) {
                return Err(mismatch(format!("image_processor crops to {ch}x{h}x{w} but the image encoder takes {}x{s}x{s}", ccfg.num_channels, s = ccfg.image_size)));
            }
            if cfg.image_dim != Some(ccfg.hidden_size) {
                return Err(mismatch(format!("the image encoder's hidden size {} is not the transformer's image_dim {:?}", ccfg.hidden_size, cfg.image_dim)));
            }
            Some(ClipParts { model, store, processor })
        } else {
            None
        };
        let defaults = ModelDefaults { kind: c.kind, tier: Tier::of(&c.name, cfg.num_layers) };
        Ok(Pipeline { components, defaults, options, tokenizer, umt5, umt5_store, clip, vae, transformer, transformer_store, scheduler })
    }

    /// [`Pipeline::load`] on a Diffusers model root.
    pub fn open(root: &Path, options: PipelineOptions) -> Result<Pipeline> {
        let folder = super::folder::ModelFolder::open(root)?;
        Pipeline::load(Components::from_folder(&folder)?, options)
    }

    pub fn kind(&self) -> PipelineKind {
        self.components.kind
    }

    pub fn transformer_config(&self) -> &WanConfig {
        &self.transformer.cfg
    }

    /// The model folder's scheduler config (`scheduler/scheduler_config.json`).
    pub fn scheduler_config(&self) -> &SchedulerConfig {
        &self.scheduler
    }

    /// A request with this model's defaults.
    pub fn request(&self, prompt: impl Into<String>) -> GenerateRequest {
        GenerateRequest::new(prompt, self.defaults)
    }

    /// Checks a request against this model, beyond [`GenerateRequest::validate`]: the VAE and the
    /// transformer take its size. Needs no GPU.
    pub fn check(&self, req: &GenerateRequest) -> Result<()> {
        req.validate(self.kind())?;
        self.vae.model.latent_dims(req.frames, req.height, req.width)?;
        let [_, _, t, h, w] = req.latent_shape();
        self.transformer.cfg.grid(t, h, w)?;
        Ok(())
    }
}
