//! `inc launch`'s engine: run N copies of a command as the ranks of one job.
//!
//! It starts nothing but processes; the caller (the `inc launch` subcommand) starts the
//! store server and passes its port. Each child gets the torchrun environment (`RANK`,
//! `WORLD_SIZE`, `LOCAL_RANK`, `LOCAL_WORLD_SIZE`, `MASTER_ADDR`, `MASTER_PORT`) plus
//! `INC_JOB_ID`; its stdout and stderr lines come back prefixed with `[rank N] `. The job's
//! exit code is the first non-zero exit code of a child (a child killed by signal `s`
//! counts as `128 + s`); once one child failed, the others get `grace` to finish on their
//! own, then they are killed. An interrupt (SIGINT/SIGTERM to the launcher) kills every
//! child the same way.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use inc_comm::{CommError, Result};

/// What to launch.
#[derive(Debug, Clone)]
pub struct LaunchSpec {
    /// Number of ranks (processes).
    pub nprocs: usize,
    /// Program to run (an `inc` program name resolves to the running `inc` binary).
    pub program: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Address of the store server (`MASTER_ADDR`).
    pub master_addr: String,
    /// Port of the store server (`MASTER_PORT`).
    pub master_port: u16,
    /// Job id (`INC_JOB_ID`), unique per launch.
    pub job_id: String,
    /// How long the other ranks may run on after one failed.
    pub grace: Duration,
}

/// How the job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchOutcome {
    /// Exit code per rank (`None` when the rank was killed by the launcher).
    pub codes: Vec<Option<i32>>,
    /// The job's exit code: the first non-zero exit code, else 0.
    pub exit_code: i32,
    /// The rank whose failure decided the exit code.
    pub first_failed: Option<usize>,
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_sig: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Makes SIGINT and SIGTERM set a flag that [`run_job`] polls (instead of killing the
/// launcher before it can clean up its children).
fn install_signal_handlers() {
    let handler: extern "C" fn(libc::c_int) = on_signal;
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: `on_signal` only stores to an atomic, which is async-signal-safe, and the
        // handler value is a valid `extern "C" fn(c_int)` for the whole program lifetime.
        unsafe {
            libc::signal(sig, handler as libc::sighandler_t);
        }
    }
}

/// Sends `sig` to a child's whole process group (each child leads its own group, so
/// grandchildren such as the command of `sh -c` are reached too).
fn signal_group(child: &Child, sig: libc::c_int) {
    let Ok(pid) = libc::pid_t::try_from(child.id()) else {
        return;
    };
    // SAFETY: kill(2) on the process group of a child we spawned (with process_group(0))
    // and have not reaped yet; no memory is touched.
    unsafe {
        libc::kill(-pid, sig);
    }
}

/// The exit code a shell would report for `status`.
pub fn exit_code_of(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => c,
        (None, Some(s)) => 128 + s,
        (None, None) => 1,
    }
}

fn resolve_program(program: &str) -> String {
    if program == "inc" {
        if let Ok(exe) = std::env::current_exe() {
            return exe.to_string_lossy().into_owned();
        }
    }
    program.to_string()
}

fn forward<R: Read + Send + 'static>(rank: usize, src: R, to_stderr: bool) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(src);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let text = String::from_utf8_lossy(&line);
                    let text = text.trim_end_matches(['\n', '\r']);
                    // Write the whole line under one lock so lines of ranks never mix.
                    if to_stderr {
                        let _ = writeln!(std::io::stderr().lock(), "[rank {rank}] {text}");
                    } else {
                        let _ = writeln!(std::io::stdout().lock(), "[rank {rank}] {text}");
                    }
                }
            }
        }
    })
}

/// Runs the job and waits for it. Blocks until every child has exited (or was killed).
pub fn run_job(spec: &LaunchSpec) -> Result<LaunchOutcome> {
    if spec.nprocs == 0 {
        return Err(CommError::InvalidOption {
            name: "-n".into(),
            value: "0".into(),
            reason: "need at least one process".into(),
        });
    }
    install_signal_handlers();
    let program = resolve_program(&spec.program);
    let mut children: Vec<Option<Child>> = Vec::with_capacity(spec.nprocs);
    let mut pumps = Vec::new();
    for rank in 0..spec.nprocs {
        let spawned = Command::new(&program)
            .args(&spec.args)
            .env("RANK", rank.to_string())
            .env("LOCAL_RANK", rank.to_string())
            .env("WORLD_SIZE", spec.nprocs.to_string())
            .env("LOCAL_WORLD_SIZE", spec.nprocs.to_string())
            .env("GROUP_RANK", "0")
            .env("MASTER_ADDR", &spec.master_addr)
            .env("MASTER_PORT", spec.master_port.to_string())
            .env("INC_JOB_ID", &spec.job_id)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn();
        match spawned {
            Ok(mut child) => {
                if let Some(out) = child.stdout.take() {
                    pumps.push(forward(rank, out, false));
                }
                if let Some(err) = child.stderr.take() {
                    pumps.push(forward(rank, err, true));
                }
                children.push(Some(child));
            }
            Err(e) => {
                for c in children.iter_mut().flatten() {
                    let _ = c.kill();
                    let _ = c.wait();
                }
                return Err(CommError::Io {
                    what: format!("spawning rank {rank} ({program})"),
                    reason: e.to_string(),
                    source: inc_comm::ErrorSource::new(e),
                });
            }
        }
    }

    let mut codes: Vec<Option<i32>> = vec![None; spec.nprocs];
    let mut first_failed: Option<(usize, i32)> = None;
    let mut kill_at: Option<Instant> = None;
    let mut sigterm_sent = false;
    loop {
        let mut running = 0usize;
        for (rank, slot) in children.iter_mut().enumerate() {
            let Some(child) = slot.as_mut() else { continue };
            match child.try_wait() {
                Ok(Some(status)) => {
                    let code = exit_code_of(status);
                    if let Some(c) = codes.get_mut(rank) {
                        *c = Some(code);
                    }
                    if code != 0 && first_failed.is_none() {
                        first_failed = Some((rank, code));
                        kill_at = Some(Instant::now() + spec.grace);
                    }
                    *slot = None;
                }
                Ok(None) => running += 1,
                Err(_) => {
                    *slot = None;
                    if first_failed.is_none() {
                        first_failed = Some((rank, 1));
                        kill_at = Some(Instant::now() + spec.grace);
                    }
                }
            }
        }
        if running == 0 {
            break;
        }
        if INTERRUPTED.load(Ordering::SeqCst) && kill_at.is_none() {
            if first_failed.is_none() {
                first_failed = Some((usize::MAX, 130));
            }
            kill_at = Some(Instant::now() + spec.grace.min(Duration::from_secs(2)));
        }
        if let Some(deadline) = kill_at {
            let now = Instant::now();
            if !sigterm_sent && (now >= deadline || INTERRUPTED.load(Ordering::SeqCst)) {
                for c in children.iter().flatten() {
                    signal_group(c, libc::SIGTERM);
                }
                sigterm_sent = true;
            }
            if now >= deadline + Duration::from_secs(1) {
                for c in children.iter_mut().flatten() {
                    signal_group(c, libc::SIGKILL);
                    let _ = c.kill();
                }
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // Output pumps end when every writer of the pipes is gone; a grandchild that left the
    // process group may keep a pipe open, so wait a little, then leave them behind.
    let pump_deadline = Instant::now() + Duration::from_secs(2);
    while pumps.iter().any(|p| !p.is_finished()) && Instant::now() < pump_deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    for p in pumps.into_iter().filter(|p| p.is_finished()) {
        let _ = p.join();
    }
    let (first, exit_code) = match first_failed {
        Some((r, c)) => ((r != usize::MAX).then_some(r), c),
        None => (None, 0),
    };
    Ok(LaunchOutcome {
        codes,
        exit_code,
        first_failed: first,
    })
}

/// A job id that is unique enough per launch: pid and clock, in hex.
pub fn new_job_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{:x}{:08x}",
        std::process::id(),
        (nanos as u64) & 0xffff_ffff
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(n: usize, script: &str) -> LaunchSpec {
        LaunchSpec {
            nprocs: n,
            program: "sh".into(),
            args: vec!["-c".into(), script.into()],
            master_addr: "127.0.0.1".into(),
            master_port: 1,
            job_id: "t".into(),
            grace: Duration::from_millis(300),
        }
    }

    #[test]
    fn all_succeed() {
        let out = run_job(&spec(3, "test \"$WORLD_SIZE\" = 3 && echo hi $RANK")).unwrap();
        assert_eq!(out.exit_code, 0);
        assert_eq!(out.codes, vec![Some(0); 3]);
    }

    #[test]
    fn first_failure_wins_and_the_rest_are_killed() {
        let started = Instant::now();
        let out = run_job(&spec(
            3,
            "if [ \"$RANK\" = 1 ]; then exit 7; else sleep 30; fi",
        ))
        .unwrap();
        assert_eq!(out.exit_code, 7);
        assert_eq!(out.first_failed, Some(1));
        assert!(started.elapsed() < Duration::from_secs(10));
        // Killed ranks report a signal exit (128 + SIGTERM/SIGKILL).
        assert!(out.codes[0].unwrap() > 128);
    }

    #[test]
    fn zero_processes_is_an_error() {
        assert!(run_job(&spec(0, "true")).is_err());
    }

    #[test]
    fn missing_program_is_an_error() {
        let mut s = spec(2, "");
        s.program = "/nonexistent/prog".into();
        assert!(matches!(run_job(&s), Err(CommError::Io { .. })));
    }
}
