//! The Wan VAE against diffusers' AutoencoderKLWan (tests/fixtures/vae, tools/fixtures/gen_vae.py): a
//! 9-frame video and a single frame, encode (moments, posterior mode, normalized latents) and decode,
//! in fp32 stage by stage and in bf16; plus the frame streaming of `decode_with`.
//!
//! Metric: relative RMS error `‖ours − ref‖₂ / ‖ref‖₂` per tensor (the fixture notes that the L2 norm
//! of near-zero channel vectors makes elementwise errors spiky with so few channels).
//! - fp32: ≤ 1e-5 against diffusers' fp32 run, every stage and every output (summation order only:
//!   f32 everywhere, no TF32).
//! - bf16: diffusers' bf16 run on a CUDA GPU (weights and activations bf16, input cast to bf16;
//!   bf16_cuda.safetensors, tools/fixtures/vae_cuda_reference.py) is as far from its fp32 run as bf16
//!   rounding with cuDNN's kernels makes it; ours, encode → mode → decode end to end in bf16 on the
//!   GPU, must be no further from the fp32 run than that (floor 2⁻⁸ relative, one bf16 rounding).
//!   diffusers' CPU bf16 run (bf16.safetensors, oneDNN) is reported beside it: its distance differs
//!   from the GPU's by up to a third per tensor, either way, so it is not the bound for a GPU run.

mod common;
mod vae_ref;

use std::collections::BTreeMap;
use std::path::PathBuf;

use wanrt::models::vae::{normalize_latents, posterior_mode, VaeFolder};
use wanrt::runtime::offload::Engine;
use wanrt::runtime::tensor::bytes_to_f32;
use wanrt::runtime::weights::SafeTensorsFile;
use wanrt::{DType, Device, Tensor};

const FP32_BOUND: f64 = 1e-5;
const BF16_FLOOR: f64 = 1.0 / 256.0;

fn dir() -> PathBuf {
    common::fixture("vae")
}

fn read(file: &SafeTensorsFile, name: &str) -> (Vec<usize>, Vec<f32>) {
    let info = file.info(name).unwrap_or_else(|| panic!("{}: no tensor {name}", file.path().display()));
    let dt = match info.dtype.name() {
        "F32" => DType::F32,
        "BF16" => DType::BF16,
        other => panic!("{name}: dtype {other}"),
    };
    (info.shape.clone(), bytes_to_f32(file.bytes(name).unwrap(), dt))
}

fn rel_rms(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "element count");
    if a.iter().any(|v| !v.is_finite()) {
        return f64::INFINITY;
    }
    let (num, den) = a.iter().zip(b).fold((0f64, 0f64), |(n, d), (x, y)| (n + (*x as f64 - *y as f64).powi(2), d + (*y as f64).powi(2)));
    (num / den.max(1e-30)).sqrt()
}

struct Vae {
    folder: VaeFolder,
    enc: Engine,
    dec: Engine,
    dev: std::sync::Arc<Device>,
}

fn load(dev: &std::sync::Arc<Device>, dt: DType) -> Vae {
    let folder = VaeFolder::open(&dir().join("vae"), dt, dt).unwrap();
    let enc = folder.engine(dev, &folder.model.encoder.units).unwrap();
    let dec = folder.engine(dev, &folder.model.decoder.units).unwrap();
    Vae { folder, enc, dec, dev: dev.clone() }
}

/// Per-stage captures: channels-last chunks concatenated along time, as [1, C, T, H, W] on the host.
#[derive(Default)]
struct Stages(BTreeMap<String, Vec<Chunk>>);

/// One chunk's capture: (T, H, W, C, channels-last values).
type Chunk = (usize, usize, usize, usize, Vec<f32>);

impl Stages {
    fn add(&mut self, name: &str, t: &Tensor) -> wanrt::Result<()> {
        let s = t.shape();
        let v = t.to_f32_vec()?;
        self.0.entry(name.to_string()).or_default().push((s[1], s[2], s[3], s[4], v));
        Ok(())
    }

    fn ncthw(&self, name: &str) -> Option<(Vec<usize>, Vec<f32>)> {
        let chunks = self.0.get(name)?;
        let (_, h, w, c, _) = chunks[0];
        let t: usize = chunks.iter().map(|ch| ch.0).sum();
        let mut out = vec![0f32; c * t * h * w];
        let mut f0 = 0;
        for (n, hh, ww, cc, v) in chunks {
            assert_eq!((*hh, *ww, *cc), (h, w, c), "{name}: chunk sizes differ");
            for f in 0..*n {
                for p in 0..h * w {
                    for ch in 0..c {
                        out[(ch * t + f0 + f) * h * w + p] = v[(f * h * w + p) * c + ch];
                    }
                }
            }
            f0 += n;
        }
        Some((vec![1, c, t, h, w], out))
    }
}

fn upload(dev: &std::sync::Arc<Device>, (shape, v): &(Vec<usize>, Vec<f32>)) -> Tensor {
    Tensor::from_f32(dev, shape, DType::F32, v).unwrap()
}

/// Ours for one input: (moments, mode, normalized latents, decoded from our mode), all host f32.
fn run(vae: &Vae, input: &(Vec<usize>, Vec<f32>), stages: Option<&mut Stages>) -> BTreeMap<&'static str, (Vec<usize>, Vec<f32>)> {
    let m = &vae.folder.model;
    let video = upload(&vae.dev, input);
    let mut stages = stages;
    let mut cap = |n: &str, t: &Tensor| match stages.as_deref_mut() {
        Some(s) => s.add(n, t),
        None => Ok(()),
    };
    let moments = m.encode(&vae.enc, &video, Some(&mut cap)).unwrap();
    let ms = moments.shape().to_vec();
    let mv = moments.to_f32_vec().unwrap();
    let (zs, mode) = posterior_mode(&mv, &ms).unwrap();
    let mut norm = mode.clone();
    normalize_latents(&m.cfg, &mut norm, &zs).unwrap();
    let z = Tensor::from_f32(&vae.dev, &zs, DType::F32, &mode).unwrap();
    let decoded = m.decode(&vae.dec, &z).unwrap();
    BTreeMap::from([("moments", (ms, mv)), ("latent_mode", (zs.clone(), mode)), ("latents_norm", (zs, norm)), ("decoded", decoded)])
}

#[test]
fn vae_fp32_matches_diffusers_stage_by_stage() {
    let Some(dev) = common::gpu("vae_fp32_matches_diffusers_stage_by_stage") else { return };
    let vae = load(&dev, DType::F32);
    let inputs = SafeTensorsFile::open(dir().join("inputs.safetensors")).unwrap();
    let refs = SafeTensorsFile::open(dir().join("fp32.safetensors")).unwrap();
    let stages_ref = SafeTensorsFile::open(dir().join("fp32_stages.safetensors")).unwrap();
    let mut report = String::new();
    let mut failures = Vec::new();
    let mut check = |name: String, got: &(Vec<usize>, Vec<f32>), want: &(Vec<usize>, Vec<f32>)| {
        assert_eq!(got.0, want.0, "{name}: shape");
        let e = rel_rms(&got.1, &want.1);
        report.push_str(&format!("{name:40} rel RMS {e:.3e}\n"));
        #[allow(clippy::neg_cmp_op_on_partial_ord)]
        if !(e <= FP32_BOUND) {
            failures.push(format!("{name}: {e:.3e} > {FP32_BOUND:e}"));
        }
    };
    for case in ["video", "image"] {
        let input = read(&inputs, case);
        let mut enc_stages = Stages::default();
        let ours = run(&vae, &input, (case == "video").then_some(&mut enc_stages));
        for (k, v) in &ours {
            check(format!("{case}.{k}"), v, &read(&refs, &format!("{case}.{k}")));
        }
        // Decode alone, from the reference's own mode (what its decoder stages saw).
        let mut dec_stages = Stages::default();
        let zref = upload(&dev, &read(&refs, &format!("{case}.latent_mode")));
        let mut cap = |n: &str, t: &Tensor| dec_stages.add(n, t);
        let mut collected = Vec::new();
        vae.folder
            .model
            .decode_with(&vae.dec, &zref, |_, f0, chunk| {
                collected.push((f0, chunk.shape().to_vec(), chunk.to_f32_vec()?));
                Ok(())
            }, (case == "video").then_some(&mut cap as &mut dyn FnMut(&str, &Tensor) -> wanrt::Result<()>))
            .unwrap();
        let full = vae.folder.model.decode(&vae.dec, &zref).unwrap();
        // The streamed chunks, in order, are the collected video (frames [f0, f0 + n) of each channel).
        let (f, hw) = (full.0[2], full.0[3] * full.0[4]);
        assert_eq!(collected.iter().map(|c| c.1[2]).sum::<usize>(), f, "{case}: streamed frame count");
        for (f0, shape, v) in &collected {
            let n = shape[2];
            for ch in 0..shape[1] {
                let want = &full.1[(ch * f + f0) * hw..(ch * f + f0 + n) * hw];
                assert_eq!(&v[ch * n * hw..(ch + 1) * n * hw], want, "{case}: streamed chunk at frame {f0}, channel {ch}");
            }
        }
        check(format!("{case}.decoded (from the reference mode)"), &full, &read(&refs, &format!("{case}.decoded")));
        if case == "video" {
            for (name, _) in stages_ref.names().map(|n| (n.to_string(), ())).collect::<Vec<_>>() {
                let stage = name.strip_prefix("video.").unwrap();
                let got = enc_stages.ncthw(stage).or_else(|| dec_stages.ncthw(stage)).unwrap_or_else(|| panic!("stage {stage} never captured"));
                check(format!("stage {stage}"), &got, &read(&stages_ref, &name));
            }
        }
    }
    eprintln!("fp32\n{report}");
    assert!(failures.is_empty(), "fp32: {}", failures.join("; "));
}

#[test]
fn vae_bf16_no_further_from_fp32_than_diffusers_bf16() {
    let Some(dev) = common::gpu("vae_bf16_no_further_from_fp32_than_diffusers_bf16") else { return };
    let vae = load(&dev, DType::BF16);
    let inputs = SafeTensorsFile::open(dir().join("inputs.safetensors")).unwrap();
    let r32 = SafeTensorsFile::open(dir().join("fp32.safetensors")).unwrap();
    let r16 = SafeTensorsFile::open(dir().join("bf16_cuda.safetensors")).unwrap();
    let r16cpu = SafeTensorsFile::open(dir().join("bf16.safetensors")).unwrap();
    let mut report = String::new();
    let mut failures = Vec::new();
    let stages_ref = SafeTensorsFile::open(dir().join("fp32_stages.safetensors")).unwrap();
    for case in ["video", "image"] {
        let mut stages = Stages::default();
        let ours = run(&vae, &read(&inputs, case), (case == "video").then_some(&mut stages));
        if case == "video" {
            // Where the distance grows (a report, compared with tools/parity/vae_bf16_stages.py's
            // numbers for diffusers' bf16 run): the decoder from our own bf16 mode, as end to end.
            let z = upload(&dev, &ours["latent_mode"]);
            let mut cap = |n: &str, t: &Tensor| stages.add(n, t);
            vae.folder.model.decode_with(&vae.dec, &z, |_, _, _| Ok(()), Some(&mut cap as &mut dyn FnMut(&str, &Tensor) -> wanrt::Result<()>)).unwrap();
            for name in stages_ref.names().map(str::to_string).collect::<Vec<_>>() {
                let stage = name.strip_prefix("video.").unwrap();
                let got = stages.ncthw(stage).unwrap_or_else(|| panic!("stage {stage} never captured"));
                report.push_str(&format!("stage {stage:32} ours vs fp32 {:.3e}\n", rel_rms(&got.1, &read(&stages_ref, &name).1)));
            }
        }
        for (k, got) in &ours {
            let name = format!("{case}.{k}");
            let (want, theirs, cpu) = (read(&r32, &name), read(&r16, &name), read(&r16cpu, &name));
            assert_eq!(got.0, want.0, "{name}: shape");
            let (e, bound) = (rel_rms(&got.1, &want.1), rel_rms(&theirs.1, &want.1).max(BF16_FLOOR));
            report.push_str(&format!(
                "{name:24} ours vs fp32 {e:.3e}  diffusers bf16 (CUDA) vs fp32 {:.3e}  (CPU {:.3e})  bound {bound:.3e}\n",
                rel_rms(&theirs.1, &want.1),
                rel_rms(&cpu.1, &want.1)
            ));
            #[allow(clippy::neg_cmp_op_on_partial_ord)]
            if !(e <= bound) {
                failures.push(format!("{name}: {e:.3e} > {bound:.3e}"));
            }
        }
    }
    eprintln!("bf16\n{report}");
    assert!(failures.is_empty(), "bf16: {}", failures.join("; "));
}

#[test]
fn vae_decode_streams_frames_in_order() {
    let Some(dev) = common::gpu("vae_decode_streams_frames_in_order") else { return };
    let vae = load(&dev, DType::F32);
    let refs = SafeTensorsFile::open(dir().join("fp32.safetensors")).unwrap();
    let (zs, z) = read(&refs, "video.latent_mode");
    // Two samples (the reference mode and its negation): each sample's frames in order, 1 then 4 at a time.
    let mut two = z.clone();
    two.extend(z.iter().map(|v| -v));
    let mut shape = zs.clone();
    shape[0] = 2;
    let zt = Tensor::from_f32(&dev, &shape, DType::F32, &two).unwrap();
    let mut seen = Vec::new();
    vae.folder
        .model
        .decode_with(&vae.dec, &zt, |s, f0, chunk| {
            assert_eq!(chunk.dtype(), DType::F32);
            let v = chunk.to_f32_vec()?;
            assert!(v.iter().all(|x| (-1.0..=1.0).contains(x)), "frames are clamped to [-1, 1]");
            seen.push((s, f0, chunk.dim(2)));
            Ok(())
        }, None)
        .unwrap();
    assert_eq!(seen, [(0, 0, 1), (0, 1, 4), (0, 5, 4), (1, 0, 1), (1, 1, 4), (1, 5, 4)]);
    // Batch of two = each sample alone.
    let (bs, both) = vae.folder.model.decode(&vae.dec, &zt).unwrap();
    let (_, one) = vae.folder.model.decode(&vae.dec, &Tensor::from_f32(&dev, &zs, DType::F32, &z).unwrap()).unwrap();
    assert_eq!(bs[0], 2);
    assert_eq!(&both[..one.len()], &one[..]);
    // An engine of the other half is refused, before any work.
    let err = vae.folder.model.decode(&vae.enc, &zt).unwrap_err().to_string();
    assert!(err.contains("other weight units"), "{err}");
}

#[test]
fn vae_activation_bytes_are_what_encode_and_decode_allocate() {
    let Some(dev) = common::gpu("vae_activation_bytes_are_what_encode_and_decode_allocate") else { return };
    let vae = load(&dev, DType::F32);
    let m = &vae.folder.model;
    let inputs = SafeTensorsFile::open(dir().join("inputs.safetensors")).unwrap();
    let video = upload(&dev, &read(&inputs, "video"));
    // A first run allocates cuBLASLt's workspace; the second is measured.
    let moments = m.encode(&vae.enc, &video, None).unwrap();
    let z = Tensor::from_f32(&dev, &[1, 16, 3, 3, 5], DType::F32, &posterior_mode(&moments.to_f32_vec().unwrap(), moments.shape()).unwrap().1).unwrap();
    m.decode(&vae.dec, &z).unwrap();
    dev.synchronize().unwrap();
    let base = dev.memory_stats().in_use;
    dev.reset_peak();
    let again = m.encode(&vae.enc, &video, None).unwrap();
    let used = dev.memory_stats().peak - base;
    let want = m.encode_activation_bytes(9, 24, 40).unwrap();
    let out = again.byte_len().div_ceil(256) * 256;
    assert!(used >= want && used <= want + out, "encode: peak {used} bytes above the start, arena {want} + output {out}");
    drop(again);
    dev.synchronize().unwrap();
    let base = dev.memory_stats().in_use;
    dev.reset_peak();
    m.decode(&vae.dec, &z).unwrap();
    let used = dev.memory_stats().peak - base;
    let want = m.decode_activation_bytes(3, 3, 5).unwrap();
    assert_eq!(used, want, "decode: peak above the start vs its arena");
}

/// Wan2.1's real widths (96..384 channels, a 384-wide single-head attention, the 768-channel
/// time_conv) with synthesized weights on a small video: every stage runs, shapes are right, the
/// output is finite and clamped, and decode_with streams 1 then 4 frames. (Numbers are checked on the
/// tiny fixture above; this checks the plumbing at full width.)
#[test]
fn vae_wan21_widths_run_end_to_end() {
    use std::sync::Arc;
    use wanrt::models::vae::{AutoencoderKLWan, VaeConfig};
    use wanrt::models::wan::load::SynthSource;
    use wanrt::runtime::offload::{HostWeights, Mode, Plan};
    let Some(dev) = common::gpu("vae_wan21_widths_run_end_to_end") else { return };
    let m = AutoencoderKLWan::new(&VaeConfig::wan2_1(), DType::F32, DType::BF16).unwrap();
    let engine = |units: &wanrt::runtime::offload::ModelUnits| {
        let plan = Plan::new(units, Mode::Resident, 0, 0).unwrap();
        Engine::new(&dev, units.clone(), plan, HostWeights::pinned(Arc::new(SynthSource { seed: 3 }))).unwrap()
    };
    let (enc, dec) = (engine(&m.encoder.units), engine(&m.decoder.units));
    let (f, h, w) = (5, 32, 48);
    let mut rng = common::rng("vae_wan21_widths_run_end_to_end");
    let v: Vec<f32> = common::randn(&mut rng, 3 * f * h * w, 0.5).into_iter().map(|x| x.clamp(-1.0, 1.0)).collect();
    let video = Tensor::from_f32(&dev, &[1, 3, f, h, w], DType::F32, &v).unwrap();
    let mut stages = Vec::new();
    let mut cap = |n: &str, t: &Tensor| {
        stages.push(n.to_string());
        assert!(t.to_f32_vec()?.iter().all(|x| x.is_finite()), "{n}: not finite");
        Ok(())
    };
    let moments = m.encode(&enc, &video, Some(&mut cap)).unwrap();
    assert_eq!(moments.shape(), [1, 32, 2, 4, 6]);
    // conv_in and down_blocks.0-4 once per input frame (the frames part goes frame by frame), then
    // per chunk down_blocks.5-10, mid, conv_out and quant_conv: frame 0, then a chunk of 4.
    assert_eq!(stages.len(), (6 + 9) + (4 * 6 + 9), "{stages:?}");
    let (zs, mode) = posterior_mode(&moments.to_f32_vec().unwrap(), moments.shape()).unwrap();
    let z = Tensor::from_f32(&dev, &zs, DType::F32, &mode).unwrap();
    let mut seen = Vec::new();
    m.decode_with(&dec, &z, |_, f0, chunk| {
        assert_eq!(chunk.shape()[..2], [1, 3]);
        assert_eq!(chunk.shape()[3..], [h, w]);
        assert!(chunk.to_f32_vec()?.iter().all(|x| (-1.0..=1.0).contains(x)), "decoded frames finite and clamped");
        seen.push((f0, chunk.dim(2)));
        Ok(())
    }, None)
    .unwrap();
    assert_eq!(seen, [(0, 1), (1, 4)]);
}

/// A frame large enough that the mid-block attention splits its 64·65 = 4160 queries into two score
/// blocks (`SCORE_ELEMS` / 4160 = 4033 rows, then 127), as every Wan-sized frame does: encode one
/// 512x520 frame and decode one 64x65 latent frame with the fixture's weights in fp32, against the
/// f64 CPU reference of tests/vae_ref (relative RMS ≤ 1e-5, the fp32 bound above).
#[test]
fn vae_large_frame_matches_cpu_reference() {
    let Some(dev) = common::gpu("vae_large_frame_matches_cpu_reference") else { return };
    let vae = load(&dev, DType::F32);
    let m = &vae.folder.model;
    let mut rng = common::rng("vae_large_frame_matches_cpu_reference");
    let (h, w) = (512, 520);
    // A smooth image plus a little noise (as the fixture's inputs), in [-1, 1].
    let noise = common::randn(&mut rng, 3 * h * w, 0.1);
    let img: Vec<f32> = (0..3 * h * w)
        .map(|i| {
            let (c, y, x) = (i / (h * w), (i / w) % h, i % w);
            ((0.05 * x as f32 + 0.9 * c as f32).sin() * (0.03 * y as f32).cos() * 0.8 + noise[i]).clamp(-1.0, 1.0)
        })
        .collect();
    let video = Tensor::from_f32(&dev, &[1, 3, 1, h, w], DType::F32, &img).unwrap();
    let moments = m.encode(&vae.enc, &video, None).unwrap();
    assert_eq!(moments.shape(), [1, 32, 1, 64, 65]);
    let mut cpu = vae_ref::Model::fixture();
    let as_f64 = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<f64>>();
    let want = vae_ref::from_cl(&cpu.encode(&vae_ref::to_cl(&(vec![1, 3, 1, h, w], as_f64(&img)))));
    let got = moments.to_f32_vec().unwrap();
    let e = vae_ref::rel_rms(&as_f64(&got), &want);
    eprintln!("large frame encode: relative RMS {e:.3e}");
    assert!(e <= FP32_BOUND, "encode 512x520: relative RMS {e:.3e} > {FP32_BOUND:e}");
    // Decode one latent frame of the same size (mid-block attention again over 4160 tokens).
    let z: Vec<f32> = common::randn(&mut rng, 16 * 64 * 65, 1.0);
    let zt = Tensor::from_f32(&dev, &[1, 16, 1, 64, 65], DType::F32, &z).unwrap();
    let (shape, got) = m.decode(&vae.dec, &zt).unwrap();
    assert_eq!(shape, [1, 3, 1, h, w]);
    let want = vae_ref::from_cl(&cpu.decode(&vae_ref::to_cl(&(vec![1, 16, 1, 64, 65], as_f64(&z)))));
    let e = vae_ref::rel_rms(&as_f64(&got), &want);
    eprintln!("large frame decode: relative RMS {e:.3e}");
    assert!(e <= FP32_BOUND, "decode 64x65: relative RMS {e:.3e} > {FP32_BOUND:e}");
}
