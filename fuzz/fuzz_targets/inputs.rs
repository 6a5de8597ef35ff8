//! Arbitrary bytes as `wan forward --inputs` for a small T2V and I2V model: the check must return Ok
//! or Err, never panic, and accepted inputs must have the shapes the forward and planner rely on.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wanrt::models::wan::io::InputFile;
use wanrt::models::wan::{Precision, WanConfig};

fn config(i2v: bool) -> WanConfig {
    let mut cfg = WanConfig::preset(if i2v { "wan2.1-i2v-14b-480p" } else { "wan2.1-t2v-1.3b" }).expect("preset");
    // Small widths so accepted files stay small; the structure is the published one.
    cfg.text_dim = 8;
    if i2v {
        cfg.image_dim = Some(4);
    }
    cfg
}

fuzz_target!(|data: &[u8]| {
    for i2v in [false, true] {
        let cfg = config(i2v);
        let Ok(f) = InputFile::from_bytes(data.to_vec(), "fuzz-inputs", &cfg) else { continue };
        let (b, (t, h, w)) = (f.batch(), f.latent());
        assert!(b >= 1 && f.timestep().len() == b && cfg.grid(t, h, w).is_ok());
        for (name, shape, bytes) in f.host_tensors(Precision::Fp32).expect("accepted inputs convert") {
            assert_eq!(shape.first(), Some(&b), "{name}");
            assert_eq!(bytes.len(), shape.iter().product::<usize>() * 4, "{name}");
        }
    }
});
