//! `wan`: the Wan2.1 command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use wanrt::models::wan::io::{write_sample, InputFile};
use wanrt::models::wan::load::{validate, StoreSource, SynthSource};
use wanrt::models::wan::run::{describe, latent_size, plan_latents, plan_run, round_to, BenchRecord, ModeChoice, OffloadChoice, PlannedRun};
use wanrt::models::wan::{Inputs, WanTransformer3DModel};
use wanrt::runtime::offload::{fmt_bytes, Budget, Engine, HostWeights, WeightSource};
use wanrt::runtime::registry::{self, Preparation};
use wanrt::models::wan::{Precision, WanConfig};
use wanrt::runtime::ops;
use wanrt::runtime::weights::WeightStore;
use wanrt::{Device, Error, Result, Tensor};

mod bench_pipeline;
mod encoders;
mod generate;
mod vae;
mod vae_bench;
mod video;

#[derive(Parser)]
#[command(name = "wan", version, about = "Wan2.1 on the wanrt CUDA runtime")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

/// Where the weights live during the forward. Each value is parsed by the library's `FromStr`
/// (a bad one is a usage error, exit code 2, naming the flag).
#[derive(Args, Clone)]
struct Offload {
    /// resident, block[:N] (N blocks per streamed group), leaf, or auto (the planner's choice for --vram).
    #[arg(long, default_value = "auto")]
    offload: ModeChoice,
    /// Upload each group on the compute stream just before use (no copy stream, no prefetch).
    #[arg(long)]
    sync: bool,
    /// Device slots for streamed groups (2 to 64); alone it also keeps leaf and block streaming on K equal slots.
    #[arg(long)]
    slots: Option<usize>,
    /// Pack streamed groups back to back in one device ring (the size of the slots, or the least that
    /// lets one group be held while the next uploads) so small units prefetch further ahead. Leaf and
    /// block streaming take the ring by default when it fits the budget; this forces it for every mode.
    #[arg(long)]
    ring: bool,
    /// VRAM budget for weights and activations: a size (8GiB, 7.5G, 512MiB) or auto (free memory minus a margin).
    #[arg(long, default_value = "auto", allow_hyphen_values = true)]
    vram: Budget,
    /// Stream from the safetensors mmap through a small pinned ring instead of pinning every weight (disk-bound).
    #[arg(long)]
    low_ram: bool,
}

impl Offload {
    fn choice(&self) -> OffloadChoice {
        OffloadChoice { mode: self.offload, sync: self.sync, slots: self.slots, ring: self.ring, budget: self.vram }
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Validates a model folder (every key, shape and dtype) and prints the offload plan; needs no GPU.
    Plan {
        /// A Diffusers `transformer/` folder (or a model root containing one).
        #[arg(long, required_unless_present = "preset", conflicts_with = "preset")]
        model: Option<PathBuf>,
        /// Plan a published model without its files: wan2.1-t2v-1.3b, wan2.1-t2v-14b, wan2.1-i2v-14b-480p, wan2.1-i2v-14b-720p.
        #[arg(long)]
        preset: Option<String>,
        #[arg(long, default_value_t = 81)]
        frames: usize,
        #[arg(long, default_value_t = 480)]
        height: usize,
        #[arg(long, default_value_t = 832)]
        width: usize,
        #[arg(long, default_value = "bf16")]
        precision: Precision,
        /// Also list every group of the plan (hundreds of lines for 14B).
        #[arg(long)]
        verbose: bool,
        #[command(flatten)]
        offload: Offload,
    },
    /// One transformer forward on a Diffusers model folder.
    Forward {
        /// A Diffusers `transformer/` folder, or a model root containing one.
        #[arg(long)]
        model: PathBuf,
        /// safetensors with hidden_states, timestep, encoder_hidden_states [, encoder_hidden_states_image].
        #[arg(long)]
        inputs: PathBuf,
        /// Where to write `sample`.
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value = "bf16")]
        precision: Precision,
        #[command(flatten)]
        offload: Offload,
    },
    /// Times transformer forwards with synthesized weights at a published model's shapes.
    Bench {
        /// wan2.1-t2v-1.3b, wan2.1-t2v-14b, wan2.1-i2v-14b-480p or wan2.1-i2v-14b-720p.
        #[arg(long)]
        preset: String,
        /// Video frames (4k+1).
        #[arg(long, default_value_t = 81)]
        frames: usize,
        /// Video height (a multiple of 16); 480 whatever the preset, so give 720 for a 720p preset.
        #[arg(long, default_value_t = 480)]
        height: usize,
        /// Video width (a multiple of 16); 832 whatever the preset, so give 1280 for a 720p preset.
        #[arg(long, default_value_t = 832)]
        width: usize,
        #[arg(long, default_value = "bf16")]
        precision: Precision,
        /// Timed forwards (after one warm-up), at least 1.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
        iters: u32,
        /// Time the whole pipeline instead of one forward: text encode, --steps CFG steps, VAE decode;
        /// for the I2V presets also the CLIP image encode and the VAE encode of the condition. The size
        /// is not taken from the preset: give --height 720 --width 1280 for wan2.1-i2v-14b-720p.
        #[arg(long)]
        pipeline: bool,
        /// With --pipeline: denoising steps timed (the JSON extrapolates to 50).
        #[arg(long, default_value_t = 2)]
        steps: usize,
        /// With --pipeline: the VAE decode's precision (bf16 as `wan generate` decodes by default, or fp32).
        #[arg(long, default_value = "bf16")]
        vae_precision: Precision,
        #[command(flatten)]
        offload: Offload,
    },
    /// Times an encoder with synthesized weights at its published shapes (UMT5-XXL: prompts padded
    /// to --tokens; CLIP ViT-H/14: 224×224 images).
    BenchEncoder {
        #[arg(long, value_enum)]
        encoder: encoders::EncoderChoice,
        /// Prompts or images per encode.
        #[arg(long, default_value_t = 1)]
        batch: usize,
        /// UMT5: positions per prompt (the pipeline pads to 512).
        #[arg(long, default_value_t = 512)]
        tokens: usize,
        /// UMT5: real tokens per prompt (EOS included), the rest padding.
        #[arg(long, default_value_t = 20)]
        prompt_tokens: usize,
        #[arg(long, default_value = "bf16")]
        precision: Precision,
        /// Timed encodes (after one warm-up).
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
        iters: u32,
        #[command(flatten)]
        offload: Offload,
    },
    /// Times the Wan2.1 VAE with synthesized weights at its published shapes: decode or encode of one
    /// video size (untiled, or tiled to fit --vram / --tile); one JSON line with the time, the
    /// peak VRAM and, for decode, the decoder's FLOPs against the GEMM rate measured in the same run.
    BenchVae {
        #[arg(long, value_enum, default_value = "decode")]
        op: vae_bench::VaeOp,
        #[arg(long, default_value_t = 81)]
        frames: usize,
        #[arg(long, default_value_t = 480)]
        height: usize,
        #[arg(long, default_value_t = 832)]
        width: usize,
        #[arg(long, default_value = "bf16")]
        precision: Precision,
        /// Device memory for the run: a size, or auto (untiled, any size that fits the card).
        #[arg(long, default_value = "auto", allow_hyphen_values = true)]
        vram: Budget,
        /// Spatial tiles of at most this many pixels a side (a multiple of 8).
        #[arg(long)]
        tile: Option<usize>,
        /// Timed runs (after one warm-up); the best is reported, all in s_each.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
        iters: u32,
        /// The decoder's tail (decode) or the encoder's frames part (encode) frame by frame (`frames`:
        /// least memory), on whole 4-frame chunks (`chunks`: about 8% faster) or as the planner picks
        /// for `--vram` (`auto`: chunks where they fit). The output is the same.
        #[arg(long, value_enum, default_value = "auto")]
        layout: vae_bench::VaeLayout,
    },
    /// Encodes a prompt (and a negative prompt) with UMT5 and an image with CLIP, as the Wan
    /// pipelines do, into a safetensors file with diffusers' names (prompt_embeds,
    /// negative_prompt_embeds, image_embeds) that `wan forward` and diffusers both take.
    Encode {
        /// A Diffusers model root: tokenizer/, text_encoder/ (and image_encoder/, image_processor/ for --image).
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        prompt: String,
        /// Also encode this negative prompt (as the pipeline's classifier-free guidance does).
        #[arg(long)]
        negative_prompt: Option<String>,
        /// An image (PNG, JPEG, WebP) for I2V: its CLIP embedding.
        #[arg(long)]
        image: Option<PathBuf>,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value = "bf16")]
        precision: Precision,
        #[command(flatten)]
        offload: Offload,
    },
    /// Writes a saved video tensor ((B,) 3, F, H, W in [-1, 1], as diffusers' VAE returns it) as an
    /// H.264 MP4, PNG frames or safetensors, on the CPU.
    SaveVideo {
        /// A safetensors file holding the video.
        #[arg(long = "in")]
        input: PathBuf,
        /// The tensor's name in the file.
        #[arg(long, default_value = "video")]
        key: String,
        /// video.mp4 (H.264, yuv420p), DIR/ (frame_00000.png, ...) or FILE.safetensors.
        #[arg(long)]
        out: PathBuf,
        /// Frames per second of the MP4 (Wan2.1 generates at 16).
        #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=240))]
        fps: u32,
    },
    /// A prompt (and for I2V an image) to a video: text encoding, denoising with classifier-free
    /// guidance, VAE decode, written as MP4, PNG frames or safetensors. One `--vram` budget covers every stage.
    Generate(Box<generate::GenerateArgs>),
    /// The Wan VAE (AutoencoderKLWan): `wan vae encode` / `wan vae decode` between safetensors files.
    Vae {
        #[command(subcommand)]
        cmd: VaeCmd,
    },
}

#[derive(Subcommand)]
enum VaeCmd {
    /// Encodes `video` [B, 3, F, H, W] (values in [-1, 1], F = 4k + 1, H and W multiples of 8) into
    /// `latents` [B, 16, (F-1)/4 + 1, H/8, W/8] f32: the posterior mode, not normalized.
    Encode {
        /// A Diffusers vae/ folder, or a model root holding one.
        #[arg(long)]
        model: PathBuf,
        /// safetensors file holding `video`.
        #[arg(long)]
        video: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// Weights and activations: fp32 (default, as diffusers recommends for the VAE), bf16 or fp16.
        #[arg(long)]
        precision: Option<Precision>,
        /// Device memory for the run: a size (2GiB, 512MiB) checked before the device opens, or auto
        /// (free memory minus a margin); also the device's hard cap. When the untiled encode does not
        /// fit, the frames are encoded in exact spatial tiles sized to fit (an error names the minimum).
        #[arg(long, default_value = "auto", allow_hyphen_values = true)]
        vram: Budget,
        /// Forces spatial tiles of at most this many input pixels a side (a multiple of 8); the
        /// result equals the untiled encode.
        #[arg(long)]
        tile: Option<usize>,
    },
    /// Decodes `latents` [B, 16, T, h, w] (un-normalized) into `video` [B, 3, 4(T-1) + 1, 8h, 8w] f32 in [-1, 1].
    Decode {
        /// A Diffusers vae/ folder, or a model root holding one.
        #[arg(long)]
        model: PathBuf,
        /// safetensors file holding `latents`.
        #[arg(long)]
        latents: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// Weights and activations: bf16 (default), fp32 or fp16.
        #[arg(long)]
        precision: Option<Precision>,
        /// Device memory for the run: a size (2GiB, 512MiB) checked before the device opens, or auto
        /// (free memory minus a margin); also the device's hard cap. When the untiled decode does not
        /// fit, the frame is decoded in exact spatial tiles sized to fit (an error names the minimum).
        #[arg(long, default_value = "auto", allow_hyphen_values = true)]
        vram: Budget,
        /// Forces spatial tiles of at most this many output pixels a side (a multiple of 8); the
        /// result equals the untiled decode.
        #[arg(long)]
        tile: Option<usize>,
    },
}

fn transformer_dir(model: &Path) -> PathBuf {
    let sub = model.join("transformer");
    if sub.join("config.json").is_file() {
        sub
    } else {
        model.to_path_buf()
    }
}

/// The kernel files compiling in the background for this run (see [`start_preparing`]), finished in
/// `main` before the process exits.
static PREPARATION: std::sync::Mutex<Option<Preparation>> = std::sync::Mutex::new(None);

/// Starts compiling `dev`'s kernel files in the background, once per run, so that a cold kernel cache
/// costs less of the first run: the files compile on the other cores while the command reads its
/// inputs and weights, and a launch that needs a file still being compiled waits for that compile.
/// Errors (no NVRTC, say) are left to the first launch, which reports them.
fn start_preparing(dev: &Device) {
    if let Ok(mut p) = PREPARATION.lock() {
        if p.is_none() {
            *p = registry::prepare_for(dev).ok();
        }
    }
}

/// Waits for the background kernel compiles to end: a benchmark's timed loop must not share the CPU
/// with NVRTC (a cold cache only; a warm one is read in moments).
fn kernels_compiled() {
    if let Some(p) = PREPARATION.lock().ok().and_then(|mut p| p.take()) {
        p.wait();
    }
}

/// The first GPU, its kernel files compiling in the background from here on.
fn gpu() -> Result<std::sync::Arc<Device>> {
    let dev = Device::get(0).map_err(|e| match e {
        Error::NoDevice(m) => Error::NoDevice(format!("{m}. `wan forward` and `wan bench` need an NVIDIA GPU (compute capability 8.0+) with the CUDA 13 driver")),
        e => e,
    })?;
    start_preparing(&dev);
    Ok(dev)
}

/// The engine for a planned run. The plan's budget also becomes the device's hard cap, so an
/// estimate that falls short is an error naming the allocation, never an out-of-memory crash.
fn engine_for(dev: &Arc<Device>, run: PlannedRun, source: Arc<dyn WeightSource>, low_ram: bool) -> Result<Engine> {
    let host = if low_ram { HostWeights::staging(source, 3) } else { HostWeights::pinned(source) };
    dev.set_budget(Some(dev.memory_stats().in_use.saturating_add(run.budget())));
    Engine::new(dev, run.units, run.plan, host)
}

/// An output path that can be written, checked before any work: its folder exists and takes a new
/// file, and the path is not a folder.
fn check_output_path(out: &Path) -> Result<()> {
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if out.is_dir() {
        return Err(Error::File { path: out.to_path_buf(), msg: "is a folder; give a .safetensors file path".into() });
    }
    if !parent.is_dir() {
        return Err(Error::File { path: parent, msg: "the output's folder does not exist".into() });
    }
    let probe = parent.join(format!(".wan-write-check-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(|e| Error::Io { path: parent.clone(), source: e })?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// The device's free memory, for `--vram auto` only: a given size plans without touching a device.
fn free_for(budget: Budget, dev: Option<&Arc<Device>>) -> Result<Option<u64>> {
    Ok(match (budget, dev) {
        (Budget::Bytes(_), _) => None,
        (Budget::Auto, Some(dev)) => Some(dev.mem_info()?.0),
        // `wan plan` without a device: the planner then says auto needs one.
        (Budget::Auto, None) => Device::get(0).ok().and_then(|d| d.mem_info().ok()).map(|(f, _)| f),
    })
}

#[allow(clippy::too_many_arguments)]
fn plan(model: Option<&Path>, preset: Option<&str>, frames: usize, height: usize, width: usize, precision: Precision, verbose: bool, offload: &Offload) -> Result<()> {
    let cfg = match (model, preset) {
        (Some(model), _) => {
            let dir = transformer_dir(model);
            let cfg = WanConfig::from_path(&dir)?;
            let store = WeightStore::open(&dir)?;
            let report = validate(&store, WanTransformer3DModel::new(&cfg, precision)?.units())?;
            println!("{}: {} tensors checked ({} stray ones ignored)", dir.display(), store.len() - report.ignored.len(), report.ignored.len());
            cfg
        }
        (None, Some(p)) => WanConfig::preset(p)?,
        (None, None) => return Err(Error::invalid("wan plan needs --model DIR or --preset NAME")),
    };
    let free = free_for(offload.vram, None)?;
    let run = plan_run(&cfg, precision, 1, frames, height, width, &offload.choice(), free)?;
    println!("transformer: {}", describe(&run, offload.low_ram, verbose));
    if let Some(root) = model {
        encoders::plan_encoders(root, precision, free, offload, verbose)?;
        if root.join("model_index.json").is_file() {
            generate::plan_pipeline(root, frames, height, width, precision, offload)?;
        }
    }
    Ok(())
}

/// Everything `wan forward` can check without a device comes first: the config, the inputs against
/// it, every checkpoint tensor, and (for a given --vram) the plan. Only then is the GPU opened.
fn forward(model: &Path, inputs: &Path, out: &Path, precision: Precision, offload: &Offload) -> Result<()> {
    let dir = transformer_dir(model);
    let cfg = WanConfig::from_path(&dir)?;
    let inputs = InputFile::open(inputs, &cfg)?;
    let store = WeightStore::open(&dir)?;
    let model = WanTransformer3DModel::new(&cfg, precision)?;
    let report = validate(&store, model.units())?;
    if let Some(first) = report.ignored.first() {
        eprintln!("ignored {} checkpoint tensors no module uses (e.g. {first})", report.ignored.len());
    }
    let choice = offload.choice();
    let (dev, run) = plan_then_open(offload.vram, |free| plan_latents(&cfg, precision, inputs.batch(), inputs.latent(), &choice, free))?;
    eprintln!("{}", describe(&run, offload.low_ram, false));
    run_forward(dev, &model, precision, store, &inputs, run, out, offload.low_ram)
}

/// The model part of `wan forward`, on checked inputs and a plan.
#[allow(clippy::too_many_arguments)]
fn run_forward(dev: Arc<Device>, model: &WanTransformer3DModel, precision: Precision, store: WeightStore, inputs: &InputFile, run: PlannedRun, out: &Path, low_ram: bool) -> Result<()> {
    let inputs = inputs.upload(&dev, precision)?;
    let t0 = Instant::now();
    let engine = engine_for(&dev, run, Arc::new(StoreSource(store)), low_ram)?;
    eprintln!("weights ready in {:.1} s", t0.elapsed().as_secs_f64());
    let t0 = Instant::now();
    let sample = model.forward(&engine, &inputs, None)?;
    write_sample(out, &sample)?;
    eprintln!("forward in {:.3} s, peak VRAM {}, wrote {}", t0.elapsed().as_secs_f64(), fmt_bytes(dev.memory_stats().peak), out.display());
    Ok(())
}

/// Plans before the device opens when the budget is a size (so a plan that cannot fit is refused
/// without a GPU); `--vram auto` needs the device's free memory first.
fn plan_then_open(vram: Budget, planned: impl Fn(Option<u64>) -> Result<PlannedRun>) -> Result<(Arc<Device>, PlannedRun)> {
    let early = match vram {
        Budget::Bytes(_) => Some(planned(None)?),
        Budget::Auto => None,
    };
    let dev = gpu()?;
    let run = match early {
        Some(run) => run,
        None => planned(free_for(vram, Some(&dev))?)?,
    };
    Ok((dev, run))
}

/// Pinned host-to-device bandwidth (bytes/s) measured on the copy stream, for the floor: from
/// `cuMemHostAlloc` memory, and (`registered`) from process pages registered with the driver, as the
/// pinned arena holds them. Returns the best of three single 256 MiB copies (the floor's rate) and the
/// sustained rate of 16 back to back.
fn h2d_rate(dev: &Arc<Device>, registered: bool) -> Result<(f64, f64)> {
    let bytes = 256usize << 20;
    let host = if registered {
        dev.pinned().alloc_filled(bytes, |b| {
            b.fill(1);
            Ok(())
        })?
    } else {
        dev.pinned().alloc(bytes, false)?
    };
    let dst = dev.alloc(bytes as u64, "h2d probe")?;
    dev.synchronize()?;
    let mut best = f64::MAX;
    for _ in 0..3 {
        let a = dev.copy().record_timed()?;
        dev.upload_pinned(&dst, 0, &host, 0..bytes, dev.copy())?;
        let b = dev.copy().record_timed()?;
        best = best.min(b.elapsed_ms(&a)? as f64);
    }
    // Sustained: 16 copies back to back (4 GiB), the rate a long stream of uploads can hold.
    let a = dev.copy().record_timed()?;
    for _ in 0..16 {
        dev.upload_pinned(&dst, 0, &host, 0..bytes, dev.copy())?;
    }
    let b = dev.copy().record_timed()?;
    let sustained = 16.0 * bytes as f64 / (b.elapsed_ms(&a)? as f64 / 1e3);
    Ok((bytes as f64 / (best / 1e3), sustained))
}

/// The engine's own transfer time per forward: every unit taken in declared order and released at
/// once, no compute (median of `iters` passes after one). Against the forward it shows what the
/// scheduling costs; against bytes / probe rate, what the copy path itself costs.
fn sweep_s(engine: &Engine, iters: usize) -> Result<f64> {
    let dev = engine.device();
    let pass = || -> Result<()> {
        engine.forward(|fw| engine.units().ids().try_for_each(|id| fw.unit(id).map(drop)))
    };
    pass()?;
    dev.synchronize()?;
    let mut times = Vec::new();
    for _ in 0..iters.max(1) {
        let start = dev.compute().record_timed()?;
        pass()?;
        let end = dev.compute().record_timed()?;
        times.push(end.elapsed_ms(&start)? as f64 / 1e3);
    }
    Ok(median(times))
}

/// The middle value (NaN for none).
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

#[allow(clippy::too_many_arguments)]
fn bench(preset: &str, frames: usize, height: usize, width: usize, precision: Precision, iters: u32, offload: &Offload) -> Result<()> {
    let cfg = WanConfig::preset(preset)?;
    let (t, h, w) = latent_size(frames, height, width)?;
    let (gt, gh, gw) = cfg.grid(t, h, w)?;
    let choice = offload.choice();
    let (dev, run) = plan_then_open(offload.vram, |free| plan_run(&cfg, precision, 1, frames, height, width, &choice, free))?;
    kernels_compiled();
    eprintln!("{preset} on {}: {} tokens ({gt}x{gh}x{gw})\n{}", dev.name(), gt * gh * gw, describe(&run, offload.low_ram, false));
    let record = run_bench(dev, &cfg, precision, (t, h, w), iters as usize, run, offload.low_ram)?;
    let record = BenchRecord { preset: preset.to_string(), frames, height, width, tokens: gt * gh * gw, ..record };
    println!("{}", record.to_json()?);
    Ok(())
}

/// The model part of `wan bench`: synthesized weights, one warm-up and `iters` timed forwards. The
/// record's run description (preset, size, tokens) is the caller's to fill.
fn run_bench(dev: Arc<Device>, cfg: &WanConfig, precision: Precision, (t, h, w): (usize, usize, usize), iters: usize, run: PlannedRun, low_ram: bool) -> Result<BenchRecord> {
    let model = WanTransformer3DModel::new(cfg, precision)?;
    let (weight_bytes, streamed_bytes) = (run.units.total_bytes(), run.plan.streamed_bytes());
    let mode = format!("{}{}", run.plan.mode(), if run.plan.ring_bytes().is_some() { ", byte ring" } else { "" });
    let (rate, rate_sustained) = h2d_rate(&dev, false)?;
    let (rate_registered, _) = h2d_rate(&dev, true)?;
    let t0 = Instant::now();
    let engine = engine_for(&dev, run, Arc::new(SynthSource { seed: 0 }), low_ram)?;
    let setup_s = t0.elapsed().as_secs_f64();
    eprintln!("weights synthesized and placed in {setup_s:.1} s");
    let dt = precision.compute();
    let mk = |shape: &[usize], seed: u64| -> Result<Tensor> {
        let t = Tensor::empty(&dev, shape, dt)?;
        ops::fill_uniform(&t, seed, -1.0, 1.0)?;
        Ok(t)
    };
    let inputs = Inputs {
        hidden_states: mk(&[1, cfg.in_channels, t, h, w], 1)?,
        timestep: vec![999.0],
        encoder_hidden_states: mk(&[1, 512, cfg.text_dim], 2)?,
        encoder_hidden_states_image: if cfg.is_i2v() { Some(mk(&[1, 257, cfg.image_dim.unwrap_or(1280)], 3)?) } else { None },
    };
    dev.synchronize()?;
    dev.reset_peak();
    let bar = indicatif::ProgressBar::new(iters as u64 + 1);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg:>12} [{bar:30}] {pos}/{len} forwards, {elapsed}")
            .map_err(|e| Error::invalid(format!("progress bar template: {e}")))?
            .progress_chars("=> "),
    );
    bar.set_message("warm-up");
    model.forward(&engine, &inputs, None)?;
    dev.synchronize()?;
    bar.inc(1);
    let mut times = Vec::new();
    for _ in 0..iters {
        let start = dev.compute().record_timed()?;
        model.forward(&engine, &inputs, None)?;
        let end = dev.compute().record_timed()?;
        let ms = end.elapsed_ms(&start)? as f64;
        bar.set_message(format!("{:.3} s", ms / 1e3));
        bar.inc(1);
        times.push(ms);
    }
    bar.finish();
    let med = median(times) / 1e3;
    let sweep = if streamed_bytes > 0 { sweep_s(&engine, iters)? } else { 0.0 };
    let gib = |b: u64| round_to(b as f64 / (1u64 << 30) as f64, 3);
    let gbps = |r: f64| round_to(r / 1e9, 2);
    Ok(BenchRecord {
        bench: "forward",
        implementation: "wanrt",
        preset: String::new(),
        mode,
        frames: 0,
        height: 0,
        width: 0,
        tokens: 0,
        s: round_to(med, 4),
        peak_gib: gib(dev.memory_stats().peak),
        weight_gib: gib(weight_bytes),
        host_gib: gib(engine.host_bytes()),
        setup_s: round_to(setup_s, 2),
        h2d_gbps: gbps(rate),
        h2d_registered_gbps: gbps(rate_registered),
        h2d_sustained_gbps: gbps(rate_sustained),
        transfer_floor_s: round_to(streamed_bytes as f64 / rate, 4),
        sweep_s: round_to(sweep, 4),
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match run(cli.cmd) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(if matches!(e, Error::NoDevice(_)) { 2 } else { 1 })
        }
    };
    // No NVRTC compile may be running on another thread while the process exits (after the error
    // is printed: the files being compiled may take seconds).
    if let Some(p) = PREPARATION.lock().ok().and_then(|mut p| p.take()) {
        p.finish();
    }
    code
}

fn run(cmd: Cmd) -> Result<()> {
    // A malformed switch stops every command before it reads a file or opens the device.
    wanrt::runtime::settings::settings().check()?;
    match cmd {
        Cmd::Plan { model, preset, frames, height, width, precision, verbose, offload } => {
            plan(model.as_deref(), preset.as_deref(), frames, height, width, precision, verbose, &offload)
        }
        Cmd::Forward { model, inputs, out, precision, offload } => forward(&model, &inputs, &out, precision, &offload),
        Cmd::Bench { preset, frames, height, width, precision, pipeline: true, steps, vae_precision, offload, .. } => {
            bench_pipeline::bench_pipeline(&preset, frames, height, width, precision, steps, vae_precision, &offload)
        }
        Cmd::Bench { preset, frames, height, width, precision, iters, offload, .. } => bench(&preset, frames, height, width, precision, iters, &offload),
        Cmd::Encode { model, prompt, negative_prompt, image, out, precision, offload } => {
            encoders::encode(&model, &prompt, negative_prompt.as_deref(), image.as_deref(), &out, precision, &offload)
        }
        Cmd::Generate(args) => generate::generate(&args),
        Cmd::SaveVideo { input, key, out, fps } => video::save_video(&input, &key, &out, fps),
        Cmd::BenchEncoder { encoder, batch, tokens, prompt_tokens, precision, iters, offload } => {
            encoders::bench_encoder(encoder, batch, tokens, prompt_tokens, precision, iters as usize, &offload)
        }
        Cmd::BenchVae { op, frames, height, width, precision, vram, tile, iters, layout } => {
            vae_bench::bench_vae(op, frames, height, width, precision, vram, tile, iters as usize, layout)
        }
        Cmd::Vae { cmd: VaeCmd::Encode { model, video, out, precision, vram, tile } } => vae::encode(&model, &video, &out, precision, vram, tile),
        Cmd::Vae { cmd: VaeCmd::Decode { model, latents, out, precision, vram, tile } } => vae::decode(&model, &latents, &out, precision, vram, tile),
    }
}
