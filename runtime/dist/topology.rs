//! Where the ranks are: `nodes` hosts with `local` GPUs each, this host's ranks numbered
//! `node·local .. (node+1)·local`, and the NCCL id every rank is created with. On one host the id is
//! made in the process; across hosts host 0 makes it and passes it by a file in a shared folder
//! (`WANRT_NCCL_ID_FILE`) or the others are given it (`WANRT_NCCL_ID`), as torchrun's rendezvous or
//! NCCL's own examples (`ncclGetUniqueId` on rank 0, broadcast out of band) do.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::gpu::NcclId;
use crate::settings::Settings;
use crate::{Error, Result};

/// This process's share of a multi-GPU run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topology {
    pub nodes: usize,
    pub node: usize,
    /// GPUs this host drives (the same on every host).
    pub local: usize,
    /// How the id reaches the other hosts.
    pub id_source: IdSource,
}

/// Where the NCCL id comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdSource {
    /// Made here (one host, or host 0 with nobody to tell: refused when nodes > 1).
    Local,
    /// Given in the environment.
    Hex(String),
    /// Written by host 0, read by the others.
    File(PathBuf),
}

impl Topology {
    /// One host with `local` GPUs.
    pub fn single_host(local: usize) -> Result<Topology> {
        Topology::from_settings(&Settings::from_lookup(|_| None), local)
    }

    /// The topology the settings (`WANRT_NODES`, `WANRT_NODE_RANK`, `WANRT_NCCL_ID`,
    /// `WANRT_NCCL_ID_FILE`) describe for a host driving `local` GPUs.
    pub fn from_settings(s: &Settings, local: usize) -> Result<Topology> {
        let num = |name: &str, v: &Option<String>, default: usize| -> Result<usize> {
            match v {
                None => Ok(default),
                Some(t) => t.trim().parse().map_err(|_| Error::invalid(format!("{name}={t:?} is not a number"))),
            }
        };
        let nodes = num("WANRT_NODES", &s.nodes, 1)?;
        let node = num("WANRT_NODE_RANK", &s.node_rank, 0)?;
        if local == 0 {
            return Err(Error::invalid("a multi-GPU run needs at least one GPU on this host"));
        }
        if nodes == 0 || node >= nodes {
            return Err(Error::invalid(format!("WANRT_NODE_RANK={node} must be below WANRT_NODES={nodes}")));
        }
        let id_source = match (&s.nccl_id, &s.nccl_id_file) {
            (Some(hex), _) => IdSource::Hex(hex.clone()),
            (None, Some(path)) => IdSource::File(path.clone()),
            (None, None) if nodes == 1 => IdSource::Local,
            (None, None) => {
                return Err(Error::invalid(format!(
                    "WANRT_NODES={nodes}: the hosts need one NCCL id: set WANRT_NCCL_ID_FILE to a path in a folder every host sees \
                     (host 0 writes it) or WANRT_NCCL_ID on every host"
                )))
            }
        };
        Ok(Topology { nodes, node, local, id_source })
    }

    /// Ranks in the whole run.
    pub fn world(&self) -> usize {
        self.nodes * self.local
    }

    /// This host's first global rank.
    pub fn first_rank(&self) -> usize {
        self.node * self.local
    }

    /// The run's NCCL id: made by `make` where this host is the one to make it (written to the id file
    /// when there is one), else parsed from the environment or read from the file host 0 writes
    /// (waiting up to `timeout` for it to appear).
    pub fn nccl_id(&self, make: impl FnOnce() -> Result<NcclId>, timeout: Duration) -> Result<NcclId> {
        match &self.id_source {
            IdSource::Local => make(),
            IdSource::Hex(hex) => NcclId::from_hex(hex).map_err(|e| Error::invalid(format!("WANRT_NCCL_ID: {e}"))),
            IdSource::File(path) if self.node == 0 => {
                let id = make()?;
                write_id(path, &id)?;
                Ok(id)
            }
            IdSource::File(path) => read_id(path, timeout),
        }
    }
}

/// Writes the id atomically (a temporary file renamed over the path), so a reader never sees half.
pub fn write_id(path: &Path, id: &NcclId) -> Result<()> {
    let io = |e| Error::Io { path: path.to_path_buf(), source: e };
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, id.to_hex() + "\n").map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Reads the id host 0 writes, polling until it appears or `timeout` passes.
pub fn read_id(path: &Path, timeout: Duration) -> Result<NcclId> {
    let start = Instant::now();
    loop {
        match std::fs::read_to_string(path) {
            Ok(text) => return NcclId::from_hex(&text).map_err(|e| Error::File { path: path.to_path_buf(), msg: e.to_string() }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && start.elapsed() < timeout => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::File {
                    path: path.to_path_buf(),
                    msg: format!("no NCCL id after {:.0} s: is host 0 (WANRT_NODE_RANK=0) running with the same WANRT_NCCL_ID_FILE?", timeout.as_secs_f64()),
                })
            }
            Err(e) => return Err(Error::Io { path: path.to_path_buf(), source: e }),
        }
    }
}
