//! Checking a checkpoint against a model's declared units before any weight is read or any device
//! work starts: every declared tensor present with its shape and a float dtype, nothing unexpected.

use std::collections::HashSet;

use wanrt_runtime::offload::ModelUnits;
use wanrt_runtime::weights::WeightStore;
use wanrt_runtime::{Error, Result};

/// What checking found besides the expected parameters.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Checkpoint keys no computation uses, skipped on purpose (e.g. the I2V transformer's
    /// `norm_added_q`, CLIP's last layer and projection).
    pub ignored: Vec<String>,
}

/// Checks `store` against `units` plus `extra` tensors the model reads outside its units (e.g. an
/// embedding table gathered on the host), each `(key, shape)`. Keys for which `ignorable` holds are
/// reported, not refused; any other unexpected key is an error naming up to five of them and
/// `what` the folder should be.
pub fn validate(store: &WeightStore, units: &ModelUnits, extra: &[(&str, &[usize])], ignorable: impl Fn(&str) -> bool, what: &str) -> Result<LoadReport> {
    let mut expected = HashSet::new();
    let declared = units.units().iter().flat_map(|u| &u.tensors).map(|p| (p.name.as_str(), p.shape.as_slice()));
    for (name, shape) in declared.chain(extra.iter().copied()) {
        let t = store.expect(name, shape)?;
        if !t.dtype.is_float() {
            return Err(Error::Tensor { path: t.file.to_path_buf(), tensor: name.to_string(), msg: format!("stored as {}, expected a float dtype", t.dtype) });
        }
        expected.insert(name);
    }
    let mut report = LoadReport::default();
    let mut unknown = Vec::new();
    for name in store.names() {
        if expected.contains(name) {
            continue;
        }
        if ignorable(name) {
            report.ignored.push(name.to_string());
        } else {
            unknown.push(name.to_string());
        }
    }
    if !unknown.is_empty() {
        unknown.sort();
        let shown: Vec<_> = unknown.iter().take(5).cloned().collect();
        return Err(Error::File {
            path: store.source().to_path_buf(),
            msg: format!("{} unexpected tensors (is this a {what}?): {}{}", unknown.len(), shown.join(", "), if unknown.len() > 5 { ", ..." } else { "" }),
        });
    }
    report.ignored.sort();
    Ok(report)
}

/// A checkpoint shared by the engine's host storage and code that reads it directly (UMT5's token
/// embedding rows), as an offload weight source.
pub struct SharedStore(pub std::sync::Arc<WeightStore>);

impl wanrt_runtime::offload::WeightSource for SharedStore {
    fn read_into(&self, t: &wanrt_runtime::offload::TensorSpec, dst: &mut [u8]) -> Result<()> {
        self.0.read_into(&t.name, &t.shape, t.dtype, dst)
    }
}
