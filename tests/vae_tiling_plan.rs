//! The decoder's and the encoder's tile planners and the size checks, on the CPU (no device, no weights): Wan2.1's
//! published shapes (diffusers `AutoencoderKLWan` defaults, base_dim 96, z_dim 16).

use wanrt::models::vae::{AutoencoderKLWan, TilePlan, VaeConfig};
use wanrt::DType;

fn wan21() -> AutoencoderKLWan {
    AutoencoderKLWan::new(&VaeConfig::wan2_1(), DType::F32, DType::BF16).unwrap()
}

#[test]
fn halo_covers_the_tail_receptive_radius() {
    let m = wan21();
    // up_blocks.1..3, their upsamplers and conv_out: 46 output pixels, 6 latent pixels rounded up.
    assert_eq!(m.decoder.module.tail_radius(), 46);
    assert_eq!(m.decode_halo(), 6);
}

#[test]
fn budget_picks_tiles_and_too_small_names_the_minimum() {
    let m = wan21();
    let (t, h, w) = (21, 60, 104); // 480p-81f
    let untiled = m.decode_activation_bytes(t, h, w).unwrap();
    // No budget, or a large one: untiled.
    assert!(m.plan_decode_tiles(t, h, w, None, 0, None).unwrap().is_untiled());
    assert!(m.plan_decode_tiles(t, h, w, Some(untiled), 0, None).unwrap().is_untiled());
    // Just below: tiled, and what it allocates fits.
    let p = m.plan_decode_tiles(t, h, w, Some(untiled - 1), 0, None).unwrap();
    assert!(!p.is_untiled());
    assert!(m.decode_tiled_bytes(t, h, w, &p).unwrap() < untiled);
    // Below the least any plan with at most 3 tiles needs: at least 4 tiles.
    let least3 = [(1, 2), (2, 1), (1, 3), (3, 1)]
        .iter()
        .map(|&(r, c)| m.decode_tiled_bytes(t, h, w, &TilePlan::grid(h, w, r, c, m.decode_halo(), 1).unwrap()).unwrap())
        .min()
        .unwrap();
    let p4 = m.plan_decode_tiles(t, h, w, Some(least3 - 1), 0, None).unwrap();
    assert!(p4.tiles.len() >= 4, "{}", p4.describe(8));
    assert!(m.decode_tiled_bytes(t, h, w, &p4).unwrap() < least3);
    // A budget too small for any tile: the error names the minimum.
    let err = m.plan_decode_tiles(t, h, w, Some(1 << 20), 0, None).unwrap_err().to_string();
    assert!(err.contains("needs at least") && err.contains("the budget is 1.00 MiB"), "{err}");
    // The overhead counts against the budget.
    let err = m.plan_decode_tiles(t, h, w, Some(untiled), untiled, None).unwrap_err().to_string();
    assert!(err.contains("needs at least"), "{err}");
}

#[test]
fn forced_tile_sizes() {
    let m = wan21();
    let p = m.plan_decode_tiles(21, 60, 104, None, 0, Some(256)).unwrap();
    assert_eq!((p.rows, p.cols), (2, 4));
    assert!(p.describe(8).starts_with("2x4 tiles of up to 240x208 px, halo 48 px"), "{}", p.describe(8));
    for bad in [0, 100] {
        let err = m.plan_decode_tiles(21, 60, 104, None, 0, Some(bad)).unwrap_err().to_string();
        assert!(err.contains("positive multiple of 8"), "{bad}: {err}");
    }
    // A forced tile that does not fit the budget is an error naming what it needs.
    let err = m.plan_decode_tiles(21, 60, 104, Some(1 << 20), 0, Some(256)).unwrap_err().to_string();
    assert!(err.contains("with 256-pixel tiles needs at least"), "{err}");
    // A plan made for another grid is refused.
    assert!(m.decode_tiled_bytes(21, 60, 104, &TilePlan::untiled(90, 160)).is_err());
}

#[test]
fn sizes_the_vae_cannot_take_are_errors() {
    let m = wan21();
    for (f, h, w) in [(0, 480, 832), (2, 480, 832), (80, 480, 832), (81, 479, 832), (81, 480, 830), (81, 0, 832)] {
        assert!(m.latent_dims(f, h, w).is_err(), "{f}x{h}x{w}");
    }
    assert_eq!(m.latent_dims(81, 480, 832).unwrap(), (21, 60, 104));
    assert!(m.video_dims(0, 60, 104).is_err() && m.video_dims(21, 0, 104).is_err());
    assert_eq!(m.video_dims(21, 60, 104).unwrap(), (81, 480, 832));
    assert!(m.plan_decode_tiles(0, 60, 104, Some(1 << 40), 0, None).is_err());
}

#[test]
fn decoder_flops_match_the_published_estimate() {
    // The figures: about 275 TFLOP at 480p-81f and 640 TFLOP at 720p-81f (every conv tap).
    let m = wan21();
    let f480 = m.decode_flops(21, 60, 104) / 1e12;
    let f720 = m.decode_flops(21, 90, 160) / 1e12;
    assert!((200.0..350.0).contains(&f480), "480p: {f480:.1} TFLOP");
    assert!((500.0..800.0).contains(&f720), "720p: {f720:.1} TFLOP");
}

#[test]
fn a_720p_81f_decode_plans_inside_3_gib() {
    let m = wan21();
    // What `wan bench-vae --vram 3GiB` charges besides the arena: bf16 weights, cuBLASLt's 32 MiB
    // workspace, the f32 latents.
    let overhead = m.decoder.units.total_bytes() + (32 << 20) + 4 * 16 * 21 * 90 * 160;
    let p = m.plan_decode_tiles(21, 90, 160, Some(3 << 30), overhead, None).unwrap();
    let bytes = m.decode_tiled_bytes(21, 90, 160, &p).unwrap();
    assert!(bytes + overhead <= 3 << 30, "{}: {bytes} + {overhead}", p.describe(8));
    eprintln!("720p-81f in 3 GiB: {} ({} MiB of activations)", p.describe(8), bytes >> 20);
}

/// The budget tools/parity/vae_full_size.py gives `wan vae decode` at 480p-17f (bf16): below what any
/// plan of at most 3 tiles needs (with what the CLI charges besides the arena), above one tile's.
#[test]
fn the_parity_script_budget_forces_four_tiles_at_480p_17f() {
    let m = wan21();
    let (t, h, w) = (5, 60, 104);
    let overhead = m.decoder.units.total_bytes() + (32 << 20) + ((4 * 16 * t * h * w) as u64).div_ceil(256) * 256;
    let budget: u64 = PARITY_BUDGET_MIB << 20;
    let p = m.plan_decode_tiles(t, h, w, Some(budget), overhead, None).unwrap();
    assert!(p.tiles.len() >= 4, "{}", p.describe(8));
    eprintln!("480p-17f in {PARITY_BUDGET_MIB} MiB: {}", p.describe(8));
}

const PARITY_BUDGET_MIB: u64 = 1200;

/// Issue 16's memory target: the untiled 480p-81f bf16 decode (`wan bench-vae --op decode`: its
/// arena, the bf16 weights and the f32 latents above what was allocated before) at most half of
/// diffusers' peak there (4.62 GiB, BENCHMARKS.md, `benches/vae_diffusers.py`); 720p-81f likewise
/// (10.35 GiB).
#[test]
fn untiled_bf16_decodes_peak_under_half_of_diffusers() {
    let m = wan21();
    for ((t, h, w), diffusers_gib) in [((21, 60, 104), 4.62), ((21, 90, 160), 10.35)] {
        let arena = m.decode_activation_bytes(t, h, w).unwrap();
        let peak = arena + m.decoder.units.total_bytes() + (4 * 16 * t * h * w) as u64;
        let gib = peak as f64 / (1u64 << 30) as f64;
        eprintln!("{t}x{h}x{w}: {gib:.3} GiB ({} MiB of activations), {:.2}x diffusers", arena >> 20, gib / diffusers_gib);
        assert!(gib <= 0.5 * diffusers_gib, "{t}x{h}x{w}: {gib:.3} GiB");
        // The tail on whole chunks needs more (see TilePlan::stream).
        assert!(m.decode_tiled_bytes(t, h, w, &TilePlan::untiled(h, w).whole_chunks()).unwrap() > arena + (700 << 20));
    }
}

#[test]
fn encode_halo_covers_the_down_part_receptive_radius() {
    let m = wan21();
    // conv_in 1, down_blocks.0-1 4, downsampler 2, down_blocks.3-4 8, downsampler 4, down_blocks.6-7
    // 16, downsampler 8: 43 input pixels, 6 latent pixels rounded up.
    assert_eq!(m.encoder.module.down_radius(), 43);
    assert_eq!(m.encoder.module.down_scale(), 8);
    assert_eq!(m.encode_halo(), 6);
}

/// What the pipeline charges the I2V condition's encode besides its arena (fp32 weights, cuBLASLt's
/// workspace, the fp32 video upload and the f32 moments).
fn encode_overhead(m: &AutoencoderKLWan, (f, h, w): (usize, usize, usize)) -> u64 {
    let round = |b: usize| (b as u64).div_ceil(256) * 256;
    m.encoder.units.total_bytes() + (32 << 20) + round(4 * 3 * f * h * w) + round(4 * 32 * (1 + (f - 1) / 4) * (h / 8) * (w / 8))
}

/// The I2V-14B 720p condition encode (fp32): untiled it fits 8 GiB with its frames part frame by
/// frame (the default), not on whole chunks; the planner tiles it inside 4 and 6 GiB.
#[test]
fn a_720p_81f_fp32_encode_plans_tiles_inside_4_and_6_gib() {
    let m = wan21();
    let (f, h, w) = (81, 720, 1280);
    let overhead = encode_overhead(&m, (f, h, w));
    let untiled = m.encode_activation_bytes(f, h, w).unwrap();
    assert_eq!(untiled, m.encode_tiled_bytes(f, h, w, &TilePlan::untiled(90, 160)).unwrap());
    let whole = m.encode_tiled_bytes(f, h, w, &TilePlan::untiled(90, 160).whole_chunks()).unwrap();
    eprintln!("720p-81f fp32 encode untiled: {} MiB of activations ({} on whole chunks), {} MiB with the overhead", untiled >> 20, whole >> 20, (untiled + overhead) >> 20);
    assert!(whole + overhead > 8 << 30, "{whole}");
    assert!(untiled + overhead <= 8 << 30 && untiled + overhead > 6 << 30, "{untiled}");
    assert!(m.plan_encode_tiles(f, h, w, None, overhead, None).unwrap().is_untiled());
    assert!(m.plan_encode_tiles(f, h, w, Some(untiled + overhead), overhead, None).unwrap().is_untiled());
    for gib in [4u64, 6] {
        let p = m.plan_encode_tiles(f, h, w, Some(gib << 30), overhead, None).unwrap();
        let bytes = m.encode_tiled_bytes(f, h, w, &p).unwrap();
        assert!(!p.is_untiled() && bytes + overhead <= gib << 30, "{}: {bytes} + {overhead}", p.describe(8));
        assert_eq!((p.group, p.halo), (1, 6));
        // Frame by frame only where the same tiles on whole chunks (cheaper) do not fit.
        if p.stream {
            assert!(m.encode_tiled_bytes(f, h, w, &p.clone().whole_chunks()).unwrap() + overhead > gib << 30, "{}", p.describe(8));
        }
        eprintln!("720p-81f fp32 encode in {gib} GiB: {} ({} MiB of activations, {} MiB in all)", p.describe(8), bytes >> 20, (bytes + overhead) >> 20);
    }
}

/// The untiled 480p-81f bf16 encode as `wan bench-vae --op encode` measures it (its arena, the bf16
/// weights, the f32 video and moments) at most half of diffusers' peak there (3.62 GiB,
/// BENCHMARKS.md, `benches/vae_diffusers.py`): its frames part frame by frame (the default). On
/// whole chunks that part's activations are four frames, not one: 600 MiB more.
#[test]
fn untiled_bf16_encode_peaks_under_half_of_diffusers() {
    let m = AutoencoderKLWan::new(&VaeConfig::wan2_1(), DType::BF16, DType::BF16).unwrap();
    for ((f, h, w), diffusers_gib) in [((81, 480, 832), Some(3.62)), ((81, 720, 1280), None)] {
        let (tl, hl, wl) = m.latent_dims(f, h, w).unwrap();
        let arena = m.encode_activation_bytes(f, h, w).unwrap();
        let whole = m.encode_tiled_bytes(f, h, w, &TilePlan::untiled(hl, wl).whole_chunks()).unwrap();
        let peak = arena + m.encoder.units.total_bytes() + (4 * (3 * f * h * w + 32 * tl * hl * wl)) as u64;
        let gib = peak as f64 / (1u64 << 30) as f64;
        eprintln!("{f}x{h}x{w} bf16 encode: {gib:.3} GiB ({arena} bytes of activations; {whole} on whole chunks)");
        assert!(whole > arena + (600 << 20), "{f}x{h}x{w}: {arena} vs {whole} on whole chunks");
        if let Some(d) = diffusers_gib {
            assert!(gib <= 0.5 * d, "{f}x{h}x{w}: {gib:.3} GiB");
        }
    }
}

#[test]
fn encode_budget_too_small_and_bad_tiles_are_errors() {
    let m = wan21();
    let (f, h, w) = (81, 480, 832);
    let err = m.plan_encode_tiles(f, h, w, Some(1 << 20), 0, None).unwrap_err().to_string();
    assert!(err.contains("vae encode") && err.contains("needs at least") && err.contains("the budget is 1.00 MiB"), "{err}");
    for bad in [0, 12, 100] {
        let err = m.plan_encode_tiles(f, h, w, None, 0, Some(bad)).unwrap_err().to_string();
        assert!(err.contains(&format!("--tile {bad}")) && err.contains("positive multiple of 8"), "{bad}: {err}");
    }
    // A forced size: 256-pixel tiles of a 60x104 latent grid are 2x4, whatever the budget.
    let p = m.plan_encode_tiles(f, h, w, None, 0, Some(256)).unwrap();
    assert_eq!((p.rows, p.cols, p.tiles.len()), (2, 4, 8));
    let err = m.plan_encode_tiles(f, h, w, Some(1 << 20), 0, Some(256)).unwrap_err().to_string();
    assert!(err.contains("with 256-pixel tiles needs at least"), "{err}");
    // Just below the untiled arena: tiled, and what it allocates fits.
    let untiled = m.encode_activation_bytes(f, h, w).unwrap();
    let p = m.plan_encode_tiles(f, h, w, Some(untiled - 1), 0, None).unwrap();
    assert!(!p.is_untiled() && m.encode_tiled_bytes(f, h, w, &p).unwrap() < untiled, "{}", p.describe(8));
    // A plan made for another grid is refused; a single frame tiles too.
    assert!(m.encode_tiled_bytes(f, h, w, &TilePlan::untiled(90, 160)).is_err());
    let one = m.plan_encode_tiles(1, h, w, None, 0, Some(128)).unwrap();
    assert!(m.encode_tiled_bytes(1, h, w, &one).unwrap() < m.encode_tiled_bytes(f, h, w, &one).unwrap());
}

/// The planners' layout choice (480p-81f bf16): with no budget, or one that holds it, untiled on whole
/// chunks (the faster layout); with a budget between the two layouts' needs, untiled frame by frame.
#[test]
fn planners_take_whole_chunks_where_they_fit() {
    let m = AutoencoderKLWan::new(&VaeConfig::wan2_1(), DType::BF16, DType::BF16).unwrap();
    let (f, h, w) = (81, 480, 832);
    let (t, hl, wl) = m.latent_dims(f, h, w).unwrap();
    let frames = m.decode_tiled_bytes(t, hl, wl, &TilePlan::untiled(hl, wl)).unwrap();
    let chunks = m.decode_tiled_bytes(t, hl, wl, &TilePlan::untiled(hl, wl).whole_chunks()).unwrap();
    assert!(chunks > frames);
    for (budget, stream) in [(None, false), (Some(chunks), false), (Some(chunks - 1), true), (Some(frames), true)] {
        let p = m.plan_decode_tiles(t, hl, wl, budget, 0, None).unwrap();
        assert!(p.is_untiled() && p.stream == stream, "decode, budget {budget:?}: {} stream {}", p.describe(8), p.stream);
    }
    let frames = m.encode_tiled_bytes(f, h, w, &TilePlan::untiled(hl, wl)).unwrap();
    let chunks = m.encode_tiled_bytes(f, h, w, &TilePlan::untiled(hl, wl).whole_chunks()).unwrap();
    assert!(chunks > frames);
    for (budget, stream) in [(None, false), (Some(chunks), false), (Some(chunks - 1), true), (Some(frames), true)] {
        let p = m.plan_encode_tiles(f, h, w, budget, 0, None).unwrap();
        assert!(p.is_untiled() && p.stream == stream, "encode, budget {budget:?}: {} stream {}", p.describe(8), p.stream);
    }
}
