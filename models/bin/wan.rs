//! `wan`: the Wan2.1 command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};
use wanrt::models::wan::io::{read_inputs, write_sample};
use wanrt::models::wan::load::{load_resident, synthesize_resident};
use wanrt::models::wan::transformer::{Inputs, WanTransformer};
use wanrt::models::wan::weights::total_bytes;
use wanrt::models::wan::{Precision, WanConfig};
use wanrt::runtime::ops;
use wanrt::runtime::weights::WeightStore;
use wanrt::{Device, Error, Result, Tensor};

#[derive(Parser)]
#[command(name = "wan", version, about = "Wan2.1 on the wanrt CUDA runtime")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
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
        precision: String,
    },
    /// Times transformer forwards with synthesized weights at a published model's shapes.
    Bench {
        /// wan2.1-t2v-1.3b, wan2.1-t2v-14b, wan2.1-i2v-14b-480p or wan2.1-i2v-14b-720p.
        #[arg(long)]
        preset: String,
        /// Video frames (4k+1).
        #[arg(long, default_value_t = 81)]
        frames: usize,
        #[arg(long, default_value_t = 480)]
        height: usize,
        #[arg(long, default_value_t = 832)]
        width: usize,
        #[arg(long, default_value = "bf16")]
        precision: String,
        /// Timed forwards (after one warm-up).
        #[arg(long, default_value_t = 3)]
        iters: usize,
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

fn gpu() -> Result<std::sync::Arc<Device>> {
    Device::get(0).map_err(|e| match e {
        Error::NoDevice(m) => Error::NoDevice(format!("{m}. `wan forward` and `wan bench` need an NVIDIA GPU (compute capability 8.0+) with the CUDA 13 driver")),
        e => e,
    })
}

fn forward(model: &Path, inputs: &Path, out: &Path, precision: &str) -> Result<()> {
    let precision = Precision::parse(precision)?;
    let dir = transformer_dir(model);
    let cfg = WanConfig::from_path(&dir)?;
    let store = WeightStore::open(&dir)?;
    let dev = gpu()?;
    let model = WanTransformer::new(dev.clone(), cfg.clone(), precision)?;
    let t0 = Instant::now();
    let (mut params, report) = load_resident(&dev, &store, &model.units)?;
    if !report.ignored.is_empty() {
        eprintln!("ignored {} checkpoint tensors no module uses (e.g. {})", report.ignored.len(), report.ignored[0]);
    }
    eprintln!("loaded {} in {:.1} s", dir.display(), t0.elapsed().as_secs_f64());
    let inputs = read_inputs(&dev, inputs, &cfg, precision)?;
    let t0 = Instant::now();
    let sample = model.forward(&mut params, &inputs, None)?;
    write_sample(out, &sample)?;
    eprintln!("forward in {:.3} s, wrote {}", t0.elapsed().as_secs_f64(), out.display());
    Ok(())
}

fn bench(preset: &str, frames: usize, height: usize, width: usize, precision: &str, iters: usize) -> Result<()> {
    let precision = Precision::parse(precision)?;
    let cfg = WanConfig::preset(preset)?;
    if frames == 0 || (frames - 1) % 4 != 0 || height % 16 != 0 || width % 16 != 0 {
        return Err(Error::invalid(format!("video {frames}x{height}x{width}: frames must be 4k+1, height and width multiples of 16")));
    }
    let (t, h, w) = ((frames - 1) / 4 + 1, height / 8, width / 8);
    let (gt, gh, gw) = cfg.grid(t, h, w)?;
    let dev = gpu()?;
    let model = WanTransformer::new(dev.clone(), cfg.clone(), precision)?;
    let weight_bytes = total_bytes(&model.units);
    eprintln!("{preset}: {} tokens ({gt}x{gh}x{gw}), weights {:.2} GiB, {}", gt * gh * gw, weight_bytes as f64 / (1u64 << 30) as f64, dev.name());
    let mut params = synthesize_resident(&dev, &model.units, 0)?;
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
    model.forward(&mut params, &inputs, None)?;
    dev.synchronize()?;
    let mut times = Vec::new();
    for i in 0..iters {
        let start = dev.compute().record_timed()?;
        model.forward(&mut params, &inputs, None)?;
        let end = dev.compute().record_timed()?;
        let ms = end.elapsed_ms(&start)? as f64;
        eprintln!("forward {}/{iters}: {:.3} s", i + 1, ms / 1e3);
        times.push(ms);
    }
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let med = times.get(times.len() / 2).copied().unwrap_or(f64::NAN);
    let peak = dev.memory_stats().peak;
    println!(
        "{{\"bench\":\"forward\",\"preset\":\"{preset}\",\"mode\":\"resident\",\"frames\":{frames},\"height\":{height},\"width\":{width},\"tokens\":{},\"s\":{:.4},\"peak_gib\":{:.3},\"weight_gib\":{:.3}}}",
        gt * gh * gw,
        med / 1e3,
        peak as f64 / (1u64 << 30) as f64,
        weight_bytes as f64 / (1u64 << 30) as f64
    );
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Forward { model, inputs, out, precision } => forward(&model, &inputs, &out, &precision),
        Cmd::Bench { preset, frames, height, width, precision, iters } => bench(&preset, frames, height, width, &precision, iters),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(if matches!(e, Error::NoDevice(_)) { 2 } else { 1 })
        }
    }
}
