//! Helpers shared by inc-sim's integration tests (`mod common;` in each test file).

use inc_sim::{check, Report, SimConfig};

/// Checks `c` over `schedules` schedules from `seed` and panics with the scenario and the
/// first violation's rendering if there is one; returns the report otherwise.
pub fn clean(c: &SimConfig, schedules: u64, seed: u64) -> Report {
    let r = check(c, schedules, seed).unwrap();
    if let Some(v) = r.violations.first() {
        panic!("{c:?}\n{}", v.render());
    }
    r
}
