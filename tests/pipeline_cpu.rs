//! The pipelines without a GPU: the fixtures' components load and check together, every stage is
//! planned, the seeded noise is the fixtures' torch.randn exactly, and bad requests fail before any work.

mod pipeline_common;

use pipeline_common::{components, fixtures, load, request, tensor};
use wanrt::models::pipeline::{CfgBatch, Pipeline, PipelineOptions, Stage, TorchGenerator};
use wanrt::models::video::VideoSink;

#[test]
fn fixture_pipelines_load_and_plan() {
    for kind in ["t2v", "i2v"] {
        let p = load(kind, PipelineOptions::default());
        let req = request(&p, kind);
        let plans = p.plan(&req, 2 << 30, None).unwrap();
        assert!(plans.cfg_batched, "{kind}: a 2 GiB budget holds the batch-2 forward");
        for s in [Stage::EncodeText, Stage::Denoise, Stage::Decode] {
            assert!(plans.summary(s).is_some(), "{kind}: no plan for {s:?}");
        }
        assert_eq!(plans.summary(Stage::EncodeImage).is_some(), kind == "i2v");
        let split = load(kind, PipelineOptions { cfg_batch: CfgBatch::Split, ..PipelineOptions::default() });
        assert!(!split.plan(&req, 2 << 30, None).unwrap().cfg_batched);
        // A budget below the activations is refused before any device work.
        assert!(p.plan(&req, 1 << 20, None).is_err(), "{kind}: 1 MiB should not fit");
    }
}

#[test]
fn seeded_noise_is_torch_randn() {
    // gen_pipeline.py: torch.randn(shape, generator=torch.Generator().manual_seed(SEED["latents_{kind}"])).
    for (kind, seed) in [("t2v", 6006u64), ("i2v", 7007)] {
        let (shape, want) = tensor(&fixtures().join(format!("pipeline_{kind}/inputs.safetensors")), "latents");
        let got = TorchGenerator::new(seed).randn(&shape);
        assert!(got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()), "{kind}: noise differs from torch's");
    }
}

fn check_err(p: &Pipeline, edit: impl FnOnce(&mut wanrt::models::pipeline::GenerateRequest), kind: &str, want: &str) {
    let mut r = request(p, kind);
    edit(&mut r);
    let e = p.check(&r).unwrap_err().to_string();
    assert!(e.contains(want), "expected {want:?} in: {e}");
}

#[test]
fn bad_requests_fail_before_work() {
    let t2v = load("t2v", PipelineOptions::default());
    check_err(&t2v, |r| r.height = 40, "t2v", "nearest valid: 32 or 48");
    check_err(&t2v, |r| r.width = 50, "t2v", "nearest valid: 48 or 64");
    check_err(&t2v, |r| r.frames = 10, "t2v", "nearest valid: 9 or 13");
    check_err(&t2v, |r| r.steps = 0, "t2v", "--steps");
    check_err(&t2v, |r| r.guidance = -1.0, "t2v", "--guidance");
    check_err(&t2v, |r| r.guidance = f32::NAN, "t2v", "--guidance");
    check_err(&t2v, |r| r.image = Some(fixtures().join("clip/image.png")), "t2v", "text-to-video");
    let i2v = load("i2v", PipelineOptions::default());
    check_err(&i2v, |r| r.image = None, "i2v", "needs --image");
}

#[test]
fn missing_components_and_outputs() {
    let mut c = components("t2v");
    c.vae = fixtures().join("no_such_vae");
    let e = Pipeline::load(c, PipelineOptions::default()).err().expect("a missing VAE folder must fail").to_string();
    assert!(e.contains("no_such_vae"), "{e}");
    let mut c = components("i2v");
    c.image_encoder = None;
    let e = Pipeline::load(c, PipelineOptions::default()).err().expect("I2V without image_encoder must fail").to_string();
    assert!(e.contains("image_encoder"), "{e}");
    let e = VideoSink::from_path("/nonexistent-dir/video.mp4".as_ref()).unwrap().check_writable().unwrap_err().to_string();
    assert!(e.contains("nonexistent-dir"), "{e}");
    assert!(VideoSink::from_path("video.avi".as_ref()).is_err());
}
