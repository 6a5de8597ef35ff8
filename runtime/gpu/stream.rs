//! Streams and events. Events are the only cross-stream synchronization the runtime uses.

use std::sync::Arc;

use cudarc::driver::sys;

use super::check;
use super::device::Context;
use crate::Result;

/// A non-blocking CUDA stream owned by a device.
pub struct Stream {
    pub(crate) raw: sys::CUstream,
    pub(crate) ctx: Arc<Context>,
    name: &'static str,
}

// SAFETY: a CUstream handle may be used from any thread once its context is current; every method
// binds the owning context first.
unsafe impl Send for Stream {}
// SAFETY: as above; the driver serializes work submitted to one stream.
unsafe impl Sync for Stream {}

impl Stream {
    pub(crate) fn new(ctx: Arc<Context>, name: &'static str) -> Result<Stream> {
        ctx.bind()?;
        let mut raw = std::ptr::null_mut();
        // SAFETY: the context is current; `raw` is a valid out-pointer.
        check("cuStreamCreate", unsafe {
            sys::cuStreamCreate(&mut raw, sys::CUstream_flags::CU_STREAM_NON_BLOCKING as u32)
        })?;
        Ok(Stream { raw, ctx, name })
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Blocks the host until all work queued on this stream is done.
    pub fn synchronize(&self) -> Result<()> {
        self.ctx.bind()?;
        // SAFETY: `raw` is a live stream of the bound context.
        check("cuStreamSynchronize", unsafe { sys::cuStreamSynchronize(self.raw) })
    }

    /// Makes later work on this stream wait for `event` (device-side; the host does not block).
    pub fn wait(&self, event: &Event) -> Result<()> {
        self.ctx.bind()?;
        // SAFETY: both handles are live and belong to the bound context.
        check("cuStreamWaitEvent", unsafe { sys::cuStreamWaitEvent(self.raw, event.raw, 0) })
    }

    /// Records a new event on this stream.
    pub fn record(&self) -> Result<Event> {
        let e = Event::new(&self.ctx, false)?;
        e.record(self)?;
        Ok(e)
    }

    /// Records a timing-capable event on this stream.
    pub fn record_timed(&self) -> Result<Event> {
        let e = Event::new(&self.ctx, true)?;
        e.record(self)?;
        Ok(e)
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        if self.ctx.bind().is_ok() {
            // SAFETY: the stream is live and owned; pending work completes before resources go.
            unsafe {
                sys::cuStreamSynchronize(self.raw);
                sys::cuStreamDestroy_v2(self.raw);
            }
        }
    }
}

/// A CUDA event. Fencing events skip timing (cheaper); timing events support [`Event::elapsed_ms`].
pub struct Event {
    pub(crate) raw: sys::CUevent,
    ctx: Arc<Context>,
    timed: bool,
}

// SAFETY: event handles are usable from any thread with the context bound (each method binds it).
unsafe impl Send for Event {}
// SAFETY: as above.
unsafe impl Sync for Event {}

impl Event {
    pub(crate) fn new(ctx: &Arc<Context>, timed: bool) -> Result<Event> {
        ctx.bind()?;
        let flags = if timed {
            sys::CUevent_flags::CU_EVENT_DEFAULT
        } else {
            sys::CUevent_flags::CU_EVENT_DISABLE_TIMING
        };
        let mut raw = std::ptr::null_mut();
        // SAFETY: the context is current; `raw` is a valid out-pointer.
        check("cuEventCreate", unsafe { sys::cuEventCreate(&mut raw, flags as u32) })?;
        Ok(Event { raw, ctx: ctx.clone(), timed })
    }

    /// Re-records this event at the current tail of `stream`.
    pub fn record(&self, stream: &Stream) -> Result<()> {
        self.ctx.bind()?;
        // SAFETY: both handles are live in the bound context.
        check("cuEventRecord", unsafe { sys::cuEventRecord(self.raw, stream.raw) })
    }

    /// Blocks the host until the event has completed.
    pub fn synchronize(&self) -> Result<()> {
        self.ctx.bind()?;
        // SAFETY: the event is live.
        check("cuEventSynchronize", unsafe { sys::cuEventSynchronize(self.raw) })
    }

    /// Whether the work before the event has completed (non-blocking).
    pub fn is_done(&self) -> Result<bool> {
        self.ctx.bind()?;
        // SAFETY: the event is live.
        let status = unsafe { sys::cuEventQuery(self.raw) };
        if status == sys::CUresult::CUDA_ERROR_NOT_READY {
            return Ok(false);
        }
        check("cuEventQuery", status).map(|_| true)
    }

    /// Milliseconds between `start` and this event (both timing events, both completed).
    pub fn elapsed_ms(&self, start: &Event) -> Result<f32> {
        if !self.timed || !start.timed {
            return Err(crate::Error::invalid("elapsed_ms needs events made with record_timed"));
        }
        self.synchronize()?;
        let mut ms = 0f32;
        // SAFETY: both events are live timing events of the bound context.
        check("cuEventElapsedTime", unsafe { sys::cuEventElapsedTime_v2(&mut ms, start.raw, self.raw) })?;
        Ok(ms)
    }
}

impl Drop for Event {
    fn drop(&mut self) {
        if self.ctx.bind().is_ok() {
            // SAFETY: the event is owned; destroying an event with pending work is allowed by CUDA.
            unsafe {
                sys::cuEventDestroy_v2(self.raw);
            }
        }
    }
}
