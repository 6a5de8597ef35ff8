//! `wan generate`: a prompt (and for I2V an image) in, a video file out, through
//! `wanrt::models::pipeline::Pipeline` (diffusers `WanPipeline` / `WanImageToVideoPipeline` `__call__`).
//! Every check that needs no GPU runs first, the output path included; Ctrl-C sets the same
//! cancellation flag the library API takes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use wanrt::models::pipeline::i2v::fit_size;
use wanrt::models::pipeline::{
    Callbacks, CancelToken, Components, Embeddings, Extras, ModelFolder, Pipeline, PipelineOptions, SchedulerChoice, Stage,
};
use wanrt::models::video::{VideoShape, VideoSink};
use wanrt::models::wan::Precision;
use wanrt::runtime::offload::{fmt_bytes, Budget};
use wanrt::runtime::settings::settings;
use wanrt::{Device, Error, Result};

use super::Offload;

#[derive(Args)]
pub struct GenerateArgs {
    /// A Diffusers model root (model_index.json: Wan2.1-T2V-1.3B/14B-Diffusers, Wan2.1-I2V-14B-480P/720P-Diffusers)
    /// or a hub id (Wan-AI/Wan2.1-T2V-1.3B-Diffusers) found in the Hugging Face cache.
    #[arg(long)]
    pub model: String,
    /// The hub revision (branch, tag or commit) when --model is a hub id.
    #[arg(long)]
    pub revision: Option<String>,
    #[arg(long)]
    pub prompt: String,
    /// Default: the official Wan2.1 negative prompt; "" for diffusers' default.
    #[arg(long)]
    pub negative_prompt: Option<String>,
    /// I2V: the first frame (PNG, JPEG, WebP). Without --height/--width the size follows the image's
    /// aspect within the model's area (the diffusers Wan I2V example).
    #[arg(long)]
    pub image: Option<PathBuf>,
    /// Frames, 4k+1.
    #[arg(long, default_value_t = 81)]
    pub frames: usize,
    /// Default: 480 (1.3B, 480P) or 720 (14B T2V, 720P).
    #[arg(long)]
    pub height: Option<usize>,
    /// Default: 832 (1.3B, 480P) or 1280 (14B T2V, 720P).
    #[arg(long)]
    pub width: Option<usize>,
    #[arg(long, default_value_t = 50)]
    pub steps: usize,
    /// Classifier-free guidance scale (≤ 1 turns guidance off).
    #[arg(long, default_value_t = 5.0, allow_hyphen_values = true)]
    pub guidance: f32,
    /// Flow shift. Default: 3.0 at 480P, 5.0 at 720P.
    #[arg(long, allow_hyphen_values = true)]
    pub shift: Option<f64>,
    /// unipc (default, as the hub repos ship) or euler (FlowMatchEulerDiscreteScheduler).
    #[arg(long, default_value = "unipc")]
    pub scheduler: SchedulerChoice,
    /// The seed of torch.Generator("cpu").manual_seed(N) for the initial noise; default: a fresh one (reported).
    #[arg(long)]
    pub seed: Option<u64>,
    #[arg(long, default_value = "bf16")]
    pub precision: Precision,
    /// The VAE decode's precision: bf16 (tensor-core convs) or fp32 (the diffusers Wan example's
    /// setting, about 4-5x slower on an H100 at 480p-81f). The I2V condition is always encoded in fp32.
    #[arg(long, default_value = "bf16")]
    pub vae_precision: Precision,
    /// Precomputed embeddings (what `wan encode` writes): skips the text (and image) encoder.
    #[arg(long)]
    pub embeds: Option<PathBuf>,
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=240))]
    pub fps: u32,
    /// video.mp4 (H.264 yuv420p), DIR/ (PNG frames) or FILE.safetensors (the raw video tensor).
    #[arg(long)]
    pub out: PathBuf,
    /// No progress bars (the JSON summary is still printed).
    #[arg(long)]
    pub quiet: bool,
    #[command(flatten)]
    pub offload: Offload,
}

/// Opens a `--model` value: a folder, else a hub id in the cache.
pub fn open_folder(model: &str, revision: Option<&str>) -> Result<ModelFolder> {
    ModelFolder::resolve(model, revision, settings().hf_hub_cache.as_deref())
}

fn options(precision: Precision, vae_precision: Precision, offload: &Offload) -> Result<PipelineOptions> {
    if vae_precision == Precision::Fp16 {
        return Err(Error::invalid("--vae-precision: the VAE runs in bf16 or fp32"));
    }
    Ok(PipelineOptions { precision, vae_decode_dtype: vae_precision.compute(), offload: offload.choice(), low_ram: offload.low_ram, ..PipelineOptions::default() })
}

/// One progress bar per stage (denoising shows it/s and ETA), none with --quiet.
struct Bars {
    quiet: bool,
    bars: HashMap<Stage, ProgressBar>,
}

impl Callbacks for Bars {
    fn progress(&mut self, stage: Stage, done: usize, total: usize) {
        if self.quiet {
            return;
        }
        let bar = self.bars.entry(stage).or_insert_with(|| {
            let unit = match stage {
                Stage::Denoise => "steps {per_sec} ETA {eta}",
                Stage::Decode => "latent frames",
                _ => "",
            };
            let bar = ProgressBar::new(total as u64);
            if let Ok(style) = ProgressStyle::with_template(&format!("{{msg:>16}} [{{bar:30}}] {{pos}}/{{len}} {unit} {{elapsed}}")) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message(stage.name());
            bar
        });
        bar.set_length(total as u64);
        bar.set_position(done as u64);
        if done >= total {
            bar.finish();
        }
    }

    fn plan(&mut self, stage: Stage, plan: &str) {
        if !self.quiet {
            eprintln!("{}: {}", stage.name(), plan.replace('\n', "; "));
        }
    }
}

pub fn generate(a: &GenerateArgs) -> Result<()> {
    // The output first: its kind and folder, before anything is read.
    let sink = VideoSink::from_path(&a.out)?;
    sink.check_writable()?;
    let folder = open_folder(&a.model, a.revision.as_deref())?;
    // The kernels compile on the other cores while the weights load (the pipeline opens the device
    // itself; without one it says so when it first needs it).
    if let Ok(dev) = Device::get(0) {
        super::start_preparing(&dev);
    }
    let pipe = Pipeline::load(Components::from_folder(&folder)?, options(a.precision, a.vae_precision, &a.offload)?)?;
    let mut req = pipe.request(a.prompt.clone());
    if let Some(n) = &a.negative_prompt {
        req.negative_prompt = n.clone();
    }
    req.image = a.image.clone();
    req.frames = a.frames;
    req.steps = a.steps;
    req.guidance = a.guidance;
    req.scheduler = a.scheduler;
    req.seed = a.seed;
    req.fps = a.fps;
    if let Some(s) = a.shift {
        req.shift = s;
    }
    let (dh, dw) = (req.height, req.width);
    match (&a.image, a.height, a.width) {
        // The diffusers Wan I2V example: the image's aspect within the model's area, sides multiples of 16.
        (Some(img), None, None) if img.is_file() && pipe.kind() == wanrt::models::pipeline::PipelineKind::I2V => {
            let (w, h) = image::image_dimensions(img).map_err(|e| Error::File { path: img.clone(), msg: format!("cannot read the image size: {e}") })?;
            (req.height, req.width) = fit_size(w, h, dh * dw)?;
            req.fit_image = true;
        }
        (_, h, w) => {
            req.height = h.unwrap_or(dh);
            req.width = w.unwrap_or(dw);
        }
    }
    req.validate(pipe.kind())?;
    let cfg = pipe.transformer_config();
    let embeds = a.embeds.as_deref().map(|p| Embeddings::open(p, cfg.text_dim, cfg.image_dim)).transpose()?;
    let shape = VideoShape { batch: 1, frames: req.frames, height: req.height, width: req.width };
    sink.check_shape(&shape)?;

    let cancel = CancelToken::new();
    let flag = cancel.flag();
    ctrlc::set_handler(move || flag.store(true, std::sync::atomic::Ordering::SeqCst))
        .map_err(|e| Error::invalid(format!("cannot install the Ctrl-C handler: {e}")))?;
    let mut writer = sink.open(shape, req.fps)?;
    let mut bars = Bars { quiet: a.quiet, bars: HashMap::new() };
    let extras = Extras { embeds, latents: None };
    let report = pipe.generate(&req, &extras, &mut writer, &mut bars, &cancel)?;
    if let Some(stage) = report.cancelled {
        drop(writer);
        println!("{}", serde_json::to_string(&report).map_err(|e| Error::invalid(e.to_string()))?);
        let kept = match sink {
            VideoSink::PngDir(_) => format!("the {} frames decoded so far are in {}", report.frames_written, a.out.display()),
            _ => format!("nothing was written to {}", a.out.display()),
        };
        return Err(Error::invalid(format!("cancelled during {}; {kept}", stage.name())));
    }
    let frames = writer.finish()?;
    if !a.quiet {
        eprintln!("wrote {} ({frames} frames, {}x{}, {} fps, seed {}), peak VRAM {}", a.out.display(), req.width, req.height, req.fps, report.seed, fmt_bytes(report.peak_vram_bytes));
    }
    println!("{}", serde_json::to_string(&report).map_err(|e| Error::invalid(e.to_string()))?);
    Ok(())
}

/// `wan plan --model ROOT` on a pipeline root: the plan of every stage of a default request at the
/// given size (the same plans `wan generate` runs under).
pub fn plan_pipeline(root: &Path, frames: usize, height: usize, width: usize, precision: Precision, offload: &Offload) -> Result<()> {
    let folder = ModelFolder::open(root)?;
    let pipe = Pipeline::load(Components::from_folder(&folder)?, options(precision, Precision::Bf16, offload)?)?;
    let budget = match offload.vram {
        Budget::Bytes(b) => b,
        Budget::Auto => return Err(Error::invalid("the pipeline's stage plans need --vram SIZE (auto needs the device's free memory)")),
    };
    let mut req = pipe.request("plan");
    (req.frames, req.height, req.width) = (frames, height, width);
    if pipe.kind() == wanrt::models::pipeline::PipelineKind::I2V {
        // Planning needs no real image; the image only has to pass the request's checks.
        req.image = Some(root.join("model_index.json"));
    }
    let plans = pipe.plan(&req, budget, None)?;
    println!("pipeline ({}, {}): every stage under {}", folder.name(), pipe.kind().class_name(), fmt_bytes(budget));
    for (stage, text) in &plans.summaries {
        println!("  {}: {}", stage.name(), text.replace('\n', "\n    "));
    }
    Ok(())
}
