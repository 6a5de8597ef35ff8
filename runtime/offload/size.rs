//! Byte sizes as users type them (`8GiB`, `7.5G`, `512MiB`, `auto`) and as the plan prints them.

use crate::{Error, Result};

/// A VRAM budget: a byte count, or `auto` (the device's free memory minus [`auto_margin`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Budget {
    #[default]
    Auto,
    Bytes(u64),
}

impl Budget {
    /// The budget in bytes, given the device's free memory (only `Auto` uses it).
    pub fn resolve(self, free_bytes: u64) -> Result<u64> {
        match self {
            Budget::Bytes(b) => Ok(b),
            Budget::Auto => {
                let margin = auto_margin(free_bytes);
                free_bytes.checked_sub(margin).filter(|&b| b > 0).ok_or_else(|| {
                    Error::invalid(format!(
                        "budget auto: only {} free on the device, less than the {} margin kept for the CUDA context, cuBLASLt and fragmentation",
                        fmt_bytes(free_bytes),
                        fmt_bytes(margin)
                    ))
                })
            }
        }
    }
}

/// What `auto` leaves free: 512 MiB or 5% of the free memory, whichever is larger. The margin covers
/// memory the runtime's pool does not account (cuBLASLt workspace, kernel modules) and fragmentation.
pub fn auto_margin(free_bytes: u64) -> u64 {
    (512u64 << 20).max(free_bytes / 20)
}

/// Parses a size: a number with an optional unit, case-insensitive, spaces allowed before the unit.
/// `K`/`KiB`, `M`/`MiB`, `G`/`GiB`, `T`/`TiB` are powers of 1024; `KB`, `MB`, `GB`, `TB` powers of
/// 1000; no unit (or `B`) means bytes. `auto` asks for the free memory minus a margin.
pub fn parse_size(s: &str) -> Result<Budget> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("auto") {
        return Ok(Budget::Auto);
    }
    let bad = |why: &str| Error::invalid(format!("size {s:?}: {why} (examples: 8GiB, 7.5G, 512MiB, auto)"));
    if t.starts_with('-') {
        return Err(bad("a size cannot be negative"));
    }
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return Err(bad("no number"));
    }
    let unit = unit.trim().to_ascii_lowercase();
    // Exponent notation (`1e30`) is not a unit: say what is wrong with it, not "unknown unit".
    if let Some(exp) = unit.strip_prefix('e').filter(|e| !e.is_empty() && e.trim_start_matches(['+', '-']).bytes().all(|b| b.is_ascii_digit())) {
        let v: f64 = format!("{num}e{exp}").parse().map_err(|_| bad("not a number"))?;
        return Err(if v >= MAX_SIZE { bad(&too_large()) } else { bad("exponent notation is not accepted; write the digits or use a unit") });
    }
    let mult: f64 = match unit.as_str() {
        "" | "b" => 1.0,
        "k" | "kib" => 1024.0,
        "m" | "mib" => 1024f64.powi(2),
        "g" | "gib" => 1024f64.powi(3),
        "t" | "tib" => 1024f64.powi(4),
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        _ => return Err(bad("unknown unit")),
    };
    let v: f64 = num.parse().map_err(|_| bad("not a number"))?;
    let bytes = (v * mult).round();
    if !bytes.is_finite() || bytes >= MAX_SIZE {
        return Err(bad(&too_large()));
    }
    Ok(Budget::Bytes(bytes as u64))
}

/// Sizes at or above 2^63 bytes are refused: below it the value is exact as u64 after the float
/// round trip, and every sum the planner forms with it stays in range.
const MAX_SIZE: f64 = 9.2e18;

fn too_large() -> String {
    format!("too large (at most {MAX_SIZE:e} bytes, 8 EiB)")
}

impl std::str::FromStr for Budget {
    type Err = Error;
    /// [`parse_size`], for command-line parsers.
    fn from_str(s: &str) -> Result<Budget> {
        parse_size(s)
    }
}

/// `1.50 GiB`, `512.00 MiB`, `300 B`.
pub fn fmt_bytes(b: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if b < 1024 {
        return format!("{b} B");
    }
    let mut v = b as f64 / 1024.0;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.2} {}", UNITS.get(u).unwrap_or(&"TiB"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_say_what_is_wrong() {
        let e = |s: &str| parse_size(s).unwrap_err().to_string();
        assert!(e("-1GiB").contains("negative"));
        assert!(e("1e30").contains("too large") && e("1e30").contains("8 EiB"));
        assert!(e("1e3").contains("exponent"));
        assert!(e("99999999999TiB").contains("too large"));
        assert!(e("8 parsecs").contains("unknown unit"));
        assert_eq!("8GiB".parse::<Budget>().unwrap(), Budget::Bytes(8 << 30));
        assert_eq!(fmt_bytes(u64::MAX), "16777216.00 TiB");
    }
}
