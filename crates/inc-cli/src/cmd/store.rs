//! `inc store`: run a TCPStore-protocol rendezvous server, or talk to one (ours or torch's).
//!
//! `INC_STORE_TOKEN`, when set, is the shared token (server: required of clients; client: sent
//! at connect). Keys get torch's `/` prefix on the wire, so `inc store set --addr A k v` is
//! `TCPStore(...).get("k")` in Python.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use inc_store::{ClientOptions, ServerOptions, Store, StoreError, TcpStore, TcpStoreServer};

/// Arguments of `inc store`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    cmd: Sub,
}

#[derive(clap::Args)]
struct Conn {
    /// Server address, host:port (e.g. $MASTER_ADDR:$MASTER_PORT of a torchrun job).
    #[arg(long)]
    addr: String,
    /// Seconds to keep retrying the connection.
    #[arg(long, default_value_t = 10.0)]
    connect_timeout: f64,
    /// Prefix added to every key on the wire ("/" is what torch's TCPStore adds).
    #[arg(long, default_value = "/")]
    key_prefix: String,
}

#[derive(clap::Subcommand)]
enum Sub {
    /// Run a server until killed; prints the bound address on its first line.
    Serve {
        /// Address to bind; port 0 picks a free port. Binds loopback unless told otherwise.
        #[arg(long, default_value = "127.0.0.1:0")]
        addr: SocketAddr,
    },
    /// Set KEY to VALUE.
    Set {
        #[command(flatten)]
        conn: Conn,
        /// Key.
        key: String,
        /// Value (its UTF-8 bytes).
        value: String,
    },
    /// Print the value of KEY, waiting up to --timeout seconds for it to exist.
    Get {
        #[command(flatten)]
        conn: Conn,
        /// Key.
        key: String,
        /// Seconds to wait for the key.
        #[arg(long, default_value_t = 30.0)]
        timeout: f64,
    },
    /// Add DELTA to the counter at KEY and print the new value.
    Add {
        #[command(flatten)]
        conn: Conn,
        /// Key.
        key: String,
        /// Amount to add.
        #[arg(allow_hyphen_values = true)]
        delta: i64,
    },
    /// Compare-and-set: set KEY to DESIRED if it holds EXPECTED (or is missing and EXPECTED is
    /// empty); print the value held afterwards.
    CompareSet {
        #[command(flatten)]
        conn: Conn,
        /// Key.
        key: String,
        /// Expected current value ("" = key must be missing).
        expected: String,
        /// New value.
        desired: String,
    },
    /// Wait until every KEY exists.
    Wait {
        #[command(flatten)]
        conn: Conn,
        /// Keys.
        #[arg(required = true)]
        keys: Vec<String>,
        /// Seconds to wait.
        #[arg(long, default_value_t = 30.0)]
        timeout: f64,
    },
    /// Time `store_all_gather` of --world ranks (threads, one connection each) against a
    /// server; prints microseconds per all-gather.
    BenchGather {
        #[command(flatten)]
        conn: Conn,
        /// Ranks.
        #[arg(long, default_value_t = 8)]
        world: usize,
        /// All-gathers to time.
        #[arg(long, default_value_t = 200)]
        rounds: usize,
        /// Bytes each rank contributes.
        #[arg(long, default_value_t = 4096)]
        bytes: usize,
    },
    /// Delete KEY; prints true if it existed.
    Delete {
        #[command(flatten)]
        conn: Conn,
        /// Key.
        key: String,
    },
}

/// Runs `inc store`.
pub fn run(args: Args) -> ExitCode {
    match run_inner(args.cmd) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("inc store: {e}");
            ExitCode::FAILURE
        }
    }
}

fn secs(what: &str, s: f64) -> Result<Duration, StoreError> {
    Duration::try_from_secs_f64(s).map_err(|_| {
        StoreError::InvalidArgument(format!(
            "{what} must be a non-negative number of seconds, got {s}"
        ))
    })
}

fn connect(c: &Conn) -> Result<TcpStore, StoreError> {
    let opts = ClientOptions {
        connect_timeout: secs("--connect-timeout", c.connect_timeout)?,
        key_prefix: c.key_prefix.clone(),
        ..ClientOptions::from_env()
    };
    TcpStore::connect(&c.addr, opts)
}

fn out(bytes: &[u8]) -> Result<(), StoreError> {
    let mut o = std::io::stdout().lock();
    o.write_all(bytes)
        .and_then(|_| o.write_all(b"\n"))
        .and_then(|_| o.flush())
        .map_err(|source| StoreError::Io {
            addr: "stdout".into(),
            source,
        })
}

fn run_inner(cmd: Sub) -> Result<(), StoreError> {
    match cmd {
        Sub::Serve { addr } => {
            let server = TcpStoreServer::start(ServerOptions {
                addr,
                ..ServerOptions::from_env()
            })?;
            out(server.local_addr().to_string().as_bytes())?;
            server.join();
            Ok(())
        }
        Sub::Set { conn, key, value } => connect(&conn)?.set(&key, value.as_bytes()),
        Sub::Get { conn, key, timeout } => {
            let t = secs("--timeout", timeout)?;
            let v = connect(&conn)?.get(&key, t)?;
            out(&v)
        }
        Sub::Add { conn, key, delta } => {
            let v = connect(&conn)?.add(&key, delta)?;
            out(v.to_string().as_bytes())
        }
        Sub::CompareSet {
            conn,
            key,
            expected,
            desired,
        } => {
            let v = connect(&conn)?.compare_set(&key, expected.as_bytes(), desired.as_bytes())?;
            out(&v)
        }
        Sub::Wait {
            conn,
            keys,
            timeout,
        } => {
            let t = secs("--timeout", timeout)?;
            let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
            connect(&conn)?.wait(&refs, t)
        }
        Sub::BenchGather {
            conn,
            world,
            rounds,
            bytes,
        } => bench_gather(&conn, world, rounds, bytes),
        Sub::Delete { conn, key } => {
            let existed = connect(&conn)?.delete(&key)?;
            out(existed.to_string().as_bytes())
        }
    }
}

fn bench_gather(conn: &Conn, world: usize, rounds: usize, bytes: usize) -> Result<(), StoreError> {
    if world == 0 || rounds == 0 {
        return Err(StoreError::InvalidArgument(
            "--world and --rounds must be positive".into(),
        ));
    }
    let clients = (0..world)
        .map(|_| connect(conn))
        .collect::<Result<Vec<_>, _>>()?;
    let prefix = format!("inc-bench/{}/{}", std::process::id(), clients.len());
    let barrier = std::sync::Barrier::new(world);
    let timeout = Duration::from_secs(60);
    let times = std::thread::scope(|s| {
        let hs: Vec<_> = clients
            .iter()
            .enumerate()
            .map(|(r, c)| {
                let (prefix, barrier) = (&prefix, &barrier);
                s.spawn(move || -> Result<Duration, StoreError> {
                    let mine = vec![r as u8; bytes];
                    inc_store::store_all_gather(c, prefix, r, world, &mine, timeout)?;
                    barrier.wait();
                    let t0 = std::time::Instant::now();
                    for _ in 0..rounds {
                        inc_store::store_all_gather(c, prefix, r, world, &mine, timeout)?;
                    }
                    Ok(t0.elapsed())
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(StoreError::Closed("bench thread panicked".into())))
            })
            .collect::<Result<Vec<_>, _>>()
    })?;
    let worst = times.into_iter().max().unwrap_or_default();
    let us = worst.as_secs_f64() * 1e6 / rounds as f64;
    out(
        format!("{us:.1} us per all-gather ({world} ranks x {bytes} B, {rounds} rounds)")
            .as_bytes(),
    )
}
