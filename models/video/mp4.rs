//! H.264 in MP4: OpenH264 (Cisco's encoder, built from the `openh264` crate's bundled source) and the
//! pure-Rust `mp4` muxer. Constrained-baseline-style I/P stream in yuv420p, which browsers' video
//! elements, ffmpeg and torchvision all play; every frame is encoded (frame skipping off) at a bitrate
//! that scales with the pixel rate.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use mp4::{AvcConfig, FourCC, MediaConfig, Mp4Config, Mp4Sample, Mp4Writer, TrackConfig, TrackType};
use openh264::encoder::{BitRate, Complexity, Encoder, EncoderConfig, FrameRate, FrameType, IntraFramePeriod, QpRange, RateControlMode, UsageType, VuiConfig};
use openh264::formats::YUVBuffer;
use openh264::OpenH264API;
use wanrt_runtime::{Error, Result};

use super::yuv::rgb_to_i420;

/// Bits per pixel per frame the rate control aims at: 0.2 gives ~1.3 Mbit/s at 832×480×16 fps and
/// ~3 Mbit/s at 1280×720×16 fps, clean for generated video (0.1 is about the floor for H.264 baseline).
const BITS_PER_PIXEL: f64 = 0.2;

/// The highest quantizer the rate control may pick (0 best … 51 coarsest).
const MAX_QP: u8 = 26;

/// The target bitrate for a size and frame rate (at least 256 kbit/s for tiny videos).
pub fn bitrate(width: usize, height: usize, fps: u32) -> u32 {
    ((width * height) as f64 * fps as f64 * BITS_PER_PIXEL).clamp(256_000.0, u32::MAX as f64) as u32
}

/// Refuses what yuv420p cannot hold: odd sizes (chroma is subsampled 2×2).
pub fn check_size(width: usize, height: usize) -> Result<()> {
    if width % 2 == 1 || height % 2 == 1 || width == 0 || height == 0 {
        return Err(Error::invalid(format!(
            "an H.264 yuv420p video needs an even width and height, and this one is {width}×{height}; write PNG frames (--out DIR/) or crop the video"
        )));
    }
    if width > 4096 || height > 2304 {
        return Err(Error::invalid(format!("{width}×{height} is over H.264 level 5.1's 4096×2304")));
    }
    Ok(())
}

/// Encodes RGB frames one at a time into an MP4 file.
pub struct Mp4Encoder {
    path: PathBuf,
    encoder: Encoder,
    muxer: Option<Mp4Writer<BufWriter<File>>>,
    width: usize,
    height: usize,
    /// Track ticks per frame (the track timescale is fps × this).
    tick: u32,
    fps: u32,
    frames: u64,
}

impl Mp4Encoder {
    pub fn create(path: &Path, width: usize, height: usize, fps: u32) -> Result<Mp4Encoder> {
        check_size(width, height)?;
        if fps == 0 {
            return Err(Error::invalid("fps must be at least 1"));
        }
        let h264 = |e: openh264::Error| Error::File { path: path.to_path_buf(), msg: format!("OpenH264: {e}") };
        let config = EncoderConfig::new()
            .usage_type(UsageType::CameraVideoRealTime)
            .rate_control_mode(RateControlMode::Bitrate)
            .bitrate(BitRate::from_bps(bitrate(width, height, fps)))
            .max_frame_rate(FrameRate::from_hz(fps as f32))
            .skip_frames(false)
            // OpenH264's rate control undershoots small and smooth frames by far; a QP ceiling keeps
            // the quality up where the target bitrate alone would not (QP 26: visually clean).
            .qp(QpRange::new(0, MAX_QP))
            .complexity(Complexity::High)
            // An IDR frame every 2 s so players can seek.
            .intra_frame_period(IntraFramePeriod::from_num_frames(2 * fps))
            .vui(VuiConfig::bt601());
        let encoder = Encoder::with_api_config(OpenH264API::from_source(), config).map_err(h264)?;
        let file = File::create(path).map_err(|e| Error::Io { path: path.to_path_buf(), source: e })?;
        let config = Mp4Config {
            major_brand: FourCC::from(*b"isom"),
            minor_version: 512,
            compatible_brands: [*b"isom", *b"iso2", *b"avc1", *b"mp41"].into_iter().map(FourCC::from).collect(),
            timescale: 1000,
        };
        let muxer = Mp4Writer::write_start(BufWriter::new(file), &config).map_err(|e| mux_error(path, e))?;
        Ok(Mp4Encoder { path: path.to_path_buf(), encoder, muxer: Some(muxer), width, height, tick: 1000, fps, frames: 0 })
    }

    /// Encodes one frame of packed RGB (H, W, 3).
    pub fn push_rgb(&mut self, rgb: &[u8]) -> Result<()> {
        if rgb.len() != self.width * self.height * 3 {
            return Err(Error::invalid(format!("frame of {} bytes for a {}×{} RGB video", rgb.len(), self.width, self.height)));
        }
        let yuv = YUVBuffer::from_vec(rgb_to_i420(rgb, self.width, self.height), self.width, self.height);
        let path = self.path.clone();
        let stream = self.encoder.encode(&yuv).map_err(|e| Error::File { path: path.clone(), msg: format!("OpenH264 frame {}: {e}", self.frames) })?;
        let is_sync = matches!(stream.frame_type(), FrameType::IDR | FrameType::I);
        // Annex B NAL units → parameter sets for avcC, the rest as one length-prefixed sample.
        let (mut sps, mut pps, mut sample) = (None, None, Vec::new());
        for l in 0..stream.num_layers() {
            let Some(layer) = stream.layer(l) else { continue };
            for n in 0..layer.nal_count() {
                let Some(nal) = layer.nal_unit(n).map(strip_start_code) else { continue };
                match nal.first().map(|b| b & 0x1f) {
                    Some(7) => sps = Some(nal.to_vec()),
                    Some(8) => pps = Some(nal.to_vec()),
                    Some(_) => {
                        sample.extend_from_slice(&(nal.len() as u32).to_be_bytes());
                        sample.extend_from_slice(nal);
                    }
                    None => {}
                }
            }
        }
        if sample.is_empty() {
            return Err(Error::File { path, msg: format!("OpenH264 produced no picture for frame {} (frame type {:?})", self.frames, stream.frame_type()) });
        }
        let muxer = self.muxer.as_mut().ok_or_else(|| Error::invalid("frame after the video was finished"))?;
        if self.frames == 0 {
            let (Some(sps), Some(pps)) = (sps, pps) else {
                return Err(Error::File { path, msg: "OpenH264's first frame carries no SPS/PPS".into() });
            };
            let fps_ticks = self.tick.checked_mul(self.fps).ok_or_else(|| Error::invalid(format!("fps {} is too high", self.fps)))?;
            let track = TrackConfig {
                track_type: TrackType::Video,
                timescale: fps_ticks,
                language: "und".into(),
                media_conf: MediaConfig::AvcConfig(AvcConfig { width: self.width as u16, height: self.height as u16, seq_param_set: sps, pic_param_set: pps }),
            };
            muxer.add_track(&track).map_err(|e| mux_error(&path, e))?;
        }
        let frame = Mp4Sample { start_time: self.frames * self.tick as u64, duration: self.tick, rendering_offset: 0, is_sync, bytes: sample.into() };
        muxer.write_sample(1, &frame).map_err(|e| mux_error(&path, e))?;
        self.frames += 1;
        Ok(())
    }

    /// Writes the index (moov) and closes the file; returns the number of frames.
    pub fn finish(mut self) -> Result<u64> {
        let path = self.path.clone();
        let mut muxer = self.muxer.take().ok_or_else(|| Error::invalid("video finished twice"))?;
        if self.frames == 0 {
            return Err(Error::File { path, msg: "no frames to write".into() });
        }
        muxer.write_end().map_err(|e| mux_error(&path, e))?;
        let mut w = muxer.into_writer();
        std::io::Write::flush(&mut w).map_err(|e| Error::Io { path: path.clone(), source: e })?;
        Ok(self.frames)
    }
}

fn mux_error(path: &Path, e: mp4::Error) -> Error {
    Error::File { path: path.to_path_buf(), msg: format!("MP4 muxer: {e}") }
}

/// A NAL unit without its Annex B start code (00 00 01 or 00 00 00 01).
fn strip_start_code(nal: &[u8]) -> &[u8] {
    let zeros = nal.iter().take_while(|&&b| b == 0).count();
    if zeros >= 2 && nal.get(zeros) == Some(&1) {
        &nal[zeros + 1..]
    } else {
        nal
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_codes() {
        assert_eq!(strip_start_code(&[0, 0, 0, 1, 0x67, 5]), &[0x67, 5]);
        assert_eq!(strip_start_code(&[0, 0, 1, 0x68]), &[0x68]);
        assert_eq!(strip_start_code(&[0x65, 1]), &[0x65, 1]);
    }

    #[test]
    fn sizes_and_rates() {
        assert!(check_size(832, 480).is_ok());
        assert!(check_size(63, 48).unwrap_err().to_string().contains("even"));
        assert_eq!(bitrate(832, 480, 16), 1_277_952);
        assert_eq!(bitrate(64, 48, 16), 256_000);
    }
}
