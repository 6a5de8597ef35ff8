//! Arbitrary bytes as a `config.json`: parsing must return Ok or Err, never panic or exhaust memory,
//! and an accepted config must declare, pack and plan its units.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wanrt::models::wan::run::{plan_latents, OffloadChoice};
use wanrt::models::wan::weights::units;
use wanrt::models::wan::{Precision, WanConfig};
use wanrt::runtime::offload::Budget;

fuzz_target!(|data: &[u8]| {
    let Ok(cfg) = WanConfig::from_json(data) else { return };
    assert!(!units(&cfg, Precision::Bf16).is_empty());
    let choice = OffloadChoice { budget: Budget::Bytes(8 << 30), ..OffloadChoice::default() };
    for lat in [(1, 2, 2), (21, 60, 104)] {
        let _ = plan_latents(&cfg, Precision::Bf16, 1, lat, &choice, None);
    }
});
