//! Exact spatial tiling and chunked output of the VAE decode (models/vae/tiling.rs): a tiled decode
//! equals the untiled one bit for bit (every output pixel is computed from the same values by the same
//! kernels; the halo covers the tail's receptive radius), whether the tiles run in one pass over the
//! latent frames or in several; the tail run frame by frame (`TilePlan::stream`, the default: causal
//! convs through their caches, upsamplers in row bands) equals it run on whole chunks; and the frames
//! handed out chunk by chunk are the whole decode's. Likewise for the encode: tiled equals untiled,
//! and the encoder's frames part run one input frame at a time (the default, conv_in through the
//! first temporal downsampler's spatial conv) equals it run on whole chunks.
//! Equality is asserted exactly, not within bf16 rounding: nothing is blended (diffusers'
//! `tiled_decode` blends overlapping tiles, which changes the output).

mod common;

use std::sync::Arc;

use wanrt::models::vae::{AutoencoderKLWan, TilePlan, VaeConfig, VaeFolder};
use wanrt::models::wan::load::SynthSource;
use wanrt::runtime::offload::{Engine, HostWeights, Mode, ModelUnits, Plan};
use wanrt::{DType, Device, Tensor};

fn synth_engine(dev: &Arc<Device>, units: &ModelUnits) -> Engine {
    let plan = Plan::new(units, Mode::Resident, 0, 0).unwrap();
    Engine::new(dev, units.clone(), plan, HostWeights::pinned(Arc::new(SynthSource { seed: 5 }))).unwrap()
}

/// The decode's chunks as (sample, first frame, frames) and the values concatenated per sample.
fn chunks(m: &AutoencoderKLWan, e: &Engine, z: &Tensor, tiles: &TilePlan) -> (Vec<(usize, usize, usize)>, Vec<f32>) {
    let (mut seen, mut vals) = (Vec::new(), Vec::new());
    m.decode_tiled_with(e, z, tiles, |s, f0, c| {
        seen.push((s, f0, c.dim(2)));
        vals.extend(c.to_f32_vec()?);
        Ok(())
    }, None)
    .unwrap();
    (seen, vals)
}

/// Asserts bitwise equality, naming the first differing element.
fn same(what: &str, a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    if let Some(i) = a.iter().zip(b).position(|(x, y)| x.to_bits() != y.to_bits()) {
        let n = a.iter().zip(b).filter(|(x, y)| x.to_bits() != y.to_bits()).count();
        panic!("{what}: {n} of {} values differ, first at {i}: {} vs {}", a.len(), a[i], b[i]);
    }
}

/// Wan2.1's widths with synthesized weights, bf16 and fp32, a 3-frame 20x24 latent (160x192 px): the
/// halo (6 latent px) is smaller than the tiles, so the tiles' windows are real crops.
#[test]
fn vae_tiled_decode_equals_untiled_at_wan21_widths() {
    let Some(dev) = common::gpu("vae_tiled_decode_equals_untiled_at_wan21_widths") else { return };
    let (t, h, w) = (3, 20, 24);
    let mut rng = common::rng("vae_tiled_decode_equals_untiled_at_wan21_widths");
    let z = common::randn(&mut rng, 2 * 16 * t * h * w, 1.0);
    for dt in [DType::BF16, DType::F32] {
        let m = AutoencoderKLWan::new(&VaeConfig::wan2_1(), DType::F32, dt).unwrap();
        let e = synth_engine(&dev, &m.decoder.units);
        let zt = Tensor::from_f32(&dev, &[2, 16, t, h, w], DType::F32, &z).unwrap();
        let (want_seen, want) = chunks(&m, &e, &zt, &TilePlan::untiled(h, w));
        assert_eq!(want_seen, [(0, 0, 1), (0, 1, 4), (0, 5, 4), (1, 0, 1), (1, 1, 4), (1, 5, 4)]);
        // Chunked = whole.
        let (_, whole) = m.decode(&e, &zt).unwrap();
        let per = 3 * 9 * 8 * h * 8 * w;
        let regroup: Vec<f32> = (0..2)
            .flat_map(|s| {
                let sample = &want[s * per..(s + 1) * per];
                let (frames, hw) = (9, 64 * h * w);
                let mut out = vec![0f32; per];
                let mut f0 = 0;
                for n in [1, 4, 4] {
                    let chunk = &sample[3 * f0 * hw..3 * (f0 + n) * hw];
                    for c in 0..3 {
                        out[(c * frames + f0) * hw..(c * frames + f0 + n) * hw].copy_from_slice(&chunk[c * n * hw..(c + 1) * n * hw]);
                    }
                    f0 += n;
                }
                out
            })
            .collect();
        same(&format!("{dt:?}: chunked vs whole"), &regroup, &whole);
        // A budget below what any plan of at most 3 tiles needs: the planner picks ≥ 4 tiles.
        let halo = m.decode_halo();
        let least3 = [(1, 2), (2, 1), (1, 3), (3, 1)]
            .iter()
            .map(|&(r, c)| m.decode_tiled_bytes(t, h, w, &TilePlan::grid(h, w, r, c, halo, 1).unwrap()).unwrap())
            .min()
            .unwrap();
        let planned = m.plan_decode_tiles(t, h, w, Some(least3 - 1), 0, None).unwrap();
        assert!(planned.tiles.len() >= 4, "{}", planned.describe(8));
        let plans = [
            planned,
            TilePlan::grid(h, w, 2, 2, halo, 4).unwrap(), // one pass, four cache sets
            TilePlan::grid(h, w, 2, 3, halo, 2).unwrap(), // three passes, earlier pixels kept on the host
            TilePlan::grid(h, w, 3, 2, halo, 1).unwrap(), // one tile per pass
            // The tail on whole chunks (4 frames per call, the upsamplers' convs on whole frames): the
            // frame-by-frame tail above gives the same bits.
            TilePlan::untiled(h, w).whole_chunks(),
            TilePlan::grid(h, w, 2, 3, halo, 2).unwrap().whole_chunks(),
        ];
        assert!(m.decode_tiled_bytes(t, h, w, &plans[4]).unwrap() > m.decode_activation_bytes(t, h, w).unwrap());
        for p in &plans {
            let what = format!("{dt:?} {}", p.describe(8));
            dev.synchronize().unwrap();
            let base = dev.memory_stats().in_use;
            dev.reset_peak();
            let (seen, got) = chunks(&m, &e, &zt, p);
            let used = dev.memory_stats().peak - base;
            assert_eq!(seen, want_seen, "{what}: chunks");
            same(&what, &got, &want);
            // What the decode allocates is what it reports (its arena; the chunks leave as views of it).
            assert_eq!(used, m.decode_tiled_bytes(t, h, w, p).unwrap(), "{what}: peak above the start vs its arena");
        }
    }
}

/// The tiny fixture (tests/fixtures/vae) in fp32, its 3x5 latent in 2x2 tiles (the windows clipped
/// to the frame): equal to untiled, one pass or four.
#[test]
fn vae_tiled_decode_equals_untiled_on_the_fixture() {
    let Some(dev) = common::gpu("vae_tiled_decode_equals_untiled_on_the_fixture") else { return };
    let folder = VaeFolder::open(&common::fixture("vae/vae"), DType::F32, DType::F32).unwrap();
    let m = &folder.model;
    let e = folder.engine(&dev, &m.decoder.units).unwrap();
    let mut rng = common::rng("vae_tiled_decode_equals_untiled_on_the_fixture");
    let (t, h, w) = (3, 3, 5);
    let z = Tensor::from_f32(&dev, &[1, m.cfg.z_dim, t, h, w], DType::F32, &common::randn(&mut rng, m.cfg.z_dim * t * h * w, 1.0)).unwrap();
    let (_, want) = chunks(m, &e, &z, &TilePlan::untiled(h, w));
    for group in [4, 1] {
        let p = TilePlan::grid(h, w, 2, 2, m.decode_halo(), group).unwrap();
        same(&p.describe(8), &chunks(m, &e, &z, &p).1, &want);
    }
    // Its tail on whole chunks: the same as frame by frame (here the upsamplers' row bands are 2 and
    // 8 rows high).
    same("untiled, whole chunks", &chunks(m, &e, &z, &TilePlan::untiled(h, w).whole_chunks()).1, &want);
}

/// The encode's tiles (models/vae/encode.rs): Wan2.1's widths with synthesized weights, fp32 and bf16,
/// two 9-frame 176x272 videos (a 3x22x34 latent): the down part run window by window (halo 6 latent
/// px, windows aligned to whole latent pixels) and the latent part on whole frames give the untiled
/// encode's moments bit for bit, with odd tile counts and windows clipped at every edge.
#[test]
fn vae_tiled_encode_equals_untiled() {
    let Some(dev) = common::gpu("vae_tiled_encode_equals_untiled") else { return };
    let (b, f, hv, wv) = (2, 9, 176, 272);
    let (h, w) = (hv / 8, wv / 8);
    let mut rng = common::rng("vae_tiled_encode_equals_untiled");
    // Values in [-1, 1], as the encoder takes them.
    let v: Vec<f32> = common::randn(&mut rng, b * 3 * f * hv * wv, 0.5).into_iter().map(|x| x.clamp(-1.0, 1.0)).collect();
    for dt in [DType::F32, DType::BF16] {
        let m = AutoencoderKLWan::new(&VaeConfig::wan2_1(), dt, DType::BF16).unwrap();
        let e = synth_engine(&dev, &m.encoder.units);
        let video = Tensor::from_f32(&dev, &[b, 3, f, hv, wv], DType::F32, &v).unwrap();
        let want = m.encode(&e, &video, None).unwrap();
        assert_eq!(want.shape(), [b, 32, 3, h, w]);
        let want = want.to_f32_vec().unwrap();
        assert!(want.iter().all(|x| x.is_finite()), "{dt:?}: untiled moments not finite");
        let halo = m.encode_halo();
        // A budget just below the untiled arena: the planner tiles.
        let untiled = m.encode_activation_bytes(f, hv, wv).unwrap();
        let planned = m.plan_encode_tiles(f, hv, wv, Some(untiled - 1), 0, None).unwrap();
        assert!(!planned.is_untiled());
        let mut plans = vec![
            planned,
            TilePlan::grid(h, w, 2, 3, halo, 1).unwrap(),
            TilePlan::grid(h, w, 3, 2, halo, 1).unwrap(),
            m.plan_encode_tiles(f, hv, wv, None, 0, Some(64)).unwrap(), // 3x5 tiles of 8 latent px, windows past both neighbours
            TilePlan::untiled(h, w),
        ];
        assert_eq!((plans[3].rows, plans[3].cols), (3, 5));
        let whole = TilePlan::untiled(h, w).whole_chunks();
        assert!(m.encode_tiled_bytes(f, hv, wv, &whole).unwrap() > untiled);
        // The frames part on whole chunks (4 frames per forward): the frame-by-frame runs above give
        // the same bits. In bf16 only: f32 convs run the 3xTF32 kernel, whose partial sums are flushed
        // every 1 or 2 k8 steps as its tile says (kernels/conv3d_tf32.cu), and the tile follows the
        // output count (`ops::conv::tf32::choose_tile`): here down_blocks.5's conv takes 128×192
        // (flush 1) on 4 frames and 128×64 (flush 2) on one on a 132-SM card.
        if dt == DType::BF16 {
            plans.extend([whole, TilePlan::grid(h, w, 2, 3, halo, 1).unwrap().whole_chunks()]);
        }
        for p in &plans {
            let what = format!("{dt:?} {}", p.describe(8));
            dev.synchronize().unwrap();
            let base = dev.memory_stats().in_use;
            dev.reset_peak();
            let got = m.encode_tiled(&e, &video, p, None).unwrap();
            dev.synchronize().unwrap();
            let used = dev.memory_stats().peak - base;
            // Its arena and the f32 moments it returns.
            let moments = (4 * b * 32 * 3 * h * w) as u64;
            assert_eq!(used, m.encode_tiled_bytes(f, hv, wv, p).unwrap() + moments.div_ceil(256) * 256, "{what}: peak above the start vs its arena");
            same(&what, &got.to_f32_vec().unwrap(), &want);
        }
    }
}

/// The encoder's frames part one input frame per forward (the default: conv_in through
/// down_blocks.5's spatial conv, the causal caches carried from frame to frame) against whole chunks
/// (`TilePlan::whole_chunks`): the tiny fixture (tests/fixtures/vae) in fp32 and bf16, two samples
/// of 1, 5 and 9 frames (the first chunk alone, then one and two 4-frame chunks, so the caches cross
/// chunk boundaries after frame-by-frame chunks): the same moments bit for bit, untiled and in 2x2
/// tiles (here windows of the whole frame). In f32 too: the fixture's 4- and 8-channel convs run the
/// narrow kernel, or the 3xTF32 one on its 64×64 tile whether they get 1 frame or 4.
#[test]
fn vae_encode_frame_by_frame_equals_whole_chunks_on_the_fixture() {
    let Some(dev) = common::gpu("vae_encode_frame_by_frame_equals_whole_chunks_on_the_fixture") else { return };
    let (hv, wv) = (24, 40);
    let mut rng = common::rng("vae_encode_frame_by_frame_equals_whole_chunks_on_the_fixture");
    for dt in [DType::F32, DType::BF16] {
        let folder = VaeFolder::open(&common::fixture("vae/vae"), dt, dt).unwrap();
        let m = &folder.model;
        let e = folder.engine(&dev, &m.encoder.units).unwrap();
        for f in [1, 5, 9] {
            let v: Vec<f32> = common::randn(&mut rng, 2 * 3 * f * hv * wv, 0.5).into_iter().map(|x| x.clamp(-1.0, 1.0)).collect();
            let video = Tensor::from_f32(&dev, &[2, 3, f, hv, wv], DType::F32, &v).unwrap();
            let (tl, h, w) = m.latent_dims(f, hv, wv).unwrap();
            let want = m.encode(&e, &video, None).unwrap();
            assert_eq!(want.shape(), [2, 2 * m.cfg.z_dim, tl, h, w]);
            let want = want.to_f32_vec().unwrap();
            assert!(want.iter().all(|x| x.is_finite()), "{dt:?} {f} frames: moments not finite");
            let tiled = TilePlan::grid(h, w, 2, 2, m.encode_halo(), 1).unwrap();
            for p in [TilePlan::untiled(h, w).whole_chunks(), tiled.clone(), tiled.whole_chunks()] {
                let what = format!("{dt:?} {f} frames, {}", p.describe(8));
                same(&what, &m.encode_tiled(&e, &video, &p, None).unwrap().to_f32_vec().unwrap(), &want);
            }
        }
    }
}
