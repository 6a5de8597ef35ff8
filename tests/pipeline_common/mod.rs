//! The pipeline fixtures (tools/fixtures/gen_pipeline.py): their components (the pipeline folders hold
//! only transformer/ and scheduler/; the encoders and the VAE are the component fixtures' folders, named
//! in call.json) and their saved tensors.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use wanrt::models::pipeline::{Components, GenerateRequest, Pipeline, PipelineKind, PipelineOptions};
use wanrt::runtime::tensor::bytes_to_f32;
use wanrt::runtime::weights::WeightStore;
use wanrt::DType;

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// `kind` is "t2v" or "i2v".
pub fn components(kind: &str) -> Components {
    let f = fixtures();
    let base = f.join(format!("pipeline_{kind}"));
    let i2v = kind == "i2v";
    Components {
        name: format!("pipeline_{kind}"),
        kind: if i2v { PipelineKind::I2V } else { PipelineKind::T2V },
        transformer: base.join("transformer"),
        text_encoder: f.join("umt5/text_encoder"),
        tokenizer: f.join("umt5/tokenizer"),
        vae: f.join("vae/vae"),
        scheduler: base.join("scheduler"),
        image_encoder: i2v.then(|| f.join("clip/image_encoder")),
        image_processor: i2v.then(|| f.join("clip/image_processor")),
    }
}

pub fn load(kind: &str, options: PipelineOptions) -> Pipeline {
    Pipeline::load(components(kind), options).unwrap_or_else(|e| panic!("pipeline_{kind}: {e}"))
}

/// The request of call.json: 9 frames at 32x48, 3 steps, guidance 5, flow shift 3 (the scheduler
/// config's), the call's prompts; the I2V image as given (the pipeline resizes only its VAE condition).
pub fn request(p: &Pipeline, kind: &str) -> GenerateRequest {
    let call: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(fixtures().join(format!("pipeline_{kind}/call.json"))).unwrap()).unwrap();
    let c = &call["call"];
    let mut r = p.request(c["prompt"].as_str().unwrap());
    r.negative_prompt = c["negative_prompt"].as_str().unwrap().into();
    r.frames = c["num_frames"].as_u64().unwrap() as usize;
    r.height = c["height"].as_u64().unwrap() as usize;
    r.width = c["width"].as_u64().unwrap() as usize;
    r.steps = c["num_inference_steps"].as_u64().unwrap() as usize;
    r.guidance = c["guidance_scale"].as_f64().unwrap() as f32;
    r.shift = 3.0;
    if kind == "i2v" {
        r.image = Some(fixtures().join("clip/image.png"));
    }
    r
}

/// A tensor of a fixture file as f32, with its shape.
pub fn tensor(file: &Path, key: &str) -> (Vec<usize>, Vec<f32>) {
    let store = WeightStore::open(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let shape = store.info(key).unwrap_or_else(|e| panic!("{key}: {e}")).shape.to_vec();
    let bytes = store.load(key, &shape, DType::F32).unwrap();
    (shape, bytes_to_f32(&bytes, DType::F32))
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (*x as f64 - *y as f64).abs()).fold(0.0, f64::max)
}
