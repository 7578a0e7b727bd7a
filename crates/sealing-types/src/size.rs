//! Byte sizes as operators read and write them: `SizeStr` output (`18.1 GiB`) and parsing of
//! `2KiB`, `56GiB`, `1.5 GiB`, `1000000` (bytes).

const UNITS: [&str; 8] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB"];

/// Lotus's `types.SizeStr`: divide by 1024 while ≥ 1024, print with 4 significant digits.
pub fn size_str(bytes: u64) -> String {
    let mut f = bytes as f64;
    let mut i = 0;
    while f >= 1024.0 && i + 1 < UNITS.len() {
        f /= 1024.0;
        i += 1;
    }
    format!("{} {}", fmt_g4(f), UNITS[i])
}

/// Go's `%.4g`: four significant digits, trailing zeros trimmed, exponent form only for very
/// large or small values (never reached for sizes, kept for correctness).
pub fn fmt_g4(f: f64) -> String {
    if f == 0.0 {
        return "0".into();
    }
    let exp = f.abs().log10().floor() as i32;
    // Round to 4 significant digits first: rounding can bump the exponent (999.95 → 1000).
    let sci = format!("{:.3e}", f);
    let (mant, e) = sci.split_once('e').expect("scientific format");
    let e: i32 = e.parse().unwrap_or(exp);
    if !(-4..4).contains(&e) {
        let mant = trim_zeros(mant);
        let sign = if e < 0 { '-' } else { '+' };
        return format!("{mant}e{sign}{:02}", e.abs());
    }
    let decimals = (3 - e).max(0) as usize;
    trim_zeros(&format!("{:.*}", decimals, f)).to_string()
}

fn trim_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("invalid size {input:?}: expected a number of bytes or a number with a unit like 2KiB, 512MiB, 32GiB, 1.5TiB")]
pub struct InvalidSize {
    pub input: String,
}

/// Parse `2KiB`, `2 KiB`, `2K`, `32GiB`, `1.5TiB`, `2048`. Units are binary (KiB = 1024), and a
/// bare `K/M/G/T` or `KB/MB/...` is read as binary too, as Lotus does for `--max-storage`.
pub fn parse_size(input: &str) -> Result<u64, InvalidSize> {
    let err = || InvalidSize { input: input.to_string() };
    let s = input.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let num: f64 = num.parse().map_err(|_| err())?;
    let unit = unit.trim().to_ascii_lowercase();
    let pow = match unit.as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 1,
        "m" | "mb" | "mib" => 2,
        "g" | "gb" | "gib" => 3,
        "t" | "tb" | "tib" => 4,
        "p" | "pb" | "pib" => 5,
        _ => return Err(err()),
    };
    let bytes = num * 1024f64.powi(pow);
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(err());
    }
    Ok(bytes.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_str_matches_lotus() {
        assert_eq!(size_str(0), "0 B");
        assert_eq!(size_str(2048), "2 KiB");
        assert_eq!(size_str(18_100 * (1 << 20) / 1000 * 1000), "17.68 GiB");
        assert_eq!(size_str((62.7 * (1u64 << 30) as f64) as u64), "62.7 GiB");
        assert_eq!(size_str(1008 * (1 << 30)), "1008 GiB");
        assert_eq!(size_str((125.8 * (1u64 << 30) as f64) as u64), "125.8 GiB");
        assert_eq!(size_str(56 * (1 << 30) + 10 * (1 << 20)), "56.01 GiB");
    }

    #[test]
    fn parse() {
        assert_eq!(parse_size("2KiB").unwrap(), 2048);
        assert_eq!(parse_size("32GiB").unwrap(), 32 << 30);
        assert_eq!(parse_size("1.5 GiB").unwrap(), 3 << 29);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("2T").unwrap(), 2 << 40);
        assert!(parse_size("").is_err());
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("-3GiB").is_err());
    }
}
