//! `--sizes` parsing: `1K:64M` (doubling), `1K:64M:x4` (multiplier), `4K:64K:+4K`
//! (additive step), a single size `4K`, or a comma list `1K,8K,1M`.
//!
//! Units are binary (`K` = 1024, `M`, `G`; `B`, `KB`, `KiB`... accepted). Each size is
//! rounded down to a whole number of elements (at least one), as nccl-tests does, and
//! repeated sizes are dropped.

/// Most sizes one `--sizes` may produce (an additive step of 1 byte up to 1G would
/// otherwise make a run that never ends).
pub const MAX_POINTS: usize = 1024;

/// Largest size accepted (1 TiB: far above any buffer, but no overflow anywhere).
pub const MAX_SIZE: u64 = 1 << 40;

/// How a range steps from one size to the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Multiply by this factor (>= 2).
    Times(u64),
    /// Add this many bytes (>= 1).
    Plus(u64),
}

/// Parses one byte size: `4096`, `256K`, `10M`, `1G`, `64KiB`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits_end);
    if num.is_empty() {
        return Err(format!(
            "bad size {s:?}: expected a byte count like 4096, 256K or 10M"
        ));
    }
    let n: u64 = num
        .parse()
        .map_err(|_| format!("bad size {s:?}: number out of range"))?;
    let shift = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        _ => return Err(format!("bad size {s:?}: unknown unit (use K, M or G)")),
    };
    let v = n
        .checked_mul(1u64 << shift)
        .filter(|v| *v <= MAX_SIZE)
        .ok_or_else(|| format!("bad size {s:?}: larger than {MAX_SIZE} bytes"))?;
    Ok(v)
}

fn parse_step(s: &str) -> Result<Step, String> {
    let t = s.trim();
    if let Some(f) = t.strip_prefix(['x', 'X', '*']) {
        let k: u64 = f
            .trim()
            .parse()
            .map_err(|_| format!("bad step {s:?}: expected xN with N an integer >= 2"))?;
        if k < 2 {
            return Err(format!("bad step {s:?}: a multiplier must be at least 2"));
        }
        Ok(Step::Times(k))
    } else if let Some(a) = t.strip_prefix('+') {
        let b = parse_size(a)?;
        if b == 0 {
            return Err(format!(
                "bad step {s:?}: an additive step must be at least 1 byte"
            ));
        }
        Ok(Step::Plus(b))
    } else {
        Err(format!(
            "bad step {s:?}: expected xN (multiply) or +SIZE (add), e.g. x2 or +4K"
        ))
    }
}

/// Rounds `bytes` down to whole elements of `elem` bytes, at least one element.
pub fn round_to_elems(bytes: u64, elem: u64) -> u64 {
    let elem = elem.max(1);
    (bytes / elem).max(1) * elem
}

fn push_point(out: &mut Vec<u64>, bytes: u64, elem: u64) -> Result<(), String> {
    let b = round_to_elems(bytes, elem);
    if out.last() != Some(&b) && !out.contains(&b) {
        if out.len() >= MAX_POINTS {
            return Err(format!(
                "--sizes gives more than {MAX_POINTS} sizes; use a larger step"
            ));
        }
        out.push(b);
    }
    Ok(())
}

/// Parses a `--sizes` spec into byte sizes (ascending for ranges, in the given order for
/// lists), each a whole number of `elem`-byte elements.
pub fn parse_sizes(spec: &str, elem: u64) -> Result<Vec<u64>, String> {
    let spec = spec.trim();
    if spec.is_empty() {
        return Err("--sizes is empty".into());
    }
    let mut out = Vec::new();
    if spec.contains(',') {
        for part in spec.split(',') {
            let b = parse_size(part)?;
            if b == 0 {
                return Err(format!("bad size {part:?}: must be at least 1 byte"));
            }
            push_point(&mut out, b, elem)?;
        }
        return Ok(out);
    }
    let parts: Vec<&str> = spec.split(':').collect();
    let (lo, hi, step) = match parts.as_slice() {
        [one] => {
            let b = parse_size(one)?;
            (b, b, Step::Times(2))
        }
        [a, b] => (parse_size(a)?, parse_size(b)?, Step::Times(2)),
        [a, b, s] => (parse_size(a)?, parse_size(b)?, parse_step(s)?),
        _ => {
            return Err(format!(
                "bad --sizes {spec:?}: expected MIN:MAX[:xN|:+STEP], one size, or a comma list"
            ))
        }
    };
    if lo == 0 {
        return Err(format!(
            "bad --sizes {spec:?}: the smallest size must be at least 1 byte"
        ));
    }
    if lo > hi {
        return Err(format!("bad --sizes {spec:?}: MIN is larger than MAX"));
    }
    let mut cur = lo;
    loop {
        push_point(&mut out, cur, elem)?;
        let next = match step {
            Step::Times(k) => cur.checked_mul(k),
            Step::Plus(a) => cur.checked_add(a),
        };
        match next {
            Some(n) if n <= hi => cur = n,
            _ => break,
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_sizes_and_units() {
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("1K").unwrap(), 1024);
        assert_eq!(parse_size("64M").unwrap(), 64 << 20);
        assert_eq!(parse_size("2g").unwrap(), 2 << 30);
        assert_eq!(parse_size(" 8KiB ").unwrap(), 8192);
        assert_eq!(parse_size("3B").unwrap(), 3);
        assert!(parse_size("").is_err());
        assert!(parse_size("K").is_err());
        assert!(parse_size("1T").is_err());
        assert!(parse_size("-1K").is_err());
        assert!(parse_size("99999999999999999999").is_err());
        assert!(parse_size("2048G").is_err());
    }

    #[test]
    fn doubling_range_default_step() {
        let v = parse_sizes("1K:16K", 2).unwrap();
        assert_eq!(v, vec![1024, 2048, 4096, 8192, 16384]);
        let v = parse_sizes("1K:64M", 4).unwrap();
        assert_eq!(v.len(), 17);
        assert_eq!(v.first(), Some(&1024));
        assert_eq!(v.last(), Some(&(64 << 20)));
    }

    #[test]
    fn multiplier_and_additive_steps() {
        assert_eq!(
            parse_sizes("1K:64K:x4", 4).unwrap(),
            vec![1024, 4096, 16384, 65536]
        );
        assert_eq!(
            parse_sizes("4K:16K:+4K", 4).unwrap(),
            vec![4096, 8192, 12288, 16384]
        );
        // MAX not reached exactly: stop below it.
        assert_eq!(parse_sizes("1K:5K:x2", 4).unwrap(), vec![1024, 2048, 4096]);
        assert!(parse_sizes("1K:4K:x1", 4).is_err());
        assert!(parse_sizes("1K:4K:+0", 4).is_err());
        assert!(parse_sizes("1K:4K:2", 4).is_err());
        assert!(parse_sizes("1K:4K:xabc", 4).is_err());
    }

    #[test]
    fn rounding_to_elements_and_dedup() {
        // 6 bytes of f32 -> 4; 1 byte -> one element.
        assert_eq!(parse_sizes("6", 4).unwrap(), vec![4]);
        assert_eq!(parse_sizes("1:8", 4).unwrap(), vec![4, 8]);
        assert_eq!(parse_sizes("1K,1K,3K", 2).unwrap(), vec![1024, 3072]);
        assert_eq!(round_to_elems(7, 2), 6);
        assert_eq!(round_to_elems(0, 2), 2);
    }

    #[test]
    fn bad_specs_are_errors() {
        assert!(parse_sizes("", 4).is_err());
        assert!(parse_sizes("16K:1K", 4).is_err());
        assert!(parse_sizes("0:1K", 4).is_err());
        assert!(parse_sizes("1K:2K:x2:x2", 4).is_err());
        assert!(parse_sizes("1K,0", 4).is_err());
        // Too many points: an error, not a run that never ends.
        let e = parse_sizes("1:1G:+1", 1).unwrap_err();
        assert!(e.contains("more than"), "{e}");
    }

    #[test]
    fn huge_range_does_not_overflow() {
        let v = parse_sizes("1G:1024G:x2", 4).unwrap();
        assert_eq!(v.len(), 11);
        assert_eq!(v.last(), Some(&(1u64 << 40)));
    }
}
