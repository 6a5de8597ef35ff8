//! The T2V and I2V pipelines end to end against diffusers' (tests/fixtures/pipeline_t2v, pipeline_i2v:
//! 3 UniPC steps with CFG from injected initial latents, in fp32 and in the Wan docs' bf16
//! configuration). Bounds: in bf16, the latents after each step and the final frames are within twice
//! diffusers' own bf16-vs-fp32 distance of diffusers' bf16 run; in fp32, within a tenth of it of
//! diffusers' fp32 run. Guidance as one batch-2 forward equals two batch-1 forwards bit for bit.

mod common;
mod pipeline_common;

use pipeline_common::{fixtures, load, max_abs_diff, request, tensor};
use wanrt::models::pipeline::{Callbacks, CancelToken, CfgBatch, CollectFrames, Extras, PipelineOptions};
use wanrt::models::wan::Precision;
use wanrt::{DType, Result, Tensor};

/// The latents after every step, on the host.
#[derive(Default)]
struct Steps(Vec<Vec<f32>>);

impl Callbacks for Steps {
    fn step_end(&mut self, _step: usize, latents: &Tensor) -> Result<()> {
        self.0.push(latents.to_f32_vec()?);
        Ok(())
    }
}

fn run(kind: &str, precision: Precision, cfg_batch: CfgBatch) -> (Vec<Vec<f32>>, Vec<f32>) {
    // The fixtures decode with diffusers' fp32 VAE (the Wan docs' setting): so does ours here.
    let p = load(kind, PipelineOptions { precision, cfg_batch, vae_decode_dtype: DType::F32, ..PipelineOptions::default() });
    let req = request(&p, kind);
    let (_, latents) = tensor(&fixtures().join(format!("pipeline_{kind}/inputs.safetensors")), "latents");
    let extras = Extras { embeds: None, latents: Some(latents) };
    let mut frames = CollectFrames::new(req.frames, req.height, req.width);
    let mut steps = Steps::default();
    let report = p.generate(&req, &extras, &mut frames, &mut steps, &CancelToken::new()).unwrap_or_else(|e| panic!("{kind} {precision:?}: {e}"));
    assert!(report.cancelled.is_none());
    assert_eq!(report.cfg_batched, cfg_batch != CfgBatch::Split, "{kind}: the budget holds the batch-2 forward");
    assert_eq!(frames.received(), req.frames);
    assert_eq!(steps.0.len(), req.steps);
    (steps.0, frames.to_np())
}

fn parity(kind: &str) {
    let dir = fixtures().join(format!("pipeline_{kind}"));
    let (bf, fp) = (dir.join("bf16.safetensors"), dir.join("fp32.safetensors"));
    let (ours_bf, video_bf) = run(kind, Precision::Bf16, CfgBatch::Auto);
    let (ours_fp, video_fp) = run(kind, Precision::Fp32, CfgBatch::Auto);
    let check = |what: &str, got_bf: &[f32], got_fp: &[f32]| {
        let (_, want_bf) = tensor(&bf, what);
        let (_, want_fp) = tensor(&fp, what);
        let noise = max_abs_diff(&want_bf, &want_fp);
        let (d_bf, d_fp) = (max_abs_diff(got_bf, &want_bf), max_abs_diff(got_fp, &want_fp));
        eprintln!("{kind} {what}: diffusers bf16 vs fp32 {noise:.3e}; ours bf16 {d_bf:.3e}, fp32 {d_fp:.3e}");
        assert!(d_bf <= 2.0 * noise + 1e-6, "{kind} {what}: bf16 off by {d_bf:.3e} (bound {:.3e})", 2.0 * noise);
        assert!(d_fp <= noise / 10.0 + 1e-6, "{kind} {what}: fp32 off by {d_fp:.3e} (bound {:.3e})", noise / 10.0);
    };
    for i in 0..ours_bf.len() {
        check(&format!("latents.{i}"), &ours_bf[i], &ours_fp[i]);
    }
    check("video", &video_bf, &video_fp);
}

#[test]
fn t2v_matches_diffusers() {
    if common::gpu("t2v_matches_diffusers").is_none() {
        return;
    }
    parity("t2v");
}

#[test]
fn i2v_matches_diffusers() {
    if common::gpu("i2v_matches_diffusers").is_none() {
        return;
    }
    parity("i2v");
}

#[test]
fn batched_guidance_equals_two_passes() {
    if common::gpu("batched_guidance_equals_two_passes").is_none() {
        return;
    }
    for kind in ["t2v", "i2v"] {
        let (a, va) = run(kind, Precision::Bf16, CfgBatch::Batched);
        let (b, vb) = run(kind, Precision::Bf16, CfgBatch::Split);
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            assert!(x.iter().zip(y).all(|(p, q)| p.to_bits() == q.to_bits()), "{kind}: step {i} latents differ between batch-2 and split CFG");
        }
        assert!(va.iter().zip(&vb).all(|(p, q)| p.to_bits() == q.to_bits()), "{kind}: frames differ");
    }
}

#[test]
fn cancellation_stops_cleanly() {
    if common::gpu("cancellation_stops_cleanly").is_none() {
        return;
    }
    let p = load("t2v", PipelineOptions::default());
    let req = request(&p, "t2v");
    let cancel = CancelToken::new();
    cancel.cancel();
    let mut frames = CollectFrames::new(req.frames, req.height, req.width);
    let report = p.generate(&req, &Extras::default(), &mut frames, &mut Steps::default(), &cancel).unwrap();
    assert!(report.cancelled.is_some());
    // The same pipeline then runs to the end.
    let mut frames = CollectFrames::new(req.frames, req.height, req.width);
    let report = p.generate(&req, &Extras::default(), &mut frames, &mut Steps::default(), &CancelToken::new()).unwrap();
    assert!(report.cancelled.is_none());
    assert_eq!(frames.received(), req.frames);
}
