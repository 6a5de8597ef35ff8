//! `wan save-video`: a saved video tensor to MP4, PNG frames or safetensors, on the CPU.

use std::path::Path;
use std::time::Instant;

use wanrt::models::video::{VideoFile, VideoSink};
use wanrt::Result;

/// Every check comes before the first byte is written: the output's kind and folder, the tensor's
/// key, rank, channels and dtype, the sink's size rules, and then the values (finite).
pub fn save_video(input: &Path, key: &str, out: &Path, fps: u32) -> Result<()> {
    let sink = VideoSink::from_path(out)?;
    let file = VideoFile::open(input, key)?;
    let shape = file.shape;
    sink.check_shape(&shape)?;
    sink.check_writable()?;
    let values = file.read()?;
    let t0 = Instant::now();
    let mut writer = sink.open(shape, fps)?;
    writer.push(values, shape.frames)?;
    let frames = writer.finish()?;
    eprintln!(
        "wrote {} ({frames} frames, {}×{}, {fps} fps) in {:.2} s",
        out.display(),
        shape.width,
        shape.height,
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}
