//! NCCL through cudarc's bindings, loaded at run time like the driver (`libnccl.so.2`; PyTorch's
//! `nvidia-nccl-cu13` wheel or the system's): one communicator per device, collectives queued on the
//! runtime's own streams. Transfers are counted in bytes (`ncclUint8`), so one path carries every
//! dtype; the collectives used (all-gather, grouped send/recv for all-to-all) move data and never
//! reduce it, so the bytes arrive unchanged.
//!
//! One process drives every GPU of its host: the host's ranks are created together inside one NCCL
//! group (`ncclGroupStart`, `ncclCommInitRank` per device, `ncclGroupEnd`), so a single thread can
//! set them up, and host memory (pinned weights for offloading) is shared by the host's devices
//! instead of held once per process. Several hosts join through one [`NcclId`] (see
//! `runtime::dist::Topology`).

use std::sync::Arc;

use cudarc::nccl::result as nr;
use cudarc::nccl::sys as ns;

use super::{Device, Stream};
use crate::{Error, Result, Tensor};

/// Whether `libnccl` can be loaded (no NCCL: multi-GPU runs are refused with this reason).
pub fn nccl_available() -> bool {
    // SAFETY: only tries to open the library; nothing is called through it.
    unsafe { ns::is_culib_present() }
}

fn nccl_err(call: &'static str, e: nr::NcclError) -> Error {
    Error::Cuda { call, msg: format!("NCCL returned {:?}", e.0) }
}

fn need_nccl(what: &str) -> Result<()> {
    if nccl_available() {
        Ok(())
    } else {
        Err(Error::NoDevice(format!("{what} needs NCCL (libnccl.so.2 on the library path, e.g. from the nvidia-nccl-cu13 wheel)")))
    }
}

/// The 128-byte id every rank of one communicator is created with; rank 0's process makes it and
/// the others read it (`runtime::dist` passes it through a file or the environment as hex).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct NcclId(pub [u8; 128]);

impl NcclId {
    /// A fresh id (`ncclGetUniqueId`: it also opens the bootstrap socket rank 0 listens on).
    pub fn new() -> Result<NcclId> {
        need_nccl("a communicator id")?;
        let id = nr::get_uniqueid().map_err(|e| nccl_err("ncclGetUniqueId", e))?;
        let mut bytes = [0u8; 128];
        for (b, c) in bytes.iter_mut().zip(id.internal.iter()) {
            *b = *c as u8;
        }
        Ok(NcclId(bytes))
    }

    fn raw(&self) -> ns::ncclUniqueId {
        let mut internal = [0 as std::ffi::c_char; 128];
        for (c, b) in internal.iter_mut().zip(self.0.iter()) {
            *c = *b as std::ffi::c_char;
        }
        ns::ncclUniqueId { internal }
    }

    /// Lower-case hex, 256 characters.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Parses [`NcclId::to_hex`]'s form (surrounding whitespace allowed).
    pub fn from_hex(text: &str) -> Result<NcclId> {
        let t = text.trim();
        if t.len() != 256 || !t.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(Error::invalid(format!("an NCCL id is 256 hex digits, got {} characters", t.len())));
        }
        let mut bytes = [0u8; 128];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = u8::from_str_radix(&t[2 * i..2 * i + 2], 16).map_err(|e| Error::invalid(format!("NCCL id: {e}")))?;
        }
        Ok(NcclId(bytes))
    }
}

impl std::fmt::Debug for NcclId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NcclId({}…)", &self.to_hex()[..16])
    }
}

/// One rank of a communicator, bound to its device.
pub struct Comm {
    raw: ns::ncclComm_t,
    dev: Arc<Device>,
    rank: usize,
    world: usize,
}

// SAFETY: an NCCL communicator may be used from any thread as long as calls on it are not concurrent;
// `Comm`'s methods take `&self` but every collective is queued by the thread that owns the rank's
// device work (the runtime's model code), and `Sync` is not implemented.
unsafe impl Send for Comm {}

impl Comm {
    /// Creates the ranks `first_rank..first_rank + devs.len()` of a `world`-rank communicator, one per
    /// device, together in one NCCL group (returns once every rank of the world has joined).
    pub fn init_local(devs: &[Arc<Device>], id: &NcclId, world: usize, first_rank: usize) -> Result<Vec<Comm>> {
        need_nccl("a multi-GPU run")?;
        if devs.is_empty() || first_rank + devs.len() > world || world > i32::MAX as usize {
            return Err(Error::invalid(format!("NCCL ranks {first_rank}..{} do not fit a world of {world}", first_rank + devs.len())));
        }
        let raw_id = id.raw();
        let mut raws = vec![std::ptr::null_mut(); devs.len()];
        nr::group_start().map_err(|e| nccl_err("ncclGroupStart", e))?;
        let mut first_err = None;
        for (i, dev) in devs.iter().enumerate() {
            if let Err(e) = dev.ctx.bind() {
                first_err.get_or_insert(e);
                continue;
            }
            // SAFETY: `raws[i]` is a valid out-pointer; the id is a by-value struct; the device's context
            // is current, so NCCL binds the rank to that device.
            let r = unsafe { nr::comm_init_rank(&mut raws[i], world as i32, raw_id, (first_rank + i) as i32) };
            if let Err(e) = r {
                first_err.get_or_insert(nccl_err("ncclCommInitRank", e));
            }
        }
        let end = nr::group_end().map_err(|e| nccl_err("ncclGroupEnd (communicator init)", e));
        let comms: Vec<Comm> = raws
            .into_iter()
            .zip(devs)
            .enumerate()
            .filter(|(_, (raw, _))| !raw.is_null())
            .map(|(i, (raw, dev))| Comm { raw, dev: dev.clone(), rank: first_rank + i, world })
            .collect();
        if let Some(e) = first_err {
            return Err(e);
        }
        end?;
        Ok(comms)
    }

    pub fn rank(&self) -> usize {
        self.rank
    }
    pub fn world(&self) -> usize {
        self.world
    }
    pub fn device(&self) -> &Arc<Device> {
        &self.dev
    }

    fn check_tensor(&self, what: &str, t: &Tensor, bytes: u64) -> Result<()> {
        if !Arc::ptr_eq(t.device(), &self.dev) {
            return Err(Error::invalid(format!("NCCL {what}: tensor {t:?} is on another device than rank {}", self.rank)));
        }
        if !t.is_contiguous() || t.byte_len() != bytes {
            return Err(Error::invalid(format!("NCCL {what}: tensor {t:?} must be contiguous and {bytes} bytes")));
        }
        Ok(())
    }

    /// `recv` = the `send` tensors of ranks 0..world, concatenated in rank order (`recv` holds
    /// `world` × `send`'s bytes). Queued on `stream`.
    pub fn all_gather(&self, send: &Tensor, recv: &Tensor, stream: &Stream) -> Result<()> {
        let n = send.byte_len();
        self.check_tensor("all_gather send", send, n)?;
        self.check_tensor("all_gather recv", recv, n * self.world as u64)?;
        self.dev.ctx.bind()?;
        // SAFETY: both ranges were checked against live, contiguous tensors of this device; the
        // stream belongs to it; NCCL reads `send` and writes `recv` in stream order.
        unsafe {
            nr::all_gather(send.ptr() as *const _, recv.ptr() as *mut _, n as usize, ns::ncclDataType_t::ncclUint8, self.raw, stream.raw as ns::cudaStream_t)
        }
        .map_err(|e| nccl_err("ncclAllGather", e))?;
        send.buffer().used_on(stream)?;
        recv.buffer().used_on(stream)
    }

    /// All-to-all in equal chunks: `send` and `recv` are `world` chunks each; chunk `j` of `send` goes
    /// to rank `j`, chunk `i` of `recv` comes from rank `i` (grouped `ncclSend`/`ncclRecv`, as
    /// NCCL's documentation writes all-to-all). Queued on `stream`.
    pub fn all_to_all(&self, send: &Tensor, recv: &Tensor, stream: &Stream) -> Result<()> {
        let n = send.byte_len();
        let w = self.world as u64;
        if n % w != 0 {
            return Err(Error::invalid(format!("NCCL all_to_all: {n} bytes do not split into {w} equal chunks")));
        }
        self.check_tensor("all_to_all send", send, n)?;
        self.check_tensor("all_to_all recv", recv, n)?;
        let chunk = n / w;
        self.dev.ctx.bind()?;
        nr::group_start().map_err(|e| nccl_err("ncclGroupStart", e))?;
        let mut first_err = None;
        for peer in 0..self.world {
            let off = peer as u64 * chunk;
            // SAFETY: chunk `peer` of each tensor lies inside its checked range; the stream belongs to
            // this device; the grouped calls run together at ncclGroupEnd.
            let s = unsafe {
                nr::send((send.ptr() + off) as *const _, chunk as usize, ns::ncclDataType_t::ncclUint8, peer as i32, self.raw, stream.raw as ns::cudaStream_t)
            };
            // SAFETY: as above, for the receive side.
            let r = unsafe {
                nr::recv((recv.ptr() + off) as *mut _, chunk as usize, ns::ncclDataType_t::ncclUint8, peer as i32, self.raw, stream.raw as ns::cudaStream_t)
            };
            if let Err(e) = s.and(r) {
                first_err.get_or_insert(nccl_err("ncclSend/ncclRecv", e));
            }
        }
        let end = nr::group_end().map_err(|e| nccl_err("ncclGroupEnd (all_to_all)", e));
        if let Some(e) = first_err {
            return Err(e);
        }
        end?;
        send.buffer().used_on(stream)?;
        recv.buffer().used_on(stream)
    }
}

impl Drop for Comm {
    fn drop(&mut self) {
        if self.dev.ctx.bind().is_ok() {
            // SAFETY: `raw` came from ncclCommInitRank and is destroyed once; pending work completes first.
            let _ = unsafe { nr::comm_destroy(self.raw) };
        }
    }
}
