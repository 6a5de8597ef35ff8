//! conv3d TFLOP/s (2·M·N·K, M = B·To·Ho·Wo, N = Cout, K = kt·kh·kw·Cin) of `ops::conv::mma` at the Wan
//! VAE's layer shapes, per chunk as the causal loop runs them (diffusers `autoencoder_kl_wan.py`
//! `WanEncoder3d` / `WanDecoder3d` under `AutoencoderKLWan._encode` / `_decode`), at 480p (latent
//! 60×104) and 720p (latent 90×160), batch 1, bf16, and of `ops::conv::tf32` (3xTF32, path `tf32`,
//! `tf32-{tile}`) beside the portable kernel (path `portable`) in f32 (`CONV_BENCH_DTYPES=bf16,f32`,
//! the default, picks the dtypes; `CONV_BENCH_LAYERS=enc.conv_in,dec.up3` times only the layers whose
//! names start with one of those, and then prints no `conv_chunk` lines):
//! - decoder, a steady-state chunk: 1 latent frame in, 2 frames after up_blocks.0, 4 after up_blocks.1,
//!   every causal conv with its 2-frame cache (`prev`);
//! - encoder, a steady-state chunk: 4 frames in, 2 after down_blocks.5, 1 after down_blocks.8; the
//!   stride-2 time convs read 1 cached frame.
//!
//! Each layer line carries `count` (how many convs of that shape one chunk runs): `path` `mma` is the
//! tile [`mma::choose_tile`] picks, `mma-{tile}` every other tile (to tune the table from one run),
//! `wgmma-{tile}` the sm_90a kernel (`ops::conv::wgmma`) on compute capability 9.0, `rows-{tile}` the
//! sm_90a kernel that shares input rows among the kw taps (`ops::conv::wgmma_rows`, every tile of
//! `wgmma_rows::tiles()`) where it takes the layer, and `rows+res` its default tile with a residual
//! added in the epilogue (as each resblock's second conv runs); in f32, `tf32rows` (its default
//! tile) and `tf32rows-{tile}` the sm_90a 3xTF32 kernel that shares them (`ops::conv::wgmma_tf32_rows`)
//! where it takes the layer.
//! Layers of Cout ≤ 8 (the decoder's conv_out) also time `ops::conv::narrow` (path `narrow`, both
//! dtypes), which `ops::conv3d` takes first: where it runs, its time is the one the chunk counts.
//! A `conv_chunk` line per model and resolution sums count × ms of the chosen tiles. `conv_refused`
//! lines name the layers the fast path refuses (encoder conv_in, Cin = 3) with the reason; a
//! `portable` line beside each times the kernel that runs them, and the chunk counts it
//! (`refused_layers` says how many); where `ops::conv::small_cin` takes such a layer (Cin ≤ 4, both
//! dtypes) a `small_cin` line times it too, and the chunk counts it instead when `ops::conv3d` would
//! take it (`WANRT_UNVERIFIED=1` until it is verified on a GPU). First, the
//! dense bf16 GEMM rate of this card through cuBLASLt (`ops::linear`, 8192³) for the "fraction of the
//! GEMM rate" figure.
//!
//! torch's side: `python3 benches/conv_torch.py` (same shapes, F.pad + F.conv3d on cuDNN, bf16,
//! channels_last_3d); `python3 benches/compare.py OURS THEIRS` sets them side by side.
//! Run: `gpu-bundle/bin/conv_bench`.

#[path = "common/mod.rs"]
mod common;

use std::sync::Arc;

use common::{random_tensor, time_ms};

use wanrt::runtime::ops;
use wanrt::runtime::ops::conv::mma::{self, Tile};
use wanrt::runtime::ops::conv::wgmma;
use wanrt::runtime::ops::conv::wgmma_rows;
use wanrt::runtime::ops::conv::wgmma_tf32_rows;
use wanrt::runtime::ops::conv::{self, conv3d_portable, narrow, small_cin, tf32, Conv3dGeom, ConvArgs};
use wanrt::{DType, Device, Result, Tensor};

/// One conv of a chunk: input frames `t` (+ `prev` cached frames) at `h`×`w`.
#[derive(Clone, Copy)]
struct Layer {
    name: &'static str,
    count: usize,
    t: usize,
    prev: usize,
    h: usize,
    w: usize,
    cin: usize,
    cout: usize,
    k: (usize, usize, usize),
    pad_t: usize,
    pad_h: (usize, usize),
    pad_w: (usize, usize),
    stride: (usize, usize, usize),
}

/// 3×3×3 causal conv with a 2-frame cache (pad_t 2 - 2 = 0), 1 pixel of spatial padding.
fn k3(name: &'static str, count: usize, t: usize, h: usize, w: usize, cin: usize, cout: usize) -> Layer {
    Layer { name, count, t, prev: 2, h, w, cin, cout, k: (3, 3, 3), pad_t: 0, pad_h: (1, 1), pad_w: (1, 1), stride: (1, 1, 1) }
}
/// 1×1×1 shortcut.
fn k1(name: &'static str, t: usize, h: usize, w: usize, cin: usize, cout: usize) -> Layer {
    Layer { k: (1, 1, 1), prev: 0, pad_h: (0, 0), pad_w: (0, 0), ..k3(name, 1, t, h, w, cin, cout) }
}
/// Per-frame 2D 3×3 conv, padding 1 (the upsamplers' conv after the nearest ×2).
fn up2d(name: &'static str, t: usize, h: usize, w: usize, cin: usize, cout: usize) -> Layer {
    Layer { k: (1, 3, 3), prev: 0, ..k3(name, 1, t, h, w, cin, cout) }
}
/// Per-frame stride-2 2D 3×3 conv after ZeroPad2d(0, 1, 0, 1) (the downsamplers).
fn down2d(name: &'static str, t: usize, h: usize, w: usize, c: usize) -> Layer {
    Layer { k: (1, 3, 3), prev: 0, pad_h: (0, 1), pad_w: (0, 1), stride: (1, 2, 2), ..k3(name, 1, t, h, w, c, c) }
}
/// (3,1,1) time conv: upsample3d's (Cout = 2·Cin, 2-frame cache) or downsample3d's (stride 2, 1 cached
/// frame).
#[allow(clippy::too_many_arguments)]
fn time_conv(name: &'static str, t: usize, prev: usize, h: usize, w: usize, cin: usize, cout: usize, st: usize) -> Layer {
    Layer { k: (3, 1, 1), prev, pad_h: (0, 0), pad_w: (0, 0), stride: (st, 1, 1), ..k3(name, 1, t, h, w, cin, cout) }
}

/// The decoder's convs for one latent frame at latent size lh×lw (a chunk after the first).
fn decoder(lh: usize, lw: usize) -> Vec<Layer> {
    let (h1, w1, h2, w2, h3, w3) = (2 * lh, 2 * lw, 4 * lh, 4 * lw, 8 * lh, 8 * lw);
    vec![
        k3("dec.conv_in", 1, 1, lh, lw, 16, 384),
        k3("dec.mid+up0.res384", 10, 1, lh, lw, 384, 384),
        time_conv("dec.up0.time_conv", 1, 2, lh, lw, 384, 768, 1),
        up2d("dec.up0.resample", 2, h1, w1, 384, 192),
        k3("dec.up1.res0.conv1", 1, 2, h1, w1, 192, 384),
        k1("dec.up1.res0.shortcut", 2, h1, w1, 192, 384),
        k3("dec.up1.res384", 5, 2, h1, w1, 384, 384),
        time_conv("dec.up1.time_conv", 2, 2, h1, w1, 384, 768, 1),
        up2d("dec.up1.resample", 4, h2, w2, 384, 192),
        k3("dec.up2.res192", 6, 4, h2, w2, 192, 192),
        up2d("dec.up2.resample", 4, h3, w3, 192, 96),
        k3("dec.up3.res96", 6, 4, h3, w3, 96, 96),
        k3("dec.conv_out", 1, 4, h3, w3, 96, 3),
    ]
}

/// The encoder's convs for a chunk of 4 frames at video size (8·lh)×(8·lw) (a chunk after the first).
fn encoder(lh: usize, lw: usize) -> Vec<Layer> {
    let (h1, w1, h2, w2, h3, w3) = (2 * lh, 2 * lw, 4 * lh, 4 * lw, 8 * lh, 8 * lw);
    vec![
        k3("enc.conv_in", 1, 4, h3, w3, 3, 96),
        k3("enc.down0-1.res96", 4, 4, h3, w3, 96, 96),
        down2d("enc.down2.resample", 4, h3, w3, 96),
        k3("enc.down3.conv1", 1, 4, h2, w2, 96, 192),
        k1("enc.down3.shortcut", 4, h2, w2, 96, 192),
        k3("enc.down3-4.res192", 3, 4, h2, w2, 192, 192),
        down2d("enc.down5.resample", 4, h2, w2, 192),
        time_conv("enc.down5.time_conv", 4, 1, h1, w1, 192, 192, 2),
        k3("enc.down6.conv1", 1, 2, h1, w1, 192, 384),
        k1("enc.down6.shortcut", 2, h1, w1, 192, 384),
        k3("enc.down6-7.res384", 3, 2, h1, w1, 384, 384),
        down2d("enc.down8.resample", 2, h1, w1, 384),
        time_conv("enc.down8.time_conv", 2, 1, lh, lw, 384, 384, 2),
        k3("enc.down9-mid.res384", 8, 1, lh, lw, 384, 384),
        k3("enc.conv_out", 1, 1, lh, lw, 384, 32),
    ]
}

/// Times one layer with the chosen tile and every other tile; returns the chosen tile's ms and FLOPs
/// (None when the fast path refuses it). bf16 runs `ops::conv::mma` (and wgmma), f32 `ops::conv::tf32`
/// (3xTF32) beside the portable kernel; Cout ≤ 8 also `ops::conv::narrow`, whose time is then returned
/// (the dispatcher takes it first).
fn bench_layer(dev: &Arc<Device>, model: &str, res: &str, l: &Layer, dt: DType) -> Result<(f64, f64, bool)> {
    let geom = Conv3dGeom { pad_t: l.pad_t, pad_h: l.pad_h, pad_w: l.pad_w, stride: l.stride };
    let x = random_tensor(dev, &[1, l.t, l.h, l.w, l.cin], dt, 1.0, 1)?;
    let prev = if l.prev > 0 { Some(random_tensor(dev, &[1, l.prev, l.h, l.w, l.cin], dt, 1.0, 2)?) } else { None };
    let kdim = l.k.0 * l.k.1 * l.k.2 * l.cin;
    let w = random_tensor(dev, &[l.cout, l.k.0, l.k.1, l.k.2, l.cin], dt, 1.0 / (kdim as f32).sqrt(), 3)?;
    let bias = random_tensor(dev, &[l.cout], dt, 0.1, 4)?;
    let to = (l.pad_t + l.prev + l.t - l.k.0) / l.stride.0 + 1;
    let ho = (l.h + l.pad_h.0 + l.pad_h.1 - l.k.1) / l.stride.1 + 1;
    let wo = (l.w + l.pad_w.0 + l.pad_w.1 - l.k.2) / l.stride.2 + 1;
    let out = Tensor::empty(dev, &[1, to, ho, wo, l.cout], dt)?;
    let shape = format!(
        "[1,{},{},{},{},{},{},{},{},{},{},{},{}]",
        l.t, l.prev, l.h, l.w, l.cin, l.cout, l.k.0, l.k.1, l.k.2, l.stride.0, l.stride.1, l.stride.2
    );
    let head = format!(
        "\"model\":\"{model}\",\"res\":\"{res}\",\"dtype\":\"{dt}\",\"layer\":\"{}\",\"count\":{},\"shape\":{shape}",
        l.name, l.count
    );
    let args = ConvArgs::new(&x, &w, geom, &out).prev(prev.as_ref()).bias(Some(&bias));
    let narrow = bench_narrow(dev, &head, &args)?;
    let chosen = if dt == DType::F32 { bench_layer_f32(dev, &head, &args)? } else { bench_layer_tc(dev, &head, &args)? };
    // ops::conv3d takes the narrow kernel first wherever it runs.
    Ok(narrow.map_or(chosen, |(ms, flops)| (ms, flops, false)))
}

/// The narrow-output kernel (`ops::conv::narrow`) on a layer it takes (Cout ≤ 8): one `narrow` line
/// (the default output frames per CTA, `narrow::default_frames`), its ms and FLOPs, and at Cout ≤ 3 a
/// `narrow-f{n}` line for the other grouping (1 or 4 frames); `None` (nothing printed) where it refuses.
fn bench_narrow(dev: &Arc<Device>, head: &str, args: &ConvArgs) -> Result<Option<(f64, f64)>> {
    if narrow::refusal(args).is_some() {
        return Ok(None);
    }
    let (w, out) = (args.w, args.out);
    let (b, to, ho, wo, cout) = (out.dim(0), out.dim(1), out.dim(2), out.dim(3), out.dim(4));
    let (kt, kh, kw, cin) = (w.dim(1), w.dim(2), w.dim(3), w.dim(4));
    let (m, k) = (b * to * ho * wo, kt * kh * kw * cin);
    let flops = 2.0 * m as f64 * cout as f64 * k as f64;
    let ms = time_ms(dev, || narrow::conv3d_narrow(args))?;
    // Output rows × columns per CTA (kernels/conv3d_narrow.cu), and output frames per CTA.
    let tile = "16x32";
    let chosen = narrow::default_frames(cout, to);
    println!(
        "{{\"bench\":\"conv\",{head},\"m\":{m},\"n\":{cout},\"k\":{k},\"path\":\"narrow\",\"tile\":\"{tile}\",\"frames\":{chosen},\"ms\":{ms:.4},\"tflops\":{:.1}}}",
        flops / ms / 1e9
    );
    // The other grouping beside the default.
    let other = if chosen == 1 { narrow::FRAMES } else { 1 };
    if cout <= narrow::MAX_GROUP_COUT {
        let ms = time_ms(dev, || narrow::conv3d_narrow_with_frames(args, Some(other)))?;
        println!(
            "{{\"bench\":\"conv\",{head},\"m\":{m},\"n\":{cout},\"k\":{k},\"path\":\"narrow-f{other}\",\"tile\":\"{tile}\",\"frames\":{other},\"ms\":{ms:.4},\"tflops\":{:.1}}}",
            flops / ms / 1e9
        );
    }
    Ok(Some((ms, flops)))
}

/// A layer every tensor-core path refuses (the encoder's conv_in, Cin = 3) runs on the portable
/// kernel in `ops::conv3d`: its time (`path` `portable`), and where `ops::conv::small_cin` takes the
/// layer that kernel's time beside it (`path` `small_cin`, tile rows × columns × channel block). The
/// chunk counts the one `ops::conv3d` runs.
fn bench_refused(dev: &Arc<Device>, head: &str, args: &ConvArgs, why: &wanrt::Error) -> Result<(f64, f64, bool)> {
    let (w, out) = (args.w, args.out);
    let reason = why.to_string().replace('\\', "\\\\").replace('"', "'");
    println!("{{\"bench\":\"conv_refused\",{head},\"reason\":\"{reason}\"}}");
    let ms = time_ms(dev, || conv3d_portable(args))?;
    // M = B·To·Ho·Wo output positions (out is channels-last), N = Cout, K = the taps × Cin (w is [Cout, k..., Cin]).
    let (m, n) = (out.numel() as usize / out.dim(4), w.dim(0));
    let k = w.numel() as usize / n;
    let flops = 2.0 * m as f64 * n as f64 * k as f64;
    println!("{{\"bench\":\"conv\",{head},\"m\":{m},\"n\":{n},\"k\":{k},\"path\":\"portable\",\"tile\":\"m64n64\",\"ms\":{ms:.4},\"tflops\":{:.1}}}", flops / ms / 1e9);
    if small_cin::refusal(args).is_some() {
        return Ok((ms, flops, true));
    }
    let small_ms = time_ms(dev, || small_cin::conv3d_small_cin(args))?;
    println!(
        "{{\"bench\":\"conv\",{head},\"m\":{m},\"n\":{n},\"k\":{k},\"path\":\"small_cin\",\"tile\":\"16x32x32\",\"ms\":{small_ms:.4},\"tflops\":{:.1}}}",
        flops / small_ms / 1e9
    );
    let taken = conv::chosen_path(args) == "small_cin";
    Ok((if taken { small_ms } else { ms }, flops, true))
}

/// The bf16/f16 side of [`bench_layer`]: the mma.sync tile [`mma::choose_tile`] picks, every other tile,
/// and the wgmma tiles on compute capability 9.0; the chosen tile's ms and FLOPs.
fn bench_layer_tc(dev: &Arc<Device>, head: &str, args: &ConvArgs) -> Result<(f64, f64, bool)> {
    if let Some(e) = mma::refusal(args) {
        return bench_refused(dev, head, args, &e);
    }
    let pb = mma::problem(args)?;
    let flops = pb.flops();
    let chosen = mma::choose_tile(pb.m(), pb.cout, dev.sm_count());
    let mut runs: Vec<(String, Tile)> = vec![("mma".into(), chosen)];
    runs.extend(mma::tiles().iter().filter(|&&t| t != chosen).map(|&t| (format!("mma-{}", t.name()), t)));
    let mut chosen_ms = 0.0;
    for (path, tile) in runs {
        let ms = time_ms(dev, || mma::conv3d_mma_with_tile(args, tile))?;
        if path == "mma" {
            chosen_ms = ms;
        }
        println!(
            "{{\"bench\":\"conv\",{head},\"m\":{},\"n\":{},\"k\":{},\"path\":\"{path}\",\"tile\":\"{}\",\"ms\":{ms:.4},\"tflops\":{:.1}}}",
            pb.m(),
            pb.cout,
            pb.k(),
            tile.name(),
            flops / ms / 1e9
        );
    }
    let line = |path: String, tile: String, ms: f64| {
        println!(
            "{{\"bench\":\"conv\",{head},\"m\":{},\"n\":{},\"k\":{},\"path\":\"{path}\",\"tile\":\"{tile}\",\"ms\":{ms:.4},\"tflops\":{:.1}}}",
            pb.m(),
            pb.cout,
            pb.k(),
            flops / ms / 1e9
        )
    };
    // The wgmma kernels (compute capability 9.0), beside the mma.sync tiles: per-tap gathers, and input
    // rows shared by the kw taps where that kernel takes the layer (every tile whose block divides Cin).
    if wgmma::refusal(args).is_none() {
        for &tile in wgmma::tiles() {
            let ms = time_ms(dev, || wgmma::conv3d_wgmma_with_tile(args, tile))?;
            line(format!("wgmma-{}", tile.name()), tile.name(), ms);
        }
    }
    if wgmma_rows::refusal(args).is_none() {
        for &tile in wgmma_rows::tiles().iter().filter(|t| pb.cin % t.block_k as usize == 0) {
            let ms = time_ms(dev, || wgmma_rows::conv3d_wgmma_rows_with_tile(args, tile))?;
            line(format!("rows-{}", tile.name()), tile.name(), ms);
        }
        // The default tile with a residual added in the epilogue, as the second conv of every resblock
        // runs (diffusers `WanResidualBlock`: conv2's output + the shortcut).
        let tile = wgmma_rows::row_tile(&pb, dev.sm_count() as usize);
        let res = random_tensor(dev, args.out.shape(), args.out.dtype(), 1.0, 5)?;
        let with_res = args.residual(Some(&res));
        let ms = time_ms(dev, || wgmma_rows::conv3d_wgmma_rows_with_tile(&with_res, tile))?;
        line("rows+res".into(), tile.name(), ms);
    }
    Ok((chosen_ms, flops, false))
}

/// The f32 side of [`bench_layer`]: the 3xTF32 kernel's chosen tile, every other tile, the sm_90a
/// row-sharing 3xTF32 kernel's tiles where it takes the layer, and the portable kernel (`path`
/// `portable`, what f32 ran before).
fn bench_layer_f32(dev: &Arc<Device>, head: &str, args: &ConvArgs) -> Result<(f64, f64, bool)> {
    let line = |path: &str, tile: &str, pb: &mma::Problem, ms: f64| {
        println!(
            "{{\"bench\":\"conv\",{head},\"m\":{},\"n\":{},\"k\":{},\"path\":\"{path}\",\"tile\":\"{tile}\",\"ms\":{ms:.4},\"tflops\":{:.1}}}",
            pb.m(),
            pb.cout,
            pb.k(),
            pb.flops() / ms / 1e9
        )
    };
    if let Some(e) = tf32::refusal(args) {
        return bench_refused(dev, head, args, &e);
    }
    let pb = tf32::problem(args)?;
    let chosen = tf32::choose_tile(pb.m(), pb.cout, dev.sm_count());
    let mut runs: Vec<(String, tf32::Tile)> = vec![("tf32".into(), chosen)];
    runs.extend(tf32::tiles().iter().filter(|&&t| t != chosen).map(|&t| (format!("tf32-{}", t.name()), t)));
    let mut chosen_ms = 0.0;
    for (path, tile) in runs {
        let ms = time_ms(dev, || tf32::conv3d_tf32_with_tile(args, tile))?;
        if path == "tf32" {
            chosen_ms = ms;
        }
        line(&path, &tile.name(), &pb, ms);
    }
    // The sm_90a 3xTF32 kernel that shares input rows among the kw taps (`ops::conv::wgmma_tf32_rows`)
    // where it takes the layer: its default tile (`tf32rows`) and every other tile (`tf32rows-{tile}`).
    if wgmma_tf32_rows::refusal(args).is_none() {
        let default = wgmma_tf32_rows::default_tile(pb.cout);
        let ms = time_ms(dev, || wgmma_tf32_rows::conv3d_wgmma_tf32_rows(args))?;
        line("tf32rows", &default.name(), &pb, ms);
        for &tile in wgmma_tf32_rows::tiles().iter().filter(|&&t| t != default) {
            let ms = time_ms(dev, || wgmma_tf32_rows::conv3d_wgmma_tf32_rows_with_tile(args, tile))?;
            line(&format!("tf32rows-{}", tile.name()), &tile.name(), &pb, ms);
        }
    }
    let ms = time_ms(dev, || conv3d_portable(args))?;
    line("portable", "m64n64", &pb, ms);
    Ok((chosen_ms, pb.flops(), false))
}

/// cuBLASLt bf16 GEMM rate, 8192³ (the denominator of "fraction of the GEMM rate").
fn gemm_rate(dev: &Arc<Device>) -> Result<()> {
    let n = 8192usize;
    let a = random_tensor(dev, &[n, n], DType::BF16, 1.0, 5)?;
    let b = random_tensor(dev, &[n, n], DType::BF16, 1.0 / (n as f32).sqrt(), 6)?;
    let out = Tensor::empty(dev, &[n, n], DType::BF16)?;
    let ms = time_ms(dev, || ops::linear(&a, &b, None, &out))?;
    let flops = 2.0 * (n * n) as f64 * n as f64;
    println!("{{\"bench\":\"gemm_rate\",\"m\":{n},\"n\":{n},\"k\":{n},\"ms\":{ms:.4},\"tflops\":{:.1}}}", flops / ms / 1e9);
    Ok(())
}

fn main() {
    let dev = match Device::get(0) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("conv_bench needs a GPU: {e}");
            std::process::exit(2);
        }
    };
    eprintln!("device: {} ({}), {} SMs", dev.name(), dev.arch(), dev.sm_count());
    let mut failed = false;
    if let Err(e) = gemm_rate(&dev) {
        eprintln!("gemm rate failed: {e}");
        failed = true;
    }
    // `CONV_BENCH_DTYPES=bf16,f32` (the default: both) picks the dtypes timed.
    let dtypes: Vec<DType> = std::env::var("CONV_BENCH_DTYPES")
        .unwrap_or_else(|_| "bf16,f32".into())
        .split(',')
        .filter_map(|d| DType::parse(d.trim()))
        .collect();
    let only: Vec<String> = std::env::var("CONV_BENCH_LAYERS").unwrap_or_default().split(',').map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect();
    let wanted = |name: &str| only.is_empty() || only.iter().any(|o| name.starts_with(o.as_str()));
    for &dt in &dtypes {
        for (res, lh, lw) in [("480p", 60, 104), ("720p", 90, 160)] {
            for (model, layers) in [("decoder", decoder(lh, lw)), ("encoder", encoder(lh, lw))] {
                let (mut total_ms, mut total_flops, mut refused) = (0.0, 0.0, 0);
                for l in layers.iter().filter(|l| wanted(l.name)) {
                    match bench_layer(&dev, model, res, l, dt) {
                        Ok((ms, flops, portable)) => {
                            total_ms += ms * l.count as f64;
                            total_flops += flops * l.count as f64;
                            refused += portable as usize;
                        }
                        Err(e) => {
                            eprintln!("conv {model} {res} {} failed: {e}", l.name);
                            failed = true;
                        }
                    }
                }
                if !only.is_empty() {
                    continue;
                }
                // bf16 keeps the shape key benches/compare.py pairs with conv_torch.py's lines.
                let (path, key) = if dt == DType::F32 { ("tf32", format!(",\"{dt}\"")) } else { ("mma", String::new()) };
                println!(
                    "{{\"bench\":\"conv_chunk\",\"model\":\"{model}\",\"res\":\"{res}\",\"dtype\":\"{dt}\",\"shape\":[\"{model}\",\"{res}\"{key}],\"path\":\"{path}\",\"ms\":{total_ms:.3},\"tflops\":{:.1},\"refused_layers\":{refused}}}",
                    total_flops / total_ms / 1e9
                );
            }
        }
    }
    if failed {
        std::process::exit(1);
    }
}
