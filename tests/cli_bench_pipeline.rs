//! `wan bench --pipeline` on the I2V presets: bad input and a budget no stage plan fits are clear
//! errors (exit 1) before the device opens, and without a GPU a valid run is the missing GPU's error
//! (exit 2), never a panic (101). These run without a GPU; with one, the valid run is skipped (it
//! would time the 14B pipeline: scripts/gpu-round.sh `pipeline` does that).

use std::path::PathBuf;
use std::process::Command;

/// The `wan` program: `WANRT_WAN_BIN` when set (see scripts/gpu-run.sh), else cargo's.
fn wan_bin() -> PathBuf {
    std::env::var_os("WANRT_WAN_BIN").map(Into::into).unwrap_or_else(|| env!("CARGO_BIN_EXE_wan").into())
}

/// `wan bench --pipeline` with `args`: exit code and stdout + stderr.
fn bench(args: &[&str]) -> (i32, String) {
    let out = Command::new(wan_bin()).args(["bench", "--pipeline"]).args(args).output().expect("run wan");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

/// An error of the inputs: exit 1, the message containing every one of `needles`, and no sign of the
/// device (without a GPU, reaching it would exit 2 naming the GPU) or of a panic.
fn refused(args: &[&str], needles: &[&str]) {
    let (code, text) = bench(args);
    assert_eq!(code, 1, "{args:?}: {text}");
    for n in needles {
        assert!(text.contains(n), "{args:?}: expected {n:?} in: {text}");
    }
    assert!(!text.contains("GPU") && !text.contains("panicked"), "{args:?}: {text}");
}

#[test]
fn i2v_bad_input_is_refused_before_the_device() {
    let p = ["--preset", "wan2.1-i2v-14b-480p"];
    refused(&[&p[..], &["--steps", "0"]].concat(), &["--steps", "at least 1"]);
    refused(&["--preset", "wan2.1-i2v-14b-1080p"], &["wan2.1-i2v-14b-1080p"]);
    refused(&[&p[..], &["--frames", "80"]].concat(), &["80", "4k+1"]);
    refused(&[&p[..], &["--frames", "0"]].concat(), &["4k+1"]);
    refused(&[&p[..], &["--height", "728"]].concat(), &["728", "multiples of 16"]);
    refused(&[&p[..], &["--vae-precision", "fp16"]].concat(), &["--vae-precision"]);
    // A sized budget is planned before the device opens: the stage that cannot fit is named.
    refused(&["--preset", "wan2.1-i2v-14b-720p", "--height", "720", "--width", "1280", "--vram", "1GiB"], &["the VAE encode of the I2V condition needs", "of the budget are left"]);
    // The encode tiles when the whole frame does not fit (4 GiB now plans at 480p, see below); a budget
    // below its smallest tiles is still refused by name.
    refused(&[&p[..], &["--vram", "1GiB"]].concat(), &["the VAE encode of the I2V condition needs", "smallest spatial tiles"]);
}

#[test]
fn i2v_without_a_gpu_is_the_missing_gpus_error() {
    if wanrt::Device::get(0).is_ok() {
        eprintln!("skipped: a GPU is present (the valid run would time the 14B I2V pipeline)");
        return;
    }
    // Sized budgets every stage plan fits (so the device is what is missing), and auto (which needs
    // the device's free memory before it can plan).
    for args in [
        &["--preset", "wan2.1-i2v-14b-480p", "--steps", "2", "--offload", "auto", "--vram", "12GiB"][..],
        &["--preset", "wan2.1-i2v-14b-480p", "--vram", "4GiB"][..], // the condition's encode in tiles
        &["--preset", "wan2.1-i2v-14b-720p", "--height", "720", "--width", "1280", "--vram", "14GiB"][..],
        &["--preset", "wan2.1-i2v-14b-480p", "--frames", "5"][..],
    ] {
        let (code, text) = bench(args);
        assert_eq!(code, 2, "{args:?}: {text}");
        assert!(text.contains("GPU") && !text.contains("panicked"), "{args:?}: {text}");
    }
}
