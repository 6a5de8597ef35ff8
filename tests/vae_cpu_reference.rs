//! The VAE algorithm of models/vae on the CPU in f64 (tests/vae_ref), against diffusers' fixture (no
//! GPU; runs in CI): channels-last activations, the conv contract of `ops::conv3d` ([pad_t zeros ;
//! prev ; x] in time), the weights as `ChannelsLastSource` uploads them, and the chunking with the same
//! causal cache rules as `models/vae/exec.rs`. It checks the model's semantics independently of the
//! kernels (which tests/gpu_ops_*.rs check against their own references): if this passes and
//! tests/gpu_vae.rs fails, look at the device code.
//!
//! Bound: relative RMS ≤ 1e-5 against diffusers' fp32 run (f64 here vs f32 there).

mod common;
mod vae_ref;

use vae_ref::{from_cl, read, rel_rms, to_cl, Model};
use wanrt::runtime::weights::SafeTensorsFile;

#[test]
fn chunked_channels_last_algorithm_matches_diffusers() {
    let dir = common::fixture("vae");
    let mut m = Model::fixture();
    let inputs = SafeTensorsFile::open(dir.join("inputs.safetensors")).unwrap();
    let refs = SafeTensorsFile::open(dir.join("fp32.safetensors")).unwrap();
    let stages = SafeTensorsFile::open(dir.join("fp32_stages.safetensors")).unwrap();
    let mut report = String::new();
    let mut failures = Vec::new();
    let mut check = |name: &str, got: &[f64], want: &[f64]| {
        let e = rel_rms(got, want);
        report.push_str(&format!("{name:32} {e:.3e}\n"));
        #[allow(clippy::neg_cmp_op_on_partial_ord)]
        if !(e <= 1e-5) {
            failures.push(format!("{name}: {e:.3e}"));
        }
    };
    let moments = m.encode(&to_cl(&read(&inputs, "video")));
    check("video.moments", &from_cl(&moments), &read(&refs, "video.moments").1);
    // Decode the reference mode (what diffusers' decoder stages saw).
    let dec = m.decode(&to_cl(&read(&refs, "video.latent_mode")));
    check("video.decoded", &from_cl(&dec), &read(&refs, "video.decoded").1);
    for name in stages.names().map(String::from).collect::<Vec<_>>() {
        let stage = name.strip_prefix("video.").unwrap();
        let chunks = m.stages.get(stage).unwrap_or_else(|| panic!("stage {stage} not computed"));
        let all = chunks[1..].iter().fold(chunks[0].clone(), |a, b| a.cat(b));
        check(&name, &from_cl(&all), &read(&stages, &name).1);
    }
    eprintln!("{report}");
    assert!(failures.is_empty(), "{}", failures.join("; "));
}
