//! `wan bench-encoder`: UMT5-XXL or CLIP ViT-H/14 with synthesized weights at the published shapes,
//! timed like `wan bench` (CUDA events, median after a warm-up), planned for `--vram` like the
//! transformer. One JSON line: seconds per encode, peak VRAM, host RAM, setup, the H2D rate and the
//! transfer floor (streamed bytes / that rate).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use wanrt::models::checkpoint::{validate, SharedStore};
use wanrt::models::clip::preprocess::{load_image, ClipImageProcessor};
use wanrt::models::clip::vision::is_unused_key as clip_unused;
use wanrt::models::clip::{ClipVisionConfig, ClipVisionModel};
use wanrt::models::umt5::encoder::{embedding_key, is_unused_key as umt5_unused};
use wanrt::models::umt5::tokenizer::{UmtTokenizer, MAX_SEQUENCE_LENGTH};
use wanrt::models::umt5::{TokenBatch, TokenEmbedding, Umt5Config, Umt5EncoderModel};
use wanrt::models::wan::load::SynthSource;
use wanrt::models::wan::run::{describe, PlannedRun};
use wanrt::models::wan::Precision;
use wanrt::runtime::offload::{fmt_bytes, plan_for, ModelUnits};
use wanrt::runtime::weights::{write_safetensors, StorageDType, WeightStore};
use wanrt::{Error, Result};

use super::{engine_for, gpu, h2d_rate, median, Offload};

/// Which encoder `wan bench-encoder` times.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum EncoderChoice {
    /// google/umt5-xxl's encoder (Wan's text encoder).
    Umt5Xxl,
    /// laion CLIP ViT-H/14 (Wan I2V's image encoder), up to its penultimate layer.
    #[value(name = "clip-vit-h-14")]
    ClipVitH14,
}

#[derive(Serialize)]
struct EncoderRecord {
    bench: &'static str,
    #[serde(rename = "impl")]
    implementation: &'static str,
    model: &'static str,
    mode: String,
    batch: usize,
    tokens: usize,
    s: f64,
    peak_gib: f64,
    weight_gib: f64,
    host_gib: f64,
    setup_s: f64,
    h2d_gbps: f64,
    transfer_floor_s: f64,
}

enum Model {
    Umt5(Umt5EncoderModel),
    Clip(ClipVisionModel),
}

/// `batch` prompts of `real_tokens` (EOS included) padded to `tokens`, like the pipeline's: the token
/// ids the benches feed UMT5 (their values do not change the work).
pub fn synth_tokens(batch: usize, tokens: usize, real_tokens: usize) -> TokenBatch {
    let ids: Vec<i64> = (0..tokens).map(|j| if j + 1 < real_tokens { 2 + (j as i64 * 7919) % 200_000 } else if j + 1 == real_tokens { 1 } else { 0 }).collect();
    let mask: Vec<i64> = (0..tokens).map(|j| (j < real_tokens) as i64).collect();
    TokenBatch { ids: vec![ids; batch], mask: vec![mask; batch] }
}

/// CLIP ViT-H/14 at its published shapes (Wan I2V's image encoder), for weights synthesized by
/// `SynthSource`.
pub fn synth_clip(precision: Precision) -> Result<ClipVisionModel> {
    ClipVisionModel::new(&ClipVisionConfig::vit_h_14(), precision)
}

/// `batch` preprocessed images ((batch, 3, 224, 224) f32 in CLIPImageProcessor's normalized range,
/// about [-2, 2]), deterministic.
pub fn synth_pixels(cfg: &ClipVisionConfig, batch: usize) -> Vec<f32> {
    let s = cfg.image_size;
    (0..batch * cfg.num_channels * s * s).map(|i| ((i * 2654435761) % 4001) as f32 / 1000.0 - 2.0).collect()
}

pub fn bench_encoder(which: EncoderChoice, batch: usize, tokens: usize, real_tokens: usize, precision: Precision, iters: usize, offload: &Offload) -> Result<()> {
    if batch == 0 || tokens == 0 || real_tokens == 0 || real_tokens > tokens {
        return Err(Error::invalid(format!("--batch {batch}, --tokens {tokens}, --prompt-tokens {real_tokens}: all positive, prompt tokens at most tokens")));
    }
    let choice = offload.choice();
    let prefs = choice.prefs()?;
    let (model, act, name, units): (Model, u64, &str, ModelUnits) = match which {
        EncoderChoice::Umt5Xxl => {
            let m = Umt5EncoderModel::new(&Umt5Config::umt5_xxl(), precision)?;
            let act = m.activation_peak(batch, tokens)?;
            let u = m.units().clone();
            (Model::Umt5(m), act, "umt5-xxl", u)
        }
        EncoderChoice::ClipVitH14 => {
            let m = synth_clip(precision)?;
            let act = m.activation_peak(batch)?;
            let u = m.units().clone();
            (Model::Clip(m), act, "clip-vit-h-14", u)
        }
    };
    let dev = gpu()?;
    super::kernels_compiled();
    let budget = choice.budget_bytes(super::free_for(offload.vram, Some(&dev))?)?;
    let plan = plan_for(&units, budget, act, prefs)?;
    let run = PlannedRun { units, plan, activation_peak: act };
    eprintln!("{name} on {}\n{}", dev.name(), describe(&run, offload.low_ram, false));
    let (weight_bytes, streamed) = (run.units.total_bytes(), run.plan.streamed_bytes());
    let mode = format!("{}{}", run.plan.mode(), if run.plan.ring_bytes().is_some() { ", byte ring" } else { "" });
    let (rate, _) = h2d_rate(&dev, false)?;
    let t0 = Instant::now();
    let engine = engine_for(&dev, run, Arc::new(SynthSource { seed: 0 }), offload.low_ram)?;
    let setup_s = t0.elapsed().as_secs_f64();
    let host = engine.host_bytes();
    let (encode, n): (Box<dyn Fn() -> Result<()>>, usize) = match &model {
        Model::Umt5(m) => {
            let batch_tokens = synth_tokens(batch, tokens, real_tokens);
            let emb = TokenEmbedding::Synth { seed: 1 };
            (Box::new(move || m.forward(&engine, &emb, &batch_tokens, None).map(drop)), tokens)
        }
        Model::Clip(m) => {
            let pixels = synth_pixels(&m.cfg, batch);
            (Box::new(move || m.forward(&engine, &pixels, batch, None).map(drop)), m.cfg.tokens())
        }
    };
    dev.synchronize()?;
    dev.reset_peak();
    encode()?;
    dev.synchronize()?;
    let mut times = Vec::new();
    for _ in 0..iters.max(1) {
        let start = dev.compute().record_timed()?;
        encode()?;
        let end = dev.compute().record_timed()?;
        times.push(end.elapsed_ms(&start)? as f64 / 1e3);
    }
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    let record = EncoderRecord {
        bench: "encoder",
        implementation: "wanrt",
        model: name,
        mode,
        batch,
        tokens: n,
        s: median(times),
        peak_gib: gib(dev.memory_stats().peak),
        weight_gib: gib(weight_bytes),
        host_gib: gib(host),
        setup_s,
        h2d_gbps: rate / 1e9,
        transfer_floor_s: streamed as f64 / rate,
    };
    println!("{}", serde_json::to_string(&record).map_err(|e| Error::invalid(format!("bench record: {e}")))?);
    Ok(())
}

/// The folder of component `name` under a Diffusers root (`text_encoder`, `image_encoder`, ...), or
/// an error naming what is missing.
fn component(root: &Path, name: &str) -> Result<PathBuf> {
    let dir = root.join(name);
    if dir.join("config.json").is_file() || dir.join("preprocessor_config.json").is_file() || dir.join("tokenizer.json").is_file() {
        Ok(dir)
    } else {
        Err(Error::File { path: dir, msg: format!("missing: `wan encode` needs the model folder's {name}/ component") })
    }
}

/// `wan plan` for a model root's encoders: each of text_encoder/ and image_encoder/ that the folder
/// holds is validated (every key, shape and dtype) and planned for the budget as `wan encode` plans it
/// (UMT5 at batch 2, prompt and negative prompt, 512 tokens; CLIP at batch 1). Needs no GPU for a sized
/// `--vram`.
pub fn plan_encoders(root: &Path, precision: Precision, free: Option<u64>, offload: &Offload, verbose: bool) -> Result<()> {
    let choice = offload.choice();
    let te_dir = root.join("text_encoder");
    if te_dir.join("config.json").is_file() {
        let cfg = Umt5Config::from_path(&te_dir)?;
        let umt5 = Umt5EncoderModel::new(&cfg, precision)?;
        let store = WeightStore::open(&te_dir)?;
        validate(&store, umt5.units(), &[(embedding_key(&store), &[cfg.vocab_size, cfg.d_model])], umt5_unused, "UMT5EncoderModel folder (text_encoder/)")?;
        if let Ok(tokenizer) = UmtTokenizer::from_folder(root) {
            tokenizer.check_vocab(cfg.vocab_size)?;
        }
        let plan = plan_for(umt5.units(), choice.budget_bytes(free)?, umt5.activation_peak(2, MAX_SEQUENCE_LENGTH)?, choice.prefs()?)?;
        let run = PlannedRun { units: umt5.units().clone(), plan, activation_peak: 0 };
        println!("{}: {} tensors checked", te_dir.display(), store.len());
        println!("text encoder (UMT5, batch 2 x {MAX_SEQUENCE_LENGTH} tokens): {}", describe(&run, offload.low_ram, verbose));
    }
    let ie_dir = root.join("image_encoder");
    if ie_dir.join("config.json").is_file() {
        let cfg = ClipVisionConfig::from_path(&ie_dir)?;
        let model = ClipVisionModel::new(&cfg, precision)?;
        let store = WeightStore::open(&ie_dir)?;
        validate(&store, model.units(), &[], |k| clip_unused(&cfg, k), "CLIPVisionModel folder (image_encoder/)")?;
        let plan = plan_for(model.units(), choice.budget_bytes(free)?, model.activation_peak(1)?, choice.prefs()?)?;
        let run = PlannedRun { units: model.units().clone(), plan, activation_peak: 0 };
        println!("{}: {} tensors checked", ie_dir.display(), store.len());
        println!("image encoder (CLIP, batch 1): {}", describe(&run, offload.low_ram, verbose));
    }
    Ok(())
}

/// `wan encode`: prompt (and negative prompt) through the tokenizer and UMT5, an image through
/// `CLIPImageProcessor` and CLIP, written as diffusers' `prompt_embeds`, `negative_prompt_embeds`
/// and `image_embeds`. Every input, file and plan is checked before the device opens.
#[allow(clippy::too_many_arguments)]
pub fn encode(root: &Path, prompt: &str, negative: Option<&str>, image: Option<&Path>, out: &Path, precision: Precision, offload: &Offload) -> Result<()> {
    super::check_output_path(out)?;
    let tokenizer = UmtTokenizer::from_folder(root)?;
    let te_dir = component(root, "text_encoder")?;
    let cfg = Umt5Config::from_path(&te_dir)?;
    tokenizer.check_vocab(cfg.vocab_size)?;
    let umt5 = Umt5EncoderModel::new(&cfg, precision)?;
    let te_store = Arc::new(WeightStore::open(&te_dir)?);
    validate(&te_store, umt5.units(), &[(embedding_key(&te_store), &[cfg.vocab_size, cfg.d_model])], umt5_unused, "UMT5EncoderModel folder (text_encoder/)")?;
    let mut prompts = vec![prompt];
    prompts.extend(negative);
    let enc = tokenizer.encode_prompts(&prompts, MAX_SEQUENCE_LENGTH)?;
    let clip = match image {
        Some(path) => {
            let ie_dir = component(root, "image_encoder")?;
            let ccfg = ClipVisionConfig::from_path(&ie_dir)?;
            let model = ClipVisionModel::new(&ccfg, precision)?;
            let store = Arc::new(WeightStore::open(&ie_dir)?);
            validate(&store, model.units(), &[], |k| clip_unused(&ccfg, k), "CLIPVisionModel folder (image_encoder/)")?;
            let processor = ClipImageProcessor::from_folder(root)?;
            let pixels = processor.preprocess(&load_image(path)?)?;
            let [c, h, w] = processor.output_shape(0, 0);
            if (c, h, w) != (ccfg.num_channels, ccfg.image_size, ccfg.image_size) {
                return Err(Error::invalid(format!(
                    "image_processor crops to {c}x{h}x{w} but the image encoder takes {}x{s}x{s}",
                    ccfg.num_channels,
                    s = ccfg.image_size
                )));
            }
            Some((model, store, pixels))
        }
        None => None,
    };
    let choice = offload.choice();
    let dev = gpu()?;
    let budget = choice.budget_bytes(super::free_for(offload.vram, Some(&dev))?)?;
    let t0 = Instant::now();
    let batch = prompts.len();
    let plan = plan_for(umt5.units(), budget, umt5.activation_peak(batch, MAX_SEQUENCE_LENGTH)?, choice.prefs()?)?;
    let run = PlannedRun { units: umt5.units().clone(), plan, activation_peak: 0 };
    eprintln!("text encoder: {}", describe(&run, offload.low_ram, false).lines().next().unwrap_or_default());
    let engine = engine_for(&dev, run, Arc::new(SharedStore(te_store.clone())), offload.low_ram)?;
    let tokens = TokenBatch { ids: enc.ids, mask: enc.mask };
    let embeds = umt5.forward(&engine, &TokenEmbedding::Store(te_store), &tokens, None)?;
    let dt = precision.compute();
    let (l, d) = (embeds.dim(1), embeds.dim(2));
    let row = |b: usize| -> Result<Vec<u8>> { embeds.narrow(0, b, 1)?.to_bytes() };
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = vec![("prompt_embeds".into(), vec![1, l, d], row(0)?)];
    if negative.is_some() {
        tensors.push(("negative_prompt_embeds".into(), vec![1, l, d], row(1)?));
    }
    // The text encoder's memory goes back before the image encoder runs.
    drop(engine);
    drop(embeds);
    if let Some((model, store, pixels)) = clip {
        let plan = plan_for(model.units(), budget, model.activation_peak(1)?, choice.prefs()?)?;
        let run = PlannedRun { units: model.units().clone(), plan, activation_peak: 0 };
        let engine = engine_for(&dev, run, Arc::new(SharedStore(store)), offload.low_ram)?;
        let img = model.forward(&engine, &pixels, 1, None)?;
        tensors.push(("image_embeds".into(), img.shape().to_vec(), img.to_bytes()?));
    }
    let entries: Vec<(&str, StorageDType, &[usize], &[u8])> = tensors.iter().map(|(n, s, b)| (n.as_str(), StorageDType::from(dt), s.as_slice(), b.as_slice())).collect();
    write_safetensors(out, &entries, &[("producer", "wanrt encode")])?;
    eprintln!("encoded in {:.2} s, peak VRAM {}, wrote {}", t0.elapsed().as_secs_f64(), fmt_bytes(dev.memory_stats().peak), out.display());
    Ok(())
}
