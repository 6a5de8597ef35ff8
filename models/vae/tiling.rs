//! Spatial tiles for the decoder's tail (and, the same way, the encoder's down part: encode.rs),
//! computed exactly.
//!
//! diffusers' `AutoencoderKLWan.tiled_decode` decodes overlapping 256-pixel tiles and blends them
//! linearly, which changes the output. Here every tile computes a window that extends past the pixels
//! it owns by the tail's receptive radius (`WanDecoder3d::tail_radius` in coder.rs, 46 output
//! pixels for Wan2.1, so a halo of 6 latent pixels), and only the owned pixels are kept: each is
//! computed from exactly the values the untiled decode uses, by the same kernels in the same order, so
//! a tiled decode equals the untiled one bit for bit, provided the conv kernels' per-output
//! accumulation order does not depend on the frame width (tests/gpu_vae_tiling.rs asserts equality at
//! Wan2.1's widths; tests/vae_tiling_plan.rs checks the radius).
//!
//! The mid block's attention mixes every pixel of a frame, so no halo makes it exact: it runs, with
//! everything before it and the first up block, on whole frames at latent resolution (the latent
//! part, a few percent of the FLOPs and small buffers); only the tail is tiled.
//!
//! Each tile keeps its own causal feature caches across the latent frames. The tiles whose caches fit
//! the budget together run in one pass over the frames; more tiles take more passes (each recomputes
//! the latent part), the earlier passes' pixels kept on the host and handed out with the last pass, so
//! frames still leave chunk by chunk.

use std::ops::Range;

use wanrt_runtime::{Error, Result};

/// One tile: the latent pixels whose output it produces (`y`, `x`) and the window it computes (the
/// interior grown by the halo, clipped to the frame).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tile {
    pub y: Range<usize>,
    pub x: Range<usize>,
    pub wy: Range<usize>,
    pub wx: Range<usize>,
}

/// How a decode (or an encode: group 1, see encode.rs) covers each latent frame of h × w pixels: `rows` × `cols` tiles with `halo` latent
/// pixels of context, `group` of them per pass over the frames (their caches on the device together).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TilePlan {
    pub h: usize,
    pub w: usize,
    pub rows: usize,
    pub cols: usize,
    pub halo: usize,
    pub group: usize,
    pub tiles: Vec<Tile>,
    /// The decoder's tail runs one output frame at a time after its last temporal upsampler
    /// (`WanDecoder3d::tail_frames`), its spatial upsamplers in row bands; the encoder's frames part
    /// one input frame at a time up to its first temporal downsampler's time_conv
    /// (`WanEncoder3d::down_frames`): the largest activation is one frame instead of a chunk's four
    /// ([`TilePlan::untiled`] and [`TilePlan::grid`] make such plans). False runs those parts on
    /// whole chunks: the same output bit for bit, about 8% faster, more memory ([`STREAM_COST`]; the
    /// planners choose, tests compare the two).
    pub stream: bool,
}

/// How much longer a pass takes frame by frame ([`TilePlan::stream`]) than on whole chunks: the
/// 480p-81f bf16 decode took 0.895 s against 0.825 s and the encode 0.694 s against 0.644 s (H100,
/// `wan bench-vae` with and without `--whole-chunks`). The planners take whole chunks where they fit
/// the budget (and with no budget), frame by frame where only that fits.
pub const STREAM_COST: f64 = 1.08;

/// `n` split into `parts` ranges whose lengths differ by at most one.
fn split(n: usize, parts: usize) -> Vec<Range<usize>> {
    (0..parts).map(|i| i * n / parts..(i + 1) * n / parts).collect()
}

impl TilePlan {
    /// One tile covering the frame: the untiled decode.
    pub fn untiled(h: usize, w: usize) -> TilePlan {
        TilePlan { h, w, rows: 1, cols: 1, halo: 0, group: 1, tiles: vec![Tile { y: 0..h, x: 0..w, wy: 0..h, wx: 0..w }], stream: true }
    }

    /// The same plan with the decoder's tail, or the encoder's frames part, on whole chunks (see
    /// [`TilePlan::stream`]).
    pub fn whole_chunks(self) -> TilePlan {
        TilePlan { stream: false, ..self }
    }

    /// The planners' relative cost of this plan's layout: [`STREAM_COST`] frame by frame, 1 on whole
    /// chunks.
    pub fn layout_cost(&self) -> f64 {
        if self.stream {
            STREAM_COST
        } else {
            1.0
        }
    }

    /// The plan in each layout, whole chunks first (the planners weigh both).
    pub fn layouts(self) -> [TilePlan; 2] {
        [self.clone().whole_chunks(), self]
    }

    /// `rows` × `cols` tiles of near-equal size (row-major), each window `halo` latent pixels past its
    /// interior, `group` per pass (clamped to the tile count).
    pub fn grid(h: usize, w: usize, rows: usize, cols: usize, halo: usize, group: usize) -> Result<TilePlan> {
        if rows == 0 || cols == 0 || rows > h || cols > w || group == 0 {
            return Err(Error::invalid(format!("vae tiling: {rows}x{cols} tiles ({group} per pass) cannot cover a {h}x{w} latent frame")));
        }
        if rows == 1 && cols == 1 {
            return Ok(TilePlan::untiled(h, w));
        }
        let grow = |r: &Range<usize>, n: usize| r.start.saturating_sub(halo)..(r.end + halo).min(n);
        let mut tiles = Vec::with_capacity(rows * cols);
        for y in split(h, rows) {
            for x in split(w, cols) {
                tiles.push(Tile { wy: grow(&y, h), wx: grow(&x, w), y: y.clone(), x });
            }
        }
        let group = group.min(tiles.len());
        Ok(TilePlan { h, w, rows, cols, halo, group, tiles, stream: true })
    }

    pub fn is_untiled(&self) -> bool {
        self.tiles.len() == 1
    }

    /// Passes over the latent frames.
    pub fn passes(&self) -> usize {
        self.tiles.len().div_ceil(self.group)
    }

    /// The tiles of pass `p`.
    pub fn pass(&self, p: usize) -> &[Tile] {
        let start = (p * self.group).min(self.tiles.len());
        &self.tiles[start..(start + self.group).min(self.tiles.len())]
    }

    /// The largest window (rows, columns) in latent pixels.
    pub fn max_window(&self) -> (usize, usize) {
        let m = |f: fn(&Tile) -> usize| self.tiles.iter().map(f).max().unwrap_or(0);
        (m(|t| t.wy.len()), m(|t| t.wx.len()))
    }

    /// Latent pixels the windows cover in all (the tail's work, relative to `h · w` untiled).
    pub fn window_area(&self) -> usize {
        self.tiles.iter().map(|t| t.wy.len() * t.wx.len()).sum()
    }

    /// Checks that the plan was made for an h × w latent frame.
    pub fn check(&self, h: usize, w: usize) -> Result<()> {
        if (self.h, self.w) != (h, w) {
            return Err(Error::invalid(format!("vae tiling: a tile plan for {}x{} latent frames given for {h}x{w}", self.h, self.w)));
        }
        Ok(())
    }

    /// One line for logs and benchmarks, sizes in output pixels (`scale` per latent pixel).
    pub fn describe(&self, scale: usize) -> String {
        let layout = if self.stream { "frame by frame" } else { "whole chunks" };
        if self.is_untiled() {
            return format!("untiled, {layout}");
        }
        let (th, tw) = (self.h.div_ceil(self.rows) * scale, self.w.div_ceil(self.cols) * scale);
        format!(
            "{}x{} tiles of up to {th}x{tw} px, halo {} px, {} per pass ({} pass{}), {layout}",
            self.rows,
            self.cols,
            self.halo * scale,
            self.group,
            self.passes(),
            if self.passes() == 1 { "" } else { "es" }
        )
    }
}

/// Tile counts worth trying along an axis of `n` latent pixels: the fewest tiles for each distinct
/// tile length (more tiles of the same length only add halo).
pub fn counts(n: usize) -> Vec<usize> {
    let mut out: Vec<usize> = Vec::new();
    let mut last = 0;
    for parts in 1..=n {
        let len = n.div_ceil(parts);
        if len != last {
            out.push(parts);
            last = len;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_covers_each_pixel_once_with_clipped_halos() {
        let p = TilePlan::grid(60, 104, 3, 4, 6, 5).unwrap();
        assert_eq!(p.tiles.len(), 12);
        assert_eq!((p.group, p.passes()), (5, 3));
        assert_eq!(p.pass(2).len(), 2);
        let mut owner = vec![0u8; 60 * 104];
        for t in &p.tiles {
            assert!(t.wy.start <= t.y.start && t.wy.end >= t.y.end && t.wx.start <= t.x.start && t.wx.end >= t.x.end);
            // The halo is full on inner edges and clipped at the frame's.
            assert_eq!(t.y.start - t.wy.start, t.y.start.min(6));
            assert_eq!(t.wy.end - t.y.end, (60 - t.y.end).min(6));
            for y in t.y.clone() {
                for x in t.x.clone() {
                    owner[y * 104 + x] += 1;
                }
            }
        }
        assert!(owner.iter().all(|&c| c == 1));
        assert_eq!(p.max_window(), (20 + 12, 26 + 12));
        assert!(TilePlan::grid(4, 4, 5, 1, 6, 1).is_err() && TilePlan::grid(4, 4, 1, 1, 6, 0).is_err());
        assert!(TilePlan::grid(60, 104, 1, 1, 6, 3).unwrap().is_untiled());
        assert_eq!(p.describe(8), "3x4 tiles of up to 160x208 px, halo 48 px, 5 per pass (3 passes), frame by frame");
        assert_eq!(TilePlan::untiled(60, 104).whole_chunks().describe(8), "untiled, whole chunks");
    }

    #[test]
    fn counts_skip_equal_tile_lengths() {
        assert_eq!(counts(10), [1, 2, 3, 4, 5, 10]);
        assert_eq!(counts(1), [1]);
        assert!(counts(90).len() < 20);
    }
}
