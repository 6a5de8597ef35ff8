//! UniPCMultistepScheduler (diffusers `scheduling_unipc_multistep.py`) as Wan configures it (diffusers
//! `scripts/convert_wan_to_diffusers.py`): flow_prediction, use_flow_sigmas,
//! solver_order 2, bh2, predict_x0, predictor and corrector, lower_order_final, final sigma zero.
//!
//! `UniPcPlanner` is the host side: the schedule, the step counter, the warm-up state and the float32
//! scalar math of each step, turned into a `UniPcUpdate`. `UniPc` adds the history buffers and hands
//! each plan to a `LatentBackend`; the latents never come to the host.

use wanrt_runtime::{DType, Error, Result};

use super::backend::LatentBackend;
use super::plan::{bf16_round, UniPcUpdate};
use super::scalar::{expm1, lambda, solve2};
use super::sigmas::{unipc_schedule, SigmaGrid, UniPcSchedule, NUM_TRAIN_TIMESTEPS};

/// Which PyTorch device's rounding of σ·v to reproduce when the model output v is bf16. Both give a
/// bf16 product; they differ in σ (measured with torch 2.11: CPU, and CUDA on an H100).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReferenceDevice {
    /// diffusers on CUDA, how the Wan pipelines run: σ is a CPU scalar, which CUDA kernels keep in
    /// fp32, so the product is bf16(σ·v).
    #[default]
    Cuda,
    /// diffusers on CPU: the 0-dim σ is cast to bf16 first, bf16(bf16(σ)·v). The fixtures are CPU runs.
    Cpu,
}

/// Settings of a UniPC schedule.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct UniPcOptions {
    pub shift: f64,
    pub grid: SigmaGrid,
    pub num_train_timesteps: u32,
    pub reference: ReferenceDevice,
}

impl UniPcOptions {
    /// The diffusers grid with T = 1000, reproducing diffusers on CUDA.
    pub fn new(shift: f64) -> Self {
        UniPcOptions {
            shift,
            grid: SigmaGrid::Diffusers,
            num_train_timesteps: NUM_TRAIN_TIMESTEPS,
            reference: ReferenceDevice::Cuda,
        }
    }
}

const SOLVER_ORDER: u32 = 2;

/// Host state and scalar math of a UniPC run.
#[derive(Clone, Debug)]
pub struct UniPcPlanner {
    schedule: UniPcSchedule,
    reference: ReferenceDevice,
    step_index: usize,
    lower_order_nums: u32,
    /// Order of the last predictor, which the next corrector uses.
    this_order: u32,
}

impl UniPcPlanner {
    pub fn new(steps: usize, opts: &UniPcOptions) -> Result<Self> {
        let schedule = unipc_schedule(steps, opts.shift, opts.grid, opts.num_train_timesteps)?;
        Ok(UniPcPlanner {
            schedule,
            reference: opts.reference,
            step_index: 0,
            lower_order_nums: 0,
            this_order: 0,
        })
    }

    pub fn num_steps(&self) -> usize {
        self.schedule.timesteps.len()
    }

    /// Steps taken so far; the next `plan` is for this index.
    pub fn step_index(&self) -> usize {
        self.step_index
    }

    /// N+1 float32 sigmas, the last 0.
    pub fn sigmas(&self) -> &[f32] {
        &self.schedule.sigmas
    }

    /// N integer timesteps.
    pub fn timesteps(&self) -> &[i64] {
        &self.schedule.timesteps
    }

    /// Back to step 0 of the same schedule.
    pub fn reset(&mut self) {
        self.step_index = 0;
        self.lower_order_nums = 0;
        self.this_order = 0;
    }

    /// Predictor order of the current step: `lower_order_final` caps it by the steps left (the last
    /// step is first order), warm-up by the outputs seen (the first step is first order).
    fn order(&self) -> u32 {
        let left = (self.num_steps() - self.step_index).min(SOLVER_ORDER as usize) as u32;
        left.min(self.lower_order_nums + 1)
    }

    /// The plan of the current step for a model output of dtype `v_dtype` (F32 or BF16).
    pub fn plan(&self, v_dtype: DType) -> Result<UniPcUpdate> {
        let (k, n) = (self.step_index, self.num_steps());
        if k >= n {
            return Err(Error::invalid(format!(
                "UniPC step {} asked for, but the {n}-step schedule is finished (reset it to start again)",
                k + 1
            )));
        }
        let v_bf16 = match v_dtype {
            DType::F32 => false,
            DType::BF16 => true,
            other => {
                return Err(Error::DType {
                    op: "UniPC step",
                    name: "model output".into(),
                    expected: "f32 or bf16".into(),
                    got: other,
                })
            }
        };
        let s = &self.schedule.sigmas;
        let sigma = if v_bf16 && self.reference == ReferenceDevice::Cpu {
            bf16_round(s[k])
        } else {
            s[k]
        };
        let mut u = UniPcUpdate {
            v_bf16: v_bf16 as u32,
            sigma,
            ..Default::default()
        };

        // Corrector (UniC) from σ_{k−1} to σ_k, at the previous predictor's order.
        if k > 0 {
            let order = self.this_order;
            let (st, ss) = (s[k], s[k - 1]);
            let alpha_t = 1.0 - st;
            let lambda_s0 = lambda(ss);
            let h = lambda(st) - lambda_s0;
            let hh = -h;
            let h_phi_1 = expm1(hh);
            let b_h = expm1(hh);
            u.corrector_order = order;
            u.c_x = st / ss;
            u.c_m = alpha_t * h_phi_1;
            u.c_res = alpha_t * b_h;
            if order == 1 {
                u.c_rho1 = 0.5;
            } else {
                let rk = (lambda(s[k - 2]) - lambda_s0) / h;
                // b_i = h_phi_k·i!/B_h with h_phi_k ← h_phi_k/hh − 1/(i+1)!, as diffusers builds it.
                let h_phi_k = h_phi_1 / hh - 1.0;
                let b1 = (h_phi_k * 1.0) / b_h;
                let h_phi_k = h_phi_k / hh - 0.5;
                let b2 = (h_phi_k * 2.0) / b_h;
                let [rho0, rho1] = solve2([[1.0, 1.0], [rk, 1.0]], [b1, b2]);
                u.c_r = rk;
                u.c_rho0 = rho0;
                u.c_rho1 = rho1;
            }
        }

        // Predictor (UniP) from σ_k to σ_{k+1}; at order 2 its ρ is fixed at 0.5.
        let order = self.order();
        let (st, ss) = (s[k + 1], s[k]);
        let alpha_t = 1.0 - st;
        let lambda_s0 = lambda(ss);
        let h = lambda(st) - lambda_s0;
        let hh = -h;
        let h_phi_1 = expm1(hh);
        let b_h = expm1(hh);
        u.predictor_order = order;
        u.p_x = st / ss;
        u.p_m = alpha_t * h_phi_1;
        if order == 1 {
            u.p_zero = (alpha_t * b_h) * 0.0;
        } else {
            u.p_res = alpha_t * b_h;
            u.p_r = (lambda(s[k - 1]) - lambda_s0) / h;
        }
        Ok(u)
    }

    /// Records that the current plan was applied.
    fn advance(&mut self) {
        self.this_order = self.order();
        self.lower_order_nums = (self.lower_order_nums + 1).min(SOLVER_ORDER);
        self.step_index += 1;
    }
}

/// The scheduler's buffers, allocated on the first step.
struct History<T> {
    /// m_{k−1} and m_{k−2}; `newest` says which is m_{k−1}.
    m: [T; 2],
    newest: usize,
    last: T,
    len: usize,
}

/// A UniPC run over latents of one backend.
pub struct UniPc<B: LatentBackend> {
    planner: UniPcPlanner,
    history: Option<History<B::Buffer>>,
}

impl<B: LatentBackend> UniPc<B> {
    pub fn new(steps: usize, opts: &UniPcOptions) -> Result<Self> {
        Ok(UniPc {
            planner: UniPcPlanner::new(steps, opts)?,
            history: None,
        })
    }

    pub fn planner(&self) -> &UniPcPlanner {
        &self.planner
    }

    /// Back to step 0; the history buffers are dropped (the next run may have other latents).
    pub fn reset(&mut self) {
        self.planner.reset();
        self.history = None;
    }

    /// One step: `x` holds x_k on entry and x_{k+1} on return; `v` is the model output at x_k.
    pub fn step(
        &mut self,
        backend: &mut B,
        v: B::ModelOutput<'_>,
        x: &mut B::Buffer,
    ) -> Result<()> {
        let n = backend.latent_len(x);
        check_sizes(
            "UniPC step",
            n,
            backend.model_output_len(&v),
            self.history.as_ref().map(|h| h.len),
        )?;
        let plan = self.planner.plan(backend.model_output_dtype(&v))?;
        let history = match &mut self.history {
            Some(h) => h,
            None => self.history.insert(History {
                m: [backend.alloc_latent(n)?, backend.alloc_latent(n)?],
                newest: 1,
                last: backend.alloc_latent(n)?,
                len: n,
            }),
        };
        // m_k overwrites m_{k−2}; m_{k−1} exists from the second step on.
        let slot = 1 - history.newest;
        let [m0, m1] = &mut history.m;
        let (m_new, m_prev) = if slot == 0 { (m0, &*m1) } else { (m1, &*m0) };
        let m_prev = (self.planner.step_index > 0).then_some(m_prev);
        backend.apply_unipc(&plan, v, x, m_new, m_prev, &mut history.last)?;
        history.newest = slot;
        self.planner.advance();
        Ok(())
    }
}

/// Sizes a step needs: a non-empty sample, a model output of the same size, and the size of the
/// run's earlier steps.
pub(crate) fn check_sizes(
    op: &'static str,
    x_len: usize,
    v_len: usize,
    run_len: Option<usize>,
) -> Result<()> {
    let shape = |name: &str, expected: usize, got: usize| Error::Shape {
        op,
        name: name.into(),
        expected: format!("{expected} elements"),
        got: vec![got],
    };
    if x_len == 0 {
        return Err(Error::invalid(format!("{op}: the sample is empty")));
    }
    if v_len != x_len {
        return Err(shape("model output", x_len, v_len));
    }
    match run_len {
        Some(len) if len != x_len => Err(shape(
            "sample (size of this run's earlier steps)",
            len,
            x_len,
        )),
        _ => Ok(()),
    }
}
