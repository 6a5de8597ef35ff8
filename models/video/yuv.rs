//! RGB to YUV 4:2:0 (I420) with BT.601 limited-range coefficients, rounded: what players assume for an
//! H.264 stream flagged `smpte170m`/limited range (the encoder's VUI says so), and what ffmpeg's
//! swscale writes by default for `-pix_fmt yuv420p`.

/// Planar I420 (Y, then U, then V at half size each way) of packed RGB (H, W, 3); H and W even.
pub fn rgb_to_i420(rgb: &[u8], width: usize, height: usize) -> Vec<u8> {
    let (cw, ch) = (width / 2, height / 2);
    let mut out = vec![0u8; width * height + 2 * cw * ch];
    let (y_plane, uv) = out.split_at_mut(width * height);
    let (u_plane, v_plane) = uv.split_at_mut(cw * ch);
    let px = |x: usize, y: usize| {
        let i = (y * width + x) * 3;
        (rgb[i] as f32, rgb[i + 1] as f32, rgb[i + 2] as f32)
    };
    // ITU-R BT.601, 8-bit studio range: Y in [16, 235], Cb/Cr in [16, 240].
    let luma = |(r, g, b): (f32, f32, f32)| (16.0 + (65.481 * r + 128.553 * g + 24.966 * b) / 255.0).round().clamp(0.0, 255.0) as u8;
    for y in 0..height {
        for x in 0..width {
            y_plane[y * width + x] = luma(px(x, y));
        }
    }
    for j in 0..ch {
        for i in 0..cw {
            // Chroma of the 2×2 block's mean (centered siting, as swscale's default box filter).
            let (mut r, mut g, mut b) = (0.0, 0.0, 0.0);
            for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                let p = px(2 * i + dx, 2 * j + dy);
                r += p.0;
                g += p.1;
                b += p.2;
            }
            let (r, g, b) = (r / 4.0, g / 4.0, b / 4.0);
            let cb = 128.0 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255.0;
            let cr = 128.0 + (112.0 * r - 93.786 * g - 18.214 * b) / 255.0;
            u_plane[j * cw + i] = cb.round().clamp(0.0, 255.0) as u8;
            v_plane[j * cw + i] = cr.round().clamp(0.0, 255.0) as u8;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn studio_range_extremes() {
        let black = rgb_to_i420(&[0; 12], 2, 2);
        assert_eq!(black, vec![16, 16, 16, 16, 128, 128]);
        let white = rgb_to_i420(&[255; 12], 2, 2);
        assert_eq!(white, vec![235, 235, 235, 235, 128, 128]);
        let red = rgb_to_i420(&[255, 0, 0].repeat(4), 2, 2);
        assert_eq!(red, vec![81, 81, 81, 81, 90, 240]);
    }
}
