//! What a generation reports: seconds, peak device memory and host memory per stage, the plans, and
//! whether it was cancelled (`wan generate` prints it as one JSON line).

use serde::Serialize;

use super::progress::Stage;

#[derive(Clone, Debug, Serialize)]
pub struct StageReport {
    pub stage: Stage,
    pub seconds: f64,
    /// Peak device memory in use during the stage (the pool's accounting).
    pub peak_vram_bytes: u64,
    /// Host memory the stage's weights took (pinned arena or staging ring).
    pub host_bytes: u64,
    /// The plan's first line (mode, groups), or "precomputed".
    pub plan: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct GenerateReport {
    pub seed: u64,
    pub frames: usize,
    pub height: usize,
    pub width: usize,
    pub steps: usize,
    pub guidance: f32,
    pub shift: f64,
    pub scheduler: &'static str,
    pub cfg_batched: bool,
    pub budget_bytes: u64,
    pub stages: Vec<StageReport>,
    pub total_s: f64,
    pub peak_vram_bytes: u64,
    pub host_bytes: u64,
    /// The stage during which the cancellation was seen, if it was.
    pub cancelled: Option<Stage>,
    /// Frames handed to the sink.
    pub frames_written: usize,
}

impl GenerateReport {
    pub fn stage(&self, stage: Stage) -> Option<&StageReport> {
        self.stages.iter().find(|s| s.stage == stage)
    }
}
