//! The tune file (`inc-tune/1`, see the `tune` module docs): its records, reading it,
//! turning measured times into rules, merging a new key into an existing file.

use std::collections::BTreeMap;

use inc_comm::AlgoPath as Path;
use serde::{Deserialize, Serialize};

use crate::cmd::bench::{Mode, Report};

/// Format tag written in every table.
pub const FORMAT: &str = "inc-tune/1";

/// One rule (see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    /// GPU model of the key.
    #[serde(default)]
    pub gpu: Option<String>,
    /// Driver version of the key.
    #[serde(default)]
    pub driver: Option<String>,
    /// World size.
    pub world: usize,
    /// Topology class.
    #[serde(default)]
    pub class: Option<String>,
    /// Element type, when the rule is for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dtype: Option<String>,
    /// Largest call (bytes) the rule covers.
    pub max_bytes: u64,
    /// `one-shot`, `two-shot`, `hcm` or `nccl`.
    pub algo: String,
}

/// The measurements behind one key's rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// GPU model.
    pub gpu: String,
    /// Driver version.
    pub driver: String,
    /// World size.
    pub world: usize,
    /// Topology class.
    pub class: String,
    /// Backend measured.
    pub backend: String,
    /// Element type measured.
    pub dtype: String,
    /// Reduction measured.
    pub op: String,
    /// `graph` or `eager`.
    pub mode: String,
    /// Repetitions per point.
    pub iters: usize,
    /// When (seconds since the Unix epoch).
    pub created_unix: u64,
    /// Per size: the winner and every path's median time.
    pub sizes: Vec<Measured>,
}

/// One size of a [`Machine`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measured {
    /// Bytes.
    pub size_bytes: u64,
    /// The chosen path (`-` when none ran).
    pub best: String,
    /// Median microseconds per path that ran.
    pub time_us: BTreeMap<String, f64>,
}

/// A whole tune file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TuneFile {
    /// [`FORMAT`].
    pub format: String,
    /// Every key's rules.
    pub rules: Vec<Rule>,
    /// Every key's measurements.
    #[serde(default)]
    pub machines: Vec<Machine>,
}

impl Default for TuneFile {
    fn default() -> Self {
        Self {
            format: FORMAT.into(),
            rules: Vec::new(),
            machines: Vec::new(),
        }
    }
}

/// Reads a tune file written by `inc tune`.
pub fn load(path: &std::path::Path) -> Result<TuneFile, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let f: TuneFile = serde_json::from_str(&text)
        .map_err(|e| format!("{} is not an inc tune table: {e}", path.display()))?;
    if f.format != FORMAT {
        return Err(format!(
            "{}: format {:?}, expected {FORMAT:?}",
            path.display(),
            f.format
        ));
    }
    Ok(f)
}

/// Chooses a path per size and folds the choices into `(max_bytes, path)` rules.
///
/// `times[k]` holds path `k`'s median time per size (`None`: it did not run). At each
/// size the fastest path wins, except that the previous size's winner is kept while it
/// is within `tolerance` (a fraction) of the fastest. Sizes where nothing ran give no
/// rule. Consecutive sizes with the same winner become one rule ending at the last one.
pub fn derive_rules(
    sizes: &[u64],
    times: &[(Path, Vec<Option<f64>>)],
    tolerance: f64,
) -> Vec<(u64, Path)> {
    let tol = if tolerance.is_finite() && tolerance > 0.0 {
        tolerance
    } else {
        0.0
    };
    let mut winners: Vec<(u64, Path)> = Vec::new();
    let mut prev: Option<Path> = None;
    for (i, &b) in sizes.iter().enumerate() {
        let at = |p: Path| {
            times
                .iter()
                .find(|(q, _)| *q == p)
                .and_then(|(_, v)| v.get(i).copied().flatten())
                .filter(|t| t.is_finite() && *t > 0.0)
        };
        let best = times
            .iter()
            .filter_map(|(p, _)| at(*p).map(|t| (*p, t)))
            .min_by(|a, b| a.1.total_cmp(&b.1));
        let Some((mut win, tbest)) = best else {
            continue;
        };
        if let Some(p) = prev {
            if at(p).is_some_and(|t| t <= tbest * (1.0 + tol)) {
                win = p;
            }
        }
        prev = Some(win);
        winners.push((b, win));
    }
    let mut rules: Vec<(u64, Path)> = Vec::new();
    for (b, p) in winners {
        match rules.last_mut() {
            Some(last) if last.1 == p => last.0 = b,
            _ => rules.push((b, p)),
        }
    }
    rules
}

/// Replaces `file`'s rules and measurements of `machine`'s key with the new ones.
///
/// New rules without a dtype replace every rule of the key; new per-dtype rules replace
/// the key's rules of that dtype and go first (lookup takes the first match, so a rule for
/// one dtype must come before the key's rules for any dtype).
pub fn merge(file: &mut TuneFile, machine: Machine, rules: Vec<Rule>) {
    let same = |gpu: Option<&str>, driver: Option<&str>, world: usize, class: Option<&str>| {
        gpu == Some(machine.gpu.as_str())
            && driver == Some(machine.driver.as_str())
            && world == machine.world
            && class == Some(machine.class.as_str())
    };
    let new_dtype = rules.first().and_then(|r| r.dtype.clone());
    file.rules.retain(|r| {
        let mine = same(
            r.gpu.as_deref(),
            r.driver.as_deref(),
            r.world,
            r.class.as_deref(),
        );
        !mine || (new_dtype.is_some() && r.dtype != new_dtype)
    });
    file.machines.retain(|m| {
        !(same(Some(&m.gpu), Some(&m.driver), m.world, Some(&m.class)) && m.dtype == machine.dtype)
    });
    if new_dtype.is_some() {
        file.rules.splice(0..0, rules);
    } else {
        file.rules.extend(rules);
    }
    file.machines.push(machine);
}

/// Builds the machine record and rules from a report of every path.
pub fn from_report(report: &Report, tolerance: f64, per_dtype: bool) -> (Machine, Vec<Rule>) {
    let mode = report.modes().first().copied().unwrap_or(Mode::Eager);
    let times: Vec<(Path, Vec<Option<f64>>)> = report
        .series
        .iter()
        .filter(|s| s.mode == mode)
        .filter_map(|s| {
            let p: Path = s.name.parse().ok()?;
            Some((p, s.samples.iter().map(|x| x.time_us).collect()))
        })
        .collect();
    let derived = derive_rules(&report.sizes, &times, tolerance);
    let best_at = |b: u64| {
        derived
            .iter()
            .find(|(max, _)| b <= *max)
            .map_or("-".to_string(), |(_, p)| p.name().to_string())
    };
    let sizes = report
        .sizes
        .iter()
        .enumerate()
        .map(|(i, &b)| Measured {
            size_bytes: b,
            best: best_at(b),
            time_us: times
                .iter()
                .filter_map(|(p, v)| {
                    v.get(i)
                        .copied()
                        .flatten()
                        .map(|t| (p.name().to_string(), t))
                })
                .collect(),
        })
        .collect();
    let created_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let machine = Machine {
        gpu: report.device.clone(),
        driver: report.driver.clone(),
        world: report.world,
        class: report.topology.clone(),
        backend: report.backend.clone(),
        dtype: report.dtype.name().into(),
        op: report.op.name().into(),
        mode: mode.name().into(),
        iters: report.iters,
        created_unix,
        sizes,
    };
    let rules = derived
        .into_iter()
        .map(|(max_bytes, p)| Rule {
            gpu: Some(report.device.clone()),
            driver: Some(report.driver.clone()),
            world: report.world,
            class: Some(report.topology.clone()),
            dtype: per_dtype.then(|| report.dtype.name().to_string()),
            max_bytes,
            algo: p.name().into(),
        })
        .collect();
    (machine, rules)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(v: &[f64]) -> Vec<Option<f64>> {
        v.iter()
            .map(|x| if *x > 0.0 { Some(*x) } else { None })
            .collect()
    }

    #[test]
    fn rules_follow_the_fastest_path() {
        let sizes = [1, 2, 4, 8, 16];
        let times = vec![
            (Path::OneShot, t(&[1.0, 1.0, 2.0, 5.0, 9.0])),
            (Path::TwoShot, t(&[3.0, 3.0, 3.0, 4.0, 6.0])),
        ];
        assert_eq!(
            derive_rules(&sizes, &times, 0.0),
            vec![(4, Path::OneShot), (16, Path::TwoShot)]
        );
    }

    #[test]
    fn tolerance_keeps_the_incumbent_and_gaps_are_skipped() {
        let sizes = [1, 2, 4, 8];
        let times = vec![
            (Path::OneShot, t(&[1.0, 2.02, 0.0, 5.0])),
            (Path::TwoShot, t(&[3.0, 2.0, 0.0, 4.0])),
        ];
        // At 2 one-shot is within 3% of two-shot: kept. At 4 nothing ran. At 8 two-shot wins.
        assert_eq!(
            derive_rules(&sizes, &times, 0.03),
            vec![(2, Path::OneShot), (8, Path::TwoShot)]
        );
        assert_eq!(
            derive_rules(&sizes, &times, 0.0),
            vec![(1, Path::OneShot), (8, Path::TwoShot)]
        );
        assert!(derive_rules(&sizes, &[], 0.0).is_empty());
    }

    fn machine(gpu: &str, world: usize, dtype: &str) -> Machine {
        Machine {
            gpu: gpu.into(),
            driver: "1".into(),
            world,
            class: "fully_connected".into(),
            backend: "sim".into(),
            dtype: dtype.into(),
            op: "sum".into(),
            mode: "eager".into(),
            iters: 1,
            created_unix: 0,
            sizes: vec![],
        }
    }

    fn rule(gpu: &str, world: usize, max: u64, algo: &str) -> Rule {
        Rule {
            gpu: Some(gpu.into()),
            driver: Some("1".into()),
            world,
            class: Some("fully_connected".into()),
            dtype: None,
            max_bytes: max,
            algo: algo.into(),
        }
    }

    #[test]
    fn merge_replaces_only_the_same_key() {
        let mut f = TuneFile::default();
        merge(
            &mut f,
            machine("A", 2, "bf16"),
            vec![rule("A", 2, 10, "one-shot"), rule("A", 2, 20, "two-shot")],
        );
        merge(
            &mut f,
            machine("A", 4, "bf16"),
            vec![rule("A", 4, 10, "one-shot")],
        );
        merge(
            &mut f,
            machine("B", 2, "bf16"),
            vec![rule("B", 2, 10, "two-shot")],
        );
        assert_eq!(f.rules.len(), 4);
        merge(
            &mut f,
            machine("A", 2, "bf16"),
            vec![rule("A", 2, 99, "one-shot")],
        );
        assert_eq!(f.rules.len(), 3);
        assert_eq!(f.machines.len(), 3);
        assert!(f
            .rules
            .iter()
            .any(|r| r.gpu.as_deref() == Some("A") && r.world == 2 && r.max_bytes == 99));
        assert!(!f
            .rules
            .iter()
            .any(|r| r.gpu.as_deref() == Some("A") && r.world == 2 && r.max_bytes == 20));
        // The library reads the file.
        let text = serde_json::to_string(&f).unwrap();
        let table = inc_comm::TuneTable::parse(&text).unwrap();
        assert_eq!(table.len(), 3);
        // Per-dtype rules go first (first match wins) and replace only their dtype.
        let mut r = rule("A", 4, 5, "two-shot");
        r.dtype = Some("f32".into());
        merge(&mut f, machine("A", 4, "f32"), vec![r]);
        assert_eq!(f.rules[0].dtype.as_deref(), Some("f32"));
        assert_eq!(f.rules.len(), 4);
        // A dtype-less retune of the key replaces all of its rules.
        merge(
            &mut f,
            machine("A", 4, "bf16"),
            vec![rule("A", 4, 10, "one-shot")],
        );
        assert_eq!(f.rules.len(), 3);
        assert!(f.rules.iter().all(|r| r.dtype.is_none()));
    }

    #[test]
    fn load_checks_the_format() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.json");
        std::fs::write(&p, r#"{"format":"other","rules":[]}"#).unwrap();
        assert!(load(&p).is_err());
        std::fs::write(&p, "garbage").unwrap();
        assert!(load(&p).is_err());
        std::fs::write(&p, serde_json::to_string(&TuneFile::default()).unwrap()).unwrap();
        assert_eq!(load(&p).unwrap(), TuneFile::default());
        assert!(load(&dir.path().join("missing.json")).is_err());
    }
}
