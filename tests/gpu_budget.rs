//! The device budget. Its own test binary: a budget is process-wide per device, and other tests
//! allocating concurrently would see it.

mod common;

use wanrt::Error;

#[test]
fn budget_is_an_error_not_an_oom() {
    let Some(dev) = common::gpu("budget_is_an_error_not_an_oom") else { return };
    let base = dev.memory_stats().in_use;
    dev.set_budget(Some(base + (64 << 20)));
    let a = dev.alloc(32 << 20, "first").unwrap();
    let err = dev.alloc(48 << 20, "second slab").unwrap_err();
    dev.set_budget(None);
    let msg = err.to_string();
    assert!(matches!(err, Error::OutOfBudget { .. }), "{msg}");
    assert!(msg.contains("second slab") && msg.contains(&(48u64 << 20).to_string()), "{msg}");
    let stats = dev.memory_stats();
    assert!(stats.in_use >= base + (32 << 20));
    assert!(stats.peak >= stats.in_use);
    drop(a);
    assert!(dev.memory_stats().in_use <= stats.in_use - (32 << 20));
    dev.release_cached().unwrap();
}

