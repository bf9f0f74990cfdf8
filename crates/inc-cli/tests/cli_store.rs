#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `inc store` end to end: serve on port 0, set, get, add, compare-set, wait, timeouts, a
//! killed server.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn inc() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_inc"));
    c.env_remove("INC_STORE_TOKEN");
    c
}

struct Server(Child, String);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve() -> Server {
    let mut child = inc()
        .args(["store", "serve", "--addr", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line.trim().to_owned();
    assert!(
        addr.starts_with("127.0.0.1:") && !addr.ends_with(":0"),
        "{addr:?}"
    );
    Server(child, addr)
}

fn run(args: &[&str]) -> Output {
    inc().args(args).output().unwrap()
}

fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone())
        .unwrap()
        .trim_end()
        .to_owned()
}

#[test]
fn serve_set_get_add_compare_set_wait() {
    let s = serve();
    let a = s.1.as_str();
    stdout(&run(&[
        "store",
        "set",
        "--addr",
        a,
        "greeting",
        "hello world",
    ]));
    assert_eq!(
        stdout(&run(&["store", "get", "--addr", a, "greeting"])),
        "hello world"
    );
    assert_eq!(stdout(&run(&["store", "add", "--addr", a, "n", "5"])), "5");
    assert_eq!(stdout(&run(&["store", "add", "--addr", a, "n", "-2"])), "3");
    assert_eq!(
        stdout(&run(&["store", "compare-set", "--addr", a, "cs", "", "v1"])),
        "v1"
    );
    assert_eq!(
        stdout(&run(&[
            "store",
            "compare-set",
            "--addr",
            a,
            "cs",
            "v1",
            "v2"
        ])),
        "v2"
    );
    stdout(&run(&[
        "store",
        "wait",
        "--addr",
        a,
        "greeting",
        "cs",
        "--timeout",
        "5",
    ]));
    assert_eq!(
        stdout(&run(&["store", "delete", "--addr", a, "cs"])),
        "true"
    );
}

#[test]
fn missing_key_times_out_with_one_line_error() {
    let s = serve();
    let t0 = Instant::now();
    let o = run(&["store", "get", "--addr", &s.1, "absent", "--timeout", "0.3"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("timed out") && err.contains("absent"), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(10));
    // Bad arguments are errors too.
    let o = run(&["store", "get", "--addr", &s.1, "k", "--timeout", "-1"]);
    assert!(!o.status.success());
    let o = run(&[
        "store",
        "set",
        "--addr",
        "127.0.0.1:1",
        "--connect-timeout",
        "0.2",
        "k",
        "v",
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("could not connect"));
}

#[test]
fn killed_server_fails_a_waiting_get() {
    let mut s = serve();
    let mut get = inc()
        .args(["store", "get", "--addr", &s.1, "never", "--timeout", "60"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    s.0.kill().unwrap();
    let t0 = Instant::now();
    let o = loop {
        if let Some(st) = get.try_wait().unwrap() {
            break st;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "get did not notice the dead server"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!o.success());
}
