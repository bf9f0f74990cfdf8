//! [`TcpStoreServer`]: a server that speaks c10d's TCPStore protocol (see [`crate::proto`]).
//!
//! Two threads per connection: a reader that decodes frames and executes them under the state
//! lock, and a writer that drains the connection's outbox. A WAIT whose keys are missing is
//! parked in the state; the SET/ADD/... that completes it (on another connection's thread)
//! pushes STOP_WAITING into the waiter's outbox. Every reply is queued under the state lock, so
//! STOP_WAITING and WAIT_CANCELED reach a client in the order their causes happened. Nothing
//! polls: threads block on sockets, channels and the lock.

use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::proto::Limits;
use crate::StoreError;

mod conn;
mod ops;

use conn::ConnReader;
use ops::State;

/// The environment variable holding the shared token (server and client).
pub const TOKEN_ENV: &str = "INC_STORE_TOKEN";

/// How a [`TcpStoreServer`] listens and what it accepts.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Address to bind (default `127.0.0.1:0`: loopback, a free port).
    pub addr: SocketAddr,
    /// Shared token that clients must send (AUTH) right after VALIDATE; `None` = open.
    pub token: Option<String>,
    /// Bounds on keys, values, key lists and frames.
    pub limits: Limits,
    /// Bound on the bytes of all keys and values held (default 1 GiB).
    pub max_total_bytes: u64,
    /// Bound on the replies queued for one client that does not read them (default 256 MiB).
    pub max_pending_bytes: u64,
    /// Most concurrent connections (default 4096); more are closed at accept.
    pub max_connections: usize,
    /// How long a client may stall in the middle of a frame before it is dropped (default 30 s).
    pub frame_timeout: Duration,
    /// How long a write to a client may block before it is dropped (default 30 s).
    pub write_timeout: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            token: None,
            limits: Limits::default(),
            max_total_bytes: 1 << 30,
            max_pending_bytes: 256 << 20,
            max_connections: 4096,
            frame_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
        }
    }
}

impl ServerOptions {
    /// Defaults, with the token taken from `INC_STORE_TOKEN` when it is set and non-empty.
    pub fn from_env() -> Self {
        ServerOptions {
            token: std::env::var(TOKEN_ENV).ok().filter(|t| !t.is_empty()),
            ..Self::default()
        }
    }
}

struct Conn {
    out: Sender<Vec<u8>>,
    pending: Arc<AtomicU64>,
    stream: TcpStream,
}

struct Shared {
    state: Mutex<State>,
    opts: ServerOptions,
    stop: AtomicBool,
    next_id: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Handlers never panic while holding the lock on reachable paths; if one did, the maps
        // are still structurally sound, so keep serving.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running TCPStore-protocol server. Dropping it (or [`TcpStoreServer::shutdown`]) stops it
/// and closes every client connection, so clients blocked in a wait get an error.
pub struct TcpStoreServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl TcpStoreServer {
    /// Binds `opts.addr` and starts serving on a background thread.
    pub fn start(opts: ServerOptions) -> Result<Self, StoreError> {
        let listener = TcpListener::bind(opts.addr).map_err(|source| StoreError::Io {
            addr: opts.addr.to_string(),
            source,
        })?;
        let addr = listener.local_addr().map_err(|source| StoreError::Io {
            addr: opts.addr.to_string(),
            source,
        })?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            opts,
            stop: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
        });
        let s2 = shared.clone();
        let accept = std::thread::Builder::new()
            .name("inc-store-accept".into())
            .spawn(move || accept_loop(listener, s2))
            .map_err(|source| StoreError::Io {
                addr: addr.to_string(),
                source,
            })?;
        tracing::info!(%addr, "inc-store server listening");
        Ok(TcpStoreServer {
            addr,
            shared,
            accept: Some(accept),
        })
    }

    /// The bound address (with the real port when port 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Number of client connections open now.
    pub fn connections(&self) -> usize {
        self.shared.lock().conns.len()
    }

    /// Blocks the calling thread while the server runs (until another thread shuts it down).
    pub fn join(mut self) {
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }

    /// Stops accepting, closes every client connection and joins the accept thread. Idempotent.
    pub fn shutdown(&mut self) {
        if self.shared.stop.swap(true, Ordering::SeqCst) {
            return;
        }
        // Wake the blocking accept() with a connection of our own.
        let mut wake = self.addr;
        if wake.ip().is_unspecified() {
            wake.set_ip(match wake {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        let _ = TcpStream::connect_timeout(&wake, Duration::from_secs(1));
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
        let mut st = self.shared.lock();
        for (_, c) in st.conns.drain() {
            let _ = c.stream.shutdown(Shutdown::Both);
        }
        st.waiting.clear();
        st.awaited.clear();
        tracing::info!(addr = %self.addr, "inc-store server stopped");
    }
}

impl Drop for TcpStoreServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for incoming in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let stream = match incoming {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "inc-store: accept failed");
                // e.g. out of file descriptors: back off a little instead of spinning.
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let peer = stream
            .peer_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|_| "?".into());
        if let Err(reason) = spawn_conn(stream, &shared, &peer) {
            tracing::warn!(%peer, %reason, "inc-store: refusing connection");
        }
    }
}

fn spawn_conn(stream: TcpStream, shared: &Arc<Shared>, peer: &str) -> Result<(), String> {
    let _ = stream.set_nodelay(true);
    stream
        .set_write_timeout(Some(shared.opts.write_timeout))
        .map_err(|e| e.to_string())?;
    let writer_stream = stream.try_clone().map_err(|e| e.to_string())?;
    let registry_stream = stream.try_clone().map_err(|e| e.to_string())?;
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = channel::<Vec<u8>>();
    let pending = Arc::new(AtomicU64::new(0));
    {
        let mut st = shared.lock();
        if st.conns.len() >= shared.opts.max_connections {
            let _ = stream.shutdown(Shutdown::Both);
            return Err(format!(
                "over max_connections ({})",
                shared.opts.max_connections
            ));
        }
        st.conns.insert(
            id,
            Conn {
                out: tx,
                pending: pending.clone(),
                stream: registry_stream,
            },
        );
    }
    let p2 = pending.clone();
    let peer2 = peer.to_owned();
    let writer = std::thread::Builder::new()
        .name(format!("inc-store-w{id}"))
        .spawn(move || writer_loop(writer_stream, rx, p2, &peer2));
    let writer = match writer {
        Ok(w) => w,
        Err(e) => {
            shared.lock().conns.remove(&id);
            let _ = stream.shutdown(Shutdown::Both);
            return Err(format!("cannot spawn writer thread: {e}"));
        }
    };
    let s2 = shared.clone();
    let peer2 = peer.to_owned();
    let reader = std::thread::Builder::new()
        .name(format!("inc-store-r{id}"))
        .spawn(move || {
            let mut c = ConnReader {
                shared: s2,
                id,
                peer: peer2,
                stream,
                pending,
                validated: false,
                authed: false,
            };
            c.authed = c.shared.opts.token.is_none();
            let flush = c.run();
            c.close(writer, flush);
        });
    if let Err(e) = reader {
        // The writer ends when its outbox sender (held by the registry) goes away.
        if let Some(c) = shared.lock().conns.remove(&id) {
            let _ = c.stream.shutdown(Shutdown::Both);
        }
        return Err(format!("cannot spawn reader thread: {e}"));
    }
    Ok(())
}

fn writer_loop(mut stream: TcpStream, rx: Receiver<Vec<u8>>, pending: Arc<AtomicU64>, peer: &str) {
    while let Ok(buf) = rx.recv() {
        if let Err(e) = stream.write_all(&buf) {
            tracing::warn!(%peer, error = %e, "inc-store: write to client failed; dropping it");
            let _ = stream.shutdown(Shutdown::Both);
            return;
        }
        pending.fetch_sub(buf.len() as u64, Ordering::Relaxed);
    }
}
