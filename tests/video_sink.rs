//! The video writer's file handling: a file output appears only when the writer finishes, an
//! abandoned writer (a failed or cancelled run) leaves nothing behind and never replaces an existing
//! file. CPU only.

use std::path::Path;

use wanrt::models::video::{VideoShape, VideoSink};

fn frames(n: usize, h: usize, w: usize) -> Vec<f32> {
    (0..3 * n * h * w).map(|i| ((i % 97) as f32 / 48.0) - 1.0).collect()
}

fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).filter(|n| n.contains("partial")).collect()
}

#[test]
fn file_outputs_appear_only_when_finished() {
    let dir = std::env::temp_dir().join(format!("wanrt-video-sink-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let shape = VideoShape { batch: 1, frames: 5, height: 16, width: 32 };
    for name in ["a.mp4", "a.safetensors"] {
        let path = dir.join(name);
        let _ = std::fs::remove_file(&path);
        let sink = VideoSink::from_path(&path).unwrap();

        // Abandoned after some frames: no file, no partial file.
        let mut w = sink.open(shape, 16).unwrap();
        w.push(frames(1, 16, 32), 1).unwrap();
        w.push(frames(2, 16, 32), 2).unwrap();
        drop(w);
        assert!(!path.exists(), "{name}: an abandoned writer left the output");
        assert!(leftovers(&dir).is_empty(), "{name}: partial files left: {:?}", leftovers(&dir));

        // An existing file survives an abandoned writer untouched.
        std::fs::write(&path, b"previous video").unwrap();
        let mut w = sink.open(shape, 16).unwrap();
        w.push(frames(1, 16, 32), 1).unwrap();
        drop(w);
        assert_eq!(std::fs::read(&path).unwrap(), b"previous video", "{name}: an abandoned writer replaced an existing file");

        // Finishing short of the frame count is an error, and leaves the old file too.
        let mut w = sink.open(shape, 16).unwrap();
        w.push(frames(3, 16, 32), 3).unwrap();
        assert!(w.finish().unwrap_err().to_string().contains("only 3 of 5 frames"));
        assert_eq!(std::fs::read(&path).unwrap(), b"previous video", "{name}: a short video replaced an existing file");
        assert!(leftovers(&dir).is_empty(), "{name}: partial files left: {:?}", leftovers(&dir));

        // Finished: the new video replaces it, and nothing else is left.
        let mut w = sink.open(shape, 16).unwrap();
        w.push(frames(1, 16, 32), 1).unwrap();
        w.push(frames(4, 16, 32), 4).unwrap();
        assert_eq!(w.finish().unwrap(), 5);
        let bytes = std::fs::read(&path).unwrap();
        assert!(bytes.len() > 100 && bytes != b"previous video", "{name}: the finished video is not in place");
        assert!(leftovers(&dir).is_empty(), "{name}: partial files left: {:?}", leftovers(&dir));
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
