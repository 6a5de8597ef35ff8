//! The flow-shift policy: the model folder's config by default, a resolution-based value on `auto`,
//! or any value the user gives.

use std::fmt;
use std::str::FromStr;

use wanrt_runtime::{Error, Result};

use super::config::SchedulerConfig;
use super::sigmas::validate_shift;

/// Shift for 480P-class videos (official Wan2.1 `generate.py` for I2V 480P; the diffusers configs).
pub const SHIFT_480P: f64 = 3.0;
/// Shift for 720P-class videos (official `generate.py`; the diffusers docs' advice for 720P).
pub const SHIFT_720P: f64 = 5.0;

const AREA_480P: f64 = 480.0 * 832.0;
const AREA_720P: f64 = 720.0 * 1280.0;

/// How the flow shift is chosen.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum ShiftPolicy {
    /// `flow_shift` from `scheduler/scheduler_config.json` (3.0 in the Wan2.1 diffusers repositories).
    #[default]
    FromConfig,
    /// `SHIFT_480P` or `SHIFT_720P` by the frame area (`auto_shift`).
    Auto,
    /// This value.
    Value(f64),
}

impl ShiftPolicy {
    /// Parses `config` (or `default`), `auto`, or a number > 0.
    pub fn parse(s: &str) -> Result<ShiftPolicy> {
        let t = s.trim();
        match t.to_ascii_lowercase().as_str() {
            "config" | "default" => Ok(ShiftPolicy::FromConfig),
            "auto" => Ok(ShiftPolicy::Auto),
            _ => {
                let v: f64 = t.parse().map_err(|_| {
                    Error::invalid(format!(
                        "flow shift {s:?} is not \"config\", \"auto\" or a number"
                    ))
                })?;
                validate_shift(v)?;
                Ok(ShiftPolicy::Value(v))
            }
        }
    }

    /// The shift for a `height`×`width` (pixels) video with the model folder's `config`.
    pub fn resolve(&self, config: &SchedulerConfig, height: u32, width: u32) -> Result<f64> {
        match *self {
            ShiftPolicy::FromConfig => Ok(config.flow_shift),
            ShiftPolicy::Auto => auto_shift(height, width),
            ShiftPolicy::Value(v) => {
                validate_shift(v)?;
                Ok(v)
            }
        }
    }
}

impl FromStr for ShiftPolicy {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        ShiftPolicy::parse(s)
    }
}

impl fmt::Display for ShiftPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShiftPolicy::FromConfig => f.write_str("config"),
            ShiftPolicy::Auto => f.write_str("auto"),
            ShiftPolicy::Value(v) => write!(f, "{v}"),
        }
    }
}

/// `SHIFT_720P` when the frame area exceeds the geometric mean of the 480P (480×832) and 720P
/// (720×1280) areas, about 606,700 pixels, else `SHIFT_480P`. The boundary sits between the two
/// classes whatever the aspect ratio of the `max_area` recipe (diffusers `pipeline_wan_i2v.py`
/// `EXAMPLE_DOC_STRING`).
pub fn auto_shift(height: u32, width: u32) -> Result<f64> {
    if height == 0 || width == 0 {
        return Err(Error::invalid(format!(
            "video size {height}x{width} has a zero side"
        )));
    }
    let area = height as f64 * width as f64;
    Ok(if area > (AREA_480P * AREA_720P).sqrt() {
        SHIFT_720P
    } else {
        SHIFT_480P
    })
}
