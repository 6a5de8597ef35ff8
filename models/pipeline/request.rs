//! A generation request (`wan generate`'s options) with the defaults of the model it runs on, checked
//! before any work: every bad value is an error that says what would be valid.

use std::path::PathBuf;
use std::str::FromStr;

use wanrt_runtime::{Error, Result};

use super::folder::{ModelFolder, PipelineKind};

/// The official Wan2.1 negative prompt (`wan/configs/shared_config.py`, `sample_neg_prompt`), which the
/// official `generate.py` uses when none is given. diffusers' own default is the empty string.
pub const WAN_NEGATIVE_PROMPT: &str = "色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，JPEG压缩残留，丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，手指融合，静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走";

/// The flow-matching solver of the denoising loop.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SchedulerChoice {
    /// `UniPCMultistepScheduler` in flow mode, as the Wan hub repos ship it.
    #[default]
    UniPc,
    /// `FlowMatchEulerDiscreteScheduler`.
    Euler,
}

impl FromStr for SchedulerChoice {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "unipc" => Ok(SchedulerChoice::UniPc),
            "euler" => Ok(SchedulerChoice::Euler),
            _ => Err(Error::invalid(format!("unknown scheduler {s:?}: unipc or euler"))),
        }
    }
}

/// The published resolution class of a model: its default size and flow shift.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tier {
    /// 480×832, flow shift 3.0 (T2V-1.3B, I2V-14B-480P).
    P480,
    /// 720×1280, flow shift 5.0 (I2V-14B-720P, and T2V-14B, whose official default size is 1280*720).
    P720,
}

impl Tier {
    /// (height, width).
    pub fn size(self) -> (usize, usize) {
        match self {
            Tier::P480 => (480, 832),
            Tier::P720 => (720, 1280),
        }
    }

    /// The flow shift (the diffusers Wan docs: 3.0 at 480P, 5.0 at 720P).
    pub fn shift(self) -> f64 {
        match self {
            Tier::P480 => 3.0,
            Tier::P720 => 5.0,
        }
    }

    /// The tier of a model: "720P"/"480P" in its name decide (the I2V 480P and 720P models share one
    /// architecture), else the T2V size: 1.3B (30 layers) is 480P, 14B is 720P.
    pub fn of(name: &str, num_layers: usize) -> Tier {
        let upper = name.to_ascii_uppercase();
        if upper.contains("720P") {
            Tier::P720
        } else if upper.contains("480P") || num_layers <= 30 {
            Tier::P480
        } else {
            Tier::P720
        }
    }
}

/// What the model folder decides about a request: which pipeline, and its defaults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelDefaults {
    pub kind: PipelineKind,
    pub tier: Tier,
}

impl ModelDefaults {
    /// From a resolved folder: its pipeline class, and its tier from its name and transformer config.
    pub fn of(folder: &ModelFolder) -> Result<ModelDefaults> {
        let cfg = folder.transformer_config()?;
        if cfg.is_i2v() != (folder.kind() == PipelineKind::I2V) {
            return Err(Error::invalid(format!(
                "{}: model_index.json names {} but transformer/config.json is a {} transformer",
                folder.root().display(),
                folder.kind().class_name(),
                if cfg.is_i2v() { "I2V" } else { "T2V" }
            )));
        }
        Ok(ModelDefaults { kind: folder.kind(), tier: Tier::of(&folder.name(), cfg.num_layers) })
    }
}

/// One `wan generate` run. [`GenerateRequest::new`] fills the defaults; [`GenerateRequest::validate`]
/// checks the whole request against the model before anything is loaded.
#[derive(Clone, Debug, PartialEq)]
pub struct GenerateRequest {
    pub prompt: String,
    pub negative_prompt: String,
    /// The conditioning image (I2V only).
    pub image: Option<PathBuf>,
    /// Video frames, 4k+1 (81 by default: 21 latent frames).
    pub frames: usize,
    pub height: usize,
    pub width: usize,
    pub steps: usize,
    /// Classifier-free guidance scale; CFG runs when it is above 1 (as diffusers' `do_classifier_free_guidance`).
    pub guidance: f32,
    pub shift: f64,
    pub scheduler: SchedulerChoice,
    /// The seed of the initial noise; `None` draws one (see [`GenerateRequest::seed_or_fresh`]).
    pub seed: Option<u64>,
    pub fps: u32,
    /// I2V: resize the image to (width, height) with PIL's default (bicubic) before anything sees it,
    /// as the diffusers Wan I2V example does after picking the size with
    /// [`fit_size`](super::i2v::fit_size); otherwise CLIP sees the image as given and only the VAE
    /// condition is resized (LANCZOS), as the pipeline itself does.
    pub fit_image: bool,
}

impl GenerateRequest {
    /// The defaults: 81 frames at the tier's size and shift, 50 steps, guidance 5.0, UniPC, 16 fps, the
    /// official Wan negative prompt.
    pub fn new(prompt: impl Into<String>, model: ModelDefaults) -> GenerateRequest {
        let (height, width) = model.tier.size();
        GenerateRequest {
            prompt: prompt.into(),
            negative_prompt: WAN_NEGATIVE_PROMPT.to_string(),
            image: None,
            frames: 81,
            height,
            width,
            steps: 50,
            guidance: 5.0,
            shift: model.tier.shift(),
            scheduler: SchedulerChoice::UniPc,
            seed: None,
            fps: 16,
            fit_image: false,
        }
    }

    /// Every check that needs no file but the image's existence, in the order a user would fix them.
    pub fn validate(&self, kind: PipelineKind) -> Result<()> {
        match (kind, &self.image) {
            (PipelineKind::T2V, Some(img)) => {
                return Err(Error::invalid(format!(
                    "--image {} was given, but this is a text-to-video model (WanPipeline); use an I2V model such as Wan-AI/Wan2.1-I2V-14B-480P-Diffusers, or drop --image",
                    img.display()
                )))
            }
            (PipelineKind::I2V, None) => {
                return Err(Error::invalid("this is an image-to-video model (WanImageToVideoPipeline) and needs --image FILE (PNG, JPEG or WebP)"))
            }
            (PipelineKind::I2V, Some(img)) if !img.is_file() => {
                return Err(Error::File { path: img.clone(), msg: "the --image file does not exist".into() })
            }
            _ => {}
        }
        check_size("height", self.height)?;
        check_size("width", self.width)?;
        if self.frames % 4 != 1 {
            return Err(Error::invalid(format!("--frames {} is not of the form 4k+1 (the VAE packs 4 frames per latent after the first); {}", self.frames, nearest_frames(self.frames))));
        }
        if self.steps == 0 {
            return Err(Error::invalid("--steps must be at least 1"));
        }
        if !(self.guidance >= 0.0 && self.guidance.is_finite()) {
            return Err(Error::invalid(format!("--guidance {} must be a finite number ≥ 0 (1 or less turns classifier-free guidance off)", self.guidance)));
        }
        if !(self.shift > 0.0 && self.shift.is_finite()) {
            return Err(Error::invalid(format!("--shift {} must be a finite number > 0", self.shift)));
        }
        if self.fps == 0 {
            return Err(Error::invalid("--fps must be at least 1"));
        }
        if self.prompt.trim().is_empty() {
            return Err(Error::invalid("the prompt is empty"));
        }
        Ok(())
    }

    /// Whether the run uses classifier-free guidance (`guidance_scale > 1.0` in diffusers).
    pub fn cfg(&self) -> bool {
        self.guidance > 1.0
    }

    /// The seed, or a fresh one from the clock when none was given (report it so the run can be repeated).
    pub fn seed_or_fresh(&self) -> u64 {
        self.seed.unwrap_or_else(|| {
            let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            // Any value; kept below 2^32 since torch seeds its mt19937 with the low 32 bits only.
            (t.as_nanos() as u64 ^ (std::process::id() as u64 * 0x9e37_79b9)) & 0xffff_ffff
        })
    }

    /// The initial latents' shape (B = 1): (1, 16, (F−1)/4 + 1, H/8, W/8), as the pipelines' `prepare_latents`.
    pub fn latent_shape(&self) -> [usize; 5] {
        [1, 16, (self.frames - 1) / 4 + 1, self.height / 8, self.width / 8]
    }
}

/// Height and width: positive multiples of 16 (VAE stride 8 × patch 2; `check_inputs` in both pipelines).
fn check_size(what: &str, v: usize) -> Result<()> {
    if v >= 16 && v % 16 == 0 {
        return Ok(());
    }
    let below = v / 16 * 16;
    let hint = if below < 16 { "16".to_string() } else if v % 16 == 0 { below.to_string() } else { format!("{below} or {}", below + 16) };
    Err(Error::invalid(format!("--{what} {v} is not a positive multiple of 16 (VAE stride 8 × patch 2); nearest valid: {hint}")))
}

/// The valid frame counts around `f` (4k+1, at least 1).
fn nearest_frames(f: usize) -> String {
    let below = f.saturating_sub(1) / 4 * 4 + 1;
    if f < 1 {
        "nearest valid: 1".into()
    } else {
        format!("nearest valid: {below} or {}", below + 4)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t2v() -> GenerateRequest {
        GenerateRequest::new("a fox", ModelDefaults { kind: PipelineKind::T2V, tier: Tier::P480 })
    }

    fn err(r: &GenerateRequest, kind: PipelineKind) -> String {
        r.validate(kind).unwrap_err().to_string()
    }

    #[test]
    fn defaults() {
        let r = t2v();
        assert_eq!((r.frames, r.height, r.width, r.steps, r.guidance, r.shift, r.fps), (81, 480, 832, 50, 5.0, 3.0, 16));
        assert_eq!(r.scheduler, SchedulerChoice::UniPc);
        assert!(r.negative_prompt.starts_with("色调艳丽，过曝") && r.negative_prompt.ends_with("倒着走"));
        assert_eq!(r.latent_shape(), [1, 16, 21, 60, 104]);
        r.validate(PipelineKind::T2V).unwrap();
        let r = GenerateRequest::new("a fox", ModelDefaults { kind: PipelineKind::I2V, tier: Tier::P720 });
        assert_eq!((r.height, r.width, r.shift), (720, 1280, 5.0));
        assert_eq!(r.latent_shape(), [1, 16, 21, 90, 160]);
    }

    #[test]
    fn tiers() {
        assert_eq!(Tier::of("Wan-AI/Wan2.1-T2V-1.3B-Diffusers", 30), Tier::P480);
        assert_eq!(Tier::of("Wan-AI/Wan2.1-T2V-14B-Diffusers", 40), Tier::P720);
        assert_eq!(Tier::of("Wan2.1-I2V-14B-480P-Diffusers", 40), Tier::P480);
        assert_eq!(Tier::of("wan2.1-i2v-14b-720p-diffusers", 40), Tier::P720);
    }

    #[test]
    fn sizes_suggest_the_nearest_multiples_of_16() {
        let mut r = t2v();
        r.height = 500;
        let e = err(&r, PipelineKind::T2V);
        assert!(e.contains("--height 500") && e.contains("496 or 512"), "{e}");
        r.height = 480;
        r.width = 8;
        assert!(err(&r, PipelineKind::T2V).contains("nearest valid: 16"));
        r.width = 0;
        assert!(err(&r, PipelineKind::T2V).contains("--width 0"));
    }

    #[test]
    fn frames_suggest_the_nearest_4k_plus_1() {
        let mut r = t2v();
        r.frames = 80;
        let e = err(&r, PipelineKind::T2V);
        assert!(e.contains("--frames 80") && e.contains("77 or 81"), "{e}");
        r.frames = 0;
        assert!(err(&r, PipelineKind::T2V).contains("nearest valid: 1"));
        r.frames = 2;
        assert!(err(&r, PipelineKind::T2V).contains("1 or 5"));
        r.frames = 1;
        r.validate(PipelineKind::T2V).unwrap();
    }

    #[test]
    fn steps_guidance_shift_fps() {
        let mut r = t2v();
        r.steps = 0;
        assert!(err(&r, PipelineKind::T2V).contains("--steps"));
        let mut r = t2v();
        for g in [-0.5, f32::NAN, f32::INFINITY] {
            r.guidance = g;
            assert!(err(&r, PipelineKind::T2V).contains("--guidance"), "{g}");
        }
        r.guidance = 0.0;
        r.validate(PipelineKind::T2V).unwrap();
        assert!(!r.cfg());
        let mut r = t2v();
        r.shift = f64::NAN;
        assert!(err(&r, PipelineKind::T2V).contains("--shift"));
        let mut r = t2v();
        r.fps = 0;
        assert!(err(&r, PipelineKind::T2V).contains("--fps"));
    }

    #[test]
    fn images_match_the_pipeline() {
        let mut r = t2v();
        r.image = Some(PathBuf::from("cat.png"));
        assert!(err(&r, PipelineKind::T2V).contains("text-to-video"));
        r.image = None;
        assert!(err(&r, PipelineKind::I2V).contains("needs --image"));
        r.image = Some(PathBuf::from("/nonexistent/cat.png"));
        assert!(err(&r, PipelineKind::I2V).contains("does not exist"));
    }

    #[test]
    fn schedulers_parse() {
        assert_eq!("UniPC".parse::<SchedulerChoice>().unwrap(), SchedulerChoice::UniPc);
        assert_eq!("euler".parse::<SchedulerChoice>().unwrap(), SchedulerChoice::Euler);
        assert!("ddim".parse::<SchedulerChoice>().unwrap_err().to_string().contains("unipc or euler"));
    }
}
