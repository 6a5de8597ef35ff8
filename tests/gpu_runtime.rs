//! GPU layer: streams and events, the memory pool and its budget, pinned memory, tensors, cast.

mod common;

use wanrt::runtime::ops;
use wanrt::runtime::registry;
use wanrt::{DType, Error, Tensor};

#[test]
fn tensor_roundtrip_narrow_reshape() {
    let Some(dev) = common::gpu("tensor_roundtrip_narrow_reshape") else { return };
    let mut rng = common::rng("tensor_roundtrip");
    for dt in [DType::F32, DType::BF16, DType::F16] {
        let v = common::quantize(&common::randn(&mut rng, 3 * 5 * 7, 1.0), dt);
        let t = Tensor::from_f32(&dev, &[3, 5, 7], dt, &v).unwrap();
        assert_eq!(t.to_f32_vec().unwrap(), v, "{dt} roundtrip");
        let r = t.reshape(&[15, 7]).unwrap();
        assert_eq!(r.to_f32_vec().unwrap(), v);
        assert!(t.reshape(&[4, 4]).is_err());
        let n = t.narrow(0, 1, 1).unwrap().reshape(&[5, 7]).unwrap();
        assert_eq!(n.to_f32_vec().unwrap(), v[35..70].to_vec());
        let nc = t.narrow(1, 1, 2).unwrap();
        assert!(!nc.is_contiguous());
        assert!(nc.to_bytes().is_err(), "non-contiguous download must be refused");
        assert!(t.narrow(2, 6, 2).is_err());
    }
    assert!(Tensor::from_f32(&dev, &[2, 2], DType::F32, &[1.0; 3]).is_err());
}

#[test]
fn poison_then_cast_every_pair() {
    let Some(dev) = common::gpu("poison_then_cast_every_pair") else { return };
    let mut rng = common::rng("cast");
    let n = 100_003;
    let mut v = common::randn(&mut rng, n, 3.0);
    v[0] = f32::INFINITY;
    v[1] = f32::NEG_INFINITY;
    v[2] = 1.0e-40; // subnormal in f32, flushes differently per dtype
    v[3] = 70000.0; // overflows f16
    for si in [DType::F32, DType::BF16, DType::F16] {
        let src_vals = common::quantize(&v, si);
        let src = Tensor::from_f32(&dev, &[n], si, &src_vals).unwrap();
        for so in [DType::F32, DType::BF16, DType::F16] {
            let out = Tensor::empty(&dev, &[n], so).unwrap();
            out.fill_nan().unwrap();
            ops::cast(&src, &out).unwrap();
            let got = out.to_f32_vec().unwrap();
            let want = common::quantize(&src_vals, so);
            for i in 0..n {
                assert!(
                    got[i].to_bits() == want[i].to_bits() || (got[i] == 0.0 && want[i] == 0.0),
                    "cast {si}->{so} element {i}: {} vs {}",
                    got[i],
                    want[i]
                );
            }
        }
    }
    let a = Tensor::empty(&dev, &[4], DType::F32).unwrap();
    let b = Tensor::empty(&dev, &[5], DType::BF16).unwrap();
    assert!(matches!(ops::cast(&a, &b), Err(Error::Shape { .. })));
}

#[test]
fn events_fence_the_copy_stream() {
    let Some(dev) = common::gpu("events_fence_the_copy_stream") else { return };
    let n: usize = 16 << 20;
    let pinned_pool = dev.pinned();
    let mut host = pinned_pool.alloc(n, true).unwrap();
    assert!(host.is_write_combined());
    for (i, b) in host.as_mut_slice().unwrap().iter_mut().enumerate() {
        *b = (i % 251) as u8;
    }
    let dst = std::sync::Arc::new(dev.alloc(n as u64, "upload target").unwrap());
    // The pool allocates on the compute stream: the copy stream waits for that before writing.
    let ready = dev.compute().record().unwrap();
    dev.copy().wait(&ready).unwrap();
    let t0 = dev.copy().record_timed().unwrap();
    dev.upload_pinned(&dst, 0, &host, 0..n, dev.copy()).unwrap();
    let uploaded = dev.copy().record_timed().unwrap();
    dev.compute().wait(&uploaded).unwrap();
    let t = Tensor::from_buffer(dst.clone(), 0, &[n / 4], DType::F32).unwrap();
    let back = t.to_bytes().unwrap();
    assert!(back == host.as_slice().unwrap(), "data uploaded on the copy stream must be visible after the fence");
    assert!(uploaded.elapsed_ms(&t0).unwrap() >= 0.0);
    assert!(uploaded.is_done().unwrap());
    // Bounds are checked.
    assert!(dev.upload_pinned(&dst, 1, &host, 0..n, dev.copy()).is_err());
    assert!(dev.upload_pinned(&dst, 0, &host, 0..n + 1, dev.copy()).is_err());
    let held = pinned_pool.held_bytes();
    drop(host);
    let again = pinned_pool.alloc(n, true).unwrap();
    assert_eq!(pinned_pool.held_bytes(), held, "a freed pinned buffer of the same size is reused");
    drop(again);
    dev.synchronize().unwrap();
}

/// Pinned buffers filled before pinning (the offload arena's path): the fill sees the whole buffer,
/// an async upload from it lands, a download into another lands, a fill error is returned, and the
/// pool's accounting follows (held while alive or cached, returned by `release`).
#[test]
fn filled_then_pinned_buffers_copy_both_ways() {
    let Some(dev) = common::gpu("filled_then_pinned_buffers_copy_both_ways") else { return };
    let pool = dev.pinned();
    dev.synchronize().unwrap();
    pool.release().unwrap();
    let held0 = pool.held_bytes();
    // An odd size, several huge pages plus a tail.
    let n: usize = (5 << 21) + 4099;
    let seed: u64 = { use rand::Rng; common::rng("filled_then_pinned").random() };
    let pattern = |i: usize| ((i as u64).wrapping_mul(0x9E37_79B9).wrapping_add(seed) >> 7) as u8;
    let host = pool
        .alloc_filled(n, |dst| {
            assert_eq!(dst.len(), n);
            for (i, b) in dst.iter_mut().enumerate() {
                *b = pattern(i);
            }
            Ok(())
        })
        .unwrap();
    assert_eq!(host.len(), n);
    assert!(!host.is_write_combined());
    assert!(pool.held_bytes() >= held0 + n as u64);
    let dst = std::sync::Arc::new(dev.alloc(n as u64, "upload target").unwrap());
    let ready = dev.compute().record().unwrap();
    dev.copy().wait(&ready).unwrap();
    dev.upload_pinned(&dst, 0, &host, 0..n, dev.copy()).unwrap();
    let mut back = pool.alloc_filled(n, |dst| {
        dst.fill(0xA5); // poison
        Ok(())
    })
    .unwrap();
    dev.download_pinned(&mut back, &dst, 0, dev.copy()).unwrap();
    // No synchronization: reading the buffer waits for the download queued into it.
    let bytes = back.as_slice().unwrap();
    let bad = (0..n).find(|&i| bytes[i] != pattern(i));
    assert!(bad.is_none(), "byte {:?} differs after the round trip", bad);
    // A failing fill is the caller's error, unchanged.
    let err = pool.alloc_filled(4096, |_| Err(Error::invalid("fill failed on purpose"))).err().expect("fill error");
    assert!(err.to_string().contains("fill failed on purpose"), "{err}");
    drop(host);
    drop(back);
    pool.release().unwrap();
    assert_eq!(pool.held_bytes(), held0, "release returns the registered pages");
}

#[test]
fn missing_kernel_is_a_clear_error() {
    let Some(dev) = common::gpu("missing_kernel_is_a_clear_error") else { return };
    let e = registry::function(&dev, "cast", "no_such_kernel").err().unwrap();
    assert!(e.to_string().contains("no_such_kernel"), "{e}");
    let e = registry::function(&dev, "no_such_file", "k").err().unwrap();
    assert!(e.to_string().contains("no_such_file"), "{e}");
}

/// Host access to a pinned buffer waits for the copies queued on it: overwriting the source of a
/// queued upload through `as_mut_slice` cannot change what lands, and a buffer dropped with a copy
/// queued is handed out again only after that copy.
#[test]
fn pinned_host_access_waits_for_queued_copies() {
    let Some(dev) = common::gpu("pinned_host_access_waits_for_queued_copies") else { return };
    let n: usize = 64 << 20;
    let pattern = |i: usize| (i % 253) as u8;
    let mut host = dev.pinned().alloc(n, false).unwrap();
    host.as_mut_slice().unwrap().iter_mut().enumerate().for_each(|(i, b)| *b = pattern(i));
    let dst = std::sync::Arc::new(dev.alloc(n as u64, "upload target").unwrap());
    let ready = dev.compute().record().unwrap();
    dev.copy().wait(&ready).unwrap();
    // Several uploads queued back to back, then the source overwritten at once.
    for _ in 0..4 {
        dev.upload_pinned(&dst, 0, &host, 0..n, dev.copy()).unwrap();
    }
    host.as_mut_slice().unwrap().fill(0);
    dev.compute().wait(&dev.copy().record().unwrap()).unwrap();
    let back = Tensor::from_buffer(dst.clone(), 0, &[n / 4], DType::F32).unwrap().to_bytes().unwrap();
    assert!((0..n).all(|i| back[i] == pattern(i)), "an upload read the source after as_mut_slice returned");
    // Dropped with an upload queued on the compute stream (a different stream than before): the next
    // buffer of that size is the same block, handed out after the copy.
    dev.upload_pinned(&dst, 0, &host, 0..n, dev.compute()).unwrap();
    drop(host);
    let mut again = dev.pinned().alloc(n, false).unwrap();
    again.as_mut_slice().unwrap().fill(7);
    dev.synchronize().unwrap();
    let back = Tensor::from_buffer(dst.clone(), 0, &[n / 4], DType::F32).unwrap().to_bytes().unwrap();
    assert!(back.iter().all(|&b| b == 0), "the queued upload read the reused buffer's new bytes");
    // write_bytes from pinned memory returns after the copy: the slice may be reused at once.
    let t = Tensor::empty(&dev, &[n / 4], DType::F32).unwrap();
    t.write_bytes(again.as_slice().unwrap()).unwrap();
    again.as_mut_slice().unwrap().fill(9);
    assert!(t.to_bytes().unwrap().iter().all(|&b| b == 7), "write_bytes read pinned bytes after it returned");
}

/// A device buffer dropped while an upload into it is still queued on the copy stream is not handed to
/// the next compute-stream allocation until that upload has landed: a 256 MiB upload (milliseconds),
/// the buffer dropped at once, a same-size allocation filled on the compute stream right after. Were
/// the free ordered only on the compute stream, the pool would give the new buffer the same memory and
/// the DMA engine would overwrite the fill.
#[test]
fn dropped_buffer_waits_for_its_queued_upload() {
    let Some(dev) = common::gpu("dropped_buffer_waits_for_its_queued_upload") else { return };
    let n: usize = 256 << 20;
    let host = dev.pinned().alloc_filled(n, |b| {
        b.fill(0x11);
        Ok(())
    })
    .unwrap();
    for round in 0..4 {
        {
            let dst = dev.alloc(n as u64, "doomed upload target").unwrap();
            let ready = dev.compute().record().unwrap();
            dev.copy().wait(&ready).unwrap();
            dev.upload_pinned(&dst, 0, &host, 0..n, dev.copy()).unwrap();
        }
        let fresh = std::sync::Arc::new(dev.alloc(n as u64, "fresh").unwrap());
        let t = Tensor::from_buffer(fresh, 0, &[n / 4], DType::F32).unwrap();
        t.fill_bytes(0x77).unwrap();
        let back = t.to_bytes().unwrap();
        let bad = back.iter().position(|&b| b != 0x77);
        assert!(bad.is_none(), "round {round}: byte {bad:?} of the fresh buffer holds the dropped buffer's upload");
    }
    dev.synchronize().unwrap();
}
