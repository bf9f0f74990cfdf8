//! [`TcpStoreServer`]: a server that speaks c10d's TCPStore protocol (see [`crate::proto`]).
//!
//! Two threads per connection: a reader that decodes frames and executes them under the state
//! lock, and a writer that drains the connection's outbox. A WAIT whose keys are missing is
//! parked in the state; the SET/ADD/... that completes it (on another connection's thread)
//! pushes STOP_WAITING into the waiter's outbox. Every reply is queued under the state lock, so
//! STOP_WAITING and WAIT_CANCELED reach a client in the order their causes happened. Nothing
//! polls: threads block on sockets, channels and the lock.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::proto::{
    decode_request, Decoded, Limits, Request, AUTH_OK, AUTH_REJECTED, CHECK_NOT_READY, CHECK_READY,
    STOP_WAITING, VALIDATION_MAGIC, WAIT_CANCELED,
};
use crate::store::parse_counter;
use crate::StoreError;

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

#[derive(Default)]
struct State {
    kv: HashMap<Vec<u8>, Vec<u8>>,
    queues: HashMap<Vec<u8>, VecDeque<Vec<u8>>>,
    bytes: u64,
    waiting: HashMap<Vec<u8>, Vec<u64>>,
    awaited: HashMap<u64, usize>,
    conns: HashMap<u64, Conn>,
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

/// Why a connection's reader stopped.
enum End {
    /// Orderly: the peer closed between frames.
    Closed,
    /// Dropped for a reason worth a warning; flush queued replies first when true.
    Drop(String, bool),
}

struct ConnReader {
    shared: Arc<Shared>,
    id: u64,
    peer: String,
    stream: TcpStream,
    pending: Arc<AtomicU64>,
    validated: bool,
    authed: bool,
}

impl ConnReader {
    /// Reads and serves frames until the peer goes or must be dropped; returns whether the
    /// queued replies should be flushed before closing.
    fn run(&mut self) -> bool {
        match self.serve() {
            End::Closed => true,
            End::Drop(reason, flush) => {
                if !self.shared.stop.load(Ordering::SeqCst) {
                    tracing::warn!(peer = %self.peer, %reason, "inc-store: dropping client");
                }
                flush
            }
        }
    }

    fn serve(&mut self) -> End {
        let limits = self.shared.opts.limits;
        let mut buf: Vec<u8> = Vec::new();
        let mut start = 0usize;
        let mut chunk = vec![0u8; 64 << 10];
        let mut timed = false;
        loop {
            // Serve every whole frame in the buffer.
            loop {
                let avail = buf.get(start..).unwrap_or(&[]);
                if avail.is_empty() {
                    break;
                }
                match decode_request(avail, &limits) {
                    Ok(Decoded::Frame { request, len }) => {
                        start += len;
                        if let Err(end) = self.handle(request) {
                            return end;
                        }
                    }
                    Ok(Decoded::Incomplete { need }) => {
                        buf.reserve(need.saturating_sub(avail.len()));
                        break;
                    }
                    Err(e) => return End::Drop(format!("malformed frame: {e}"), true),
                }
            }
            if start > 0 {
                buf.drain(..start.min(buf.len()));
                start = 0;
            }
            // A partial frame may not stall forever; an idle connection may.
            let want_timeout = !buf.is_empty();
            if want_timeout != timed {
                let t = if want_timeout {
                    Some(self.shared.opts.frame_timeout)
                } else {
                    None
                };
                if let Err(e) = self.stream.set_read_timeout(t) {
                    return End::Drop(format!("set_read_timeout: {e}"), false);
                }
                timed = want_timeout;
            }
            match self.stream.read(&mut chunk) {
                Ok(0) if buf.is_empty() => return End::Closed,
                Ok(0) => {
                    return End::Drop(
                        format!("disconnected mid-frame ({} bytes buffered)", buf.len()),
                        false,
                    )
                }
                Ok(n) => buf.extend_from_slice(chunk.get(..n).unwrap_or(&[])),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return End::Drop(
                        format!("stalled mid-frame for {:?}", self.shared.opts.frame_timeout),
                        false,
                    )
                }
                Err(e) => return End::Drop(format!("read error: {e}"), false),
            }
        }
    }

    fn handle(&mut self, req: Request) -> Result<(), End> {
        let drop = |r: String| End::Drop(r, true);
        if !self.validated {
            return match req {
                Request::Validate { magic } if magic == VALIDATION_MAGIC => {
                    self.validated = true;
                    Ok(())
                }
                Request::Validate { magic } => {
                    Err(drop(format!("bad validation magic {magic:#x}")))
                }
                _ => Err(drop("first frame is not VALIDATE".into())),
            };
        }
        if let Request::Auth { token } = &req {
            let ok = match &self.shared.opts.token {
                None => true,
                Some(t) => ct_eq(t.as_bytes(), token),
            };
            let mut st = self.shared.lock();
            self.reply(&mut st, vec![if ok { AUTH_OK } else { AUTH_REJECTED }])?;
            drop_guard(st);
            if !ok {
                return Err(drop("wrong token".into()));
            }
            self.authed = true;
            return Ok(());
        }
        if !self.authed {
            return Err(drop(
                "query before AUTH on a server that requires a token".into(),
            ));
        }
        let lim = self.shared.opts.limits;
        let max_total = self.shared.opts.max_total_bytes;
        let mut st = self.shared.lock();
        match req {
            Request::Validate { magic } => {
                if magic != VALIDATION_MAGIC {
                    return Err(drop(format!("bad validation magic {magic:#x}")));
                }
            }
            Request::Auth { .. } => {}
            Request::Set { key, value } => {
                set(&mut st, key, value, max_total).map_err(drop)?;
            }
            Request::CompareSet {
                key,
                expected,
                desired,
            } => {
                let out = match st.kv.get(&key) {
                    None if expected.is_empty() => {
                        set(&mut st, key, desired.clone(), max_total).map_err(drop)?;
                        desired
                    }
                    None => {
                        wake(&mut st, &key);
                        expected
                    }
                    Some(cur) if *cur == expected => {
                        set(&mut st, key, desired.clone(), max_total).map_err(drop)?;
                        desired
                    }
                    Some(cur) => {
                        let cur = cur.clone();
                        wake(&mut st, &key);
                        cur
                    }
                };
                self.reply(&mut st, bytes_reply(&out))?;
            }
            Request::Get { key } => {
                let out = bytes_reply(st.kv.get(&key).map(Vec::as_slice).unwrap_or(&[]));
                self.reply(&mut st, out)?;
            }
            Request::Add { key, delta } => {
                let old = match st.kv.get(&key) {
                    None => 0,
                    Some(v) => parse_counter(v)
                        .ok_or_else(|| drop("ADD on a value that is not an integer".into()))?,
                };
                let new = old
                    .checked_add(delta)
                    .ok_or_else(|| drop("ADD overflows i64".into()))?;
                set(&mut st, key, new.to_string().into_bytes(), max_total).map_err(drop)?;
                self.reply(&mut st, new.to_le_bytes().to_vec())?;
            }
            Request::Check { keys } => {
                let ready = keys.iter().all(|k| exists(&st, k));
                self.reply(
                    &mut st,
                    vec![if ready { CHECK_READY } else { CHECK_NOT_READY }],
                )?;
            }
            Request::Wait { keys } => {
                let missing: HashSet<Vec<u8>> =
                    keys.into_iter().filter(|k| !exists(&st, k)).collect();
                if missing.is_empty() {
                    self.reply(&mut st, vec![STOP_WAITING])?;
                } else {
                    if st.awaited.contains_key(&self.id) {
                        return Err(drop("WAIT while another WAIT is pending".into()));
                    }
                    st.awaited.insert(self.id, missing.len());
                    for k in missing {
                        st.waiting.entry(k).or_default().push(self.id);
                    }
                }
            }
            Request::GetNumKeys => {
                let n = st.kv.len() as i64;
                self.reply(&mut st, n.to_le_bytes().to_vec())?;
            }
            Request::DeleteKey { key } => {
                let n = match st.kv.remove(&key) {
                    Some(v) => {
                        st.bytes = st.bytes.saturating_sub((key.len() + v.len()) as u64);
                        1i64
                    }
                    None => 0,
                };
                self.reply(&mut st, n.to_le_bytes().to_vec())?;
            }
            Request::Append { key, value } => {
                let mut v = st.kv.get(&key).cloned().unwrap_or_default();
                if (v.len() + value.len()) as u64 > lim.max_value_bytes {
                    return Err(drop("APPEND would exceed the value limit".into()));
                }
                v.extend_from_slice(&value);
                set(&mut st, key, v, max_total).map_err(drop)?;
            }
            Request::MultiGet { keys } => {
                let total: u64 = keys
                    .iter()
                    .map(|k| 8 + st.kv.get(k).map_or(0, |v| v.len() as u64))
                    .sum();
                if total > self.shared.opts.max_pending_bytes {
                    return Err(drop(format!(
                        "MULTI_GET reply of {total} bytes is over the limit"
                    )));
                }
                let mut out = Vec::with_capacity(total as usize);
                for k in &keys {
                    let v = st.kv.get(k).map(Vec::as_slice).unwrap_or(&[]);
                    out.extend_from_slice(&(v.len() as u64).to_le_bytes());
                    out.extend_from_slice(v);
                }
                self.reply(&mut st, out)?;
            }
            Request::MultiSet { pairs } => {
                for (k, v) in pairs {
                    set(&mut st, k, v, max_total).map_err(drop)?;
                }
            }
            Request::CancelWait => {
                clear_wait(&mut st, self.id);
                self.reply(&mut st, vec![WAIT_CANCELED])?;
            }
            Request::Ping { nonce } => self.reply(&mut st, nonce.to_le_bytes().to_vec())?,
            Request::QueuePush { key, value } => {
                let add = value.len() as u64;
                if st.bytes + add > max_total {
                    return Err(drop("store is full (max_total_bytes)".into()));
                }
                st.bytes += add;
                st.queues.entry(key.clone()).or_default().push_back(value);
                wake(&mut st, &key);
            }
            Request::QueuePop { key } => {
                let q = st.queues.get_mut(&key);
                let len = q.as_ref().map_or(0, |q| q.len());
                let item = q.and_then(|q| q.pop_front());
                let mut out = (len as i64).to_le_bytes().to_vec();
                if let Some(item) = item {
                    st.bytes = st.bytes.saturating_sub(item.len() as u64);
                    out.extend_from_slice(&bytes_reply(&item));
                }
                if st.queues.get(&key).is_some_and(VecDeque::is_empty) {
                    st.queues.remove(&key);
                }
                self.reply(&mut st, out)?;
            }
            Request::QueueLen { key } => {
                let n = st.queues.get(&key).map_or(0, |q| q.len()) as i64;
                self.reply(&mut st, n.to_le_bytes().to_vec())?;
            }
        }
        Ok(())
    }

    /// Queues a reply to this client (called with the state lock held, for ordering).
    fn reply(&self, st: &mut State, bytes: Vec<u8>) -> Result<(), End> {
        let Some(c) = st.conns.get(&self.id) else {
            return Err(End::Drop("server shutting down".into(), false));
        };
        if !send(c, bytes) {
            return Err(End::Drop("client is gone".into(), false));
        }
        let pending = self.pending.load(Ordering::Relaxed);
        if pending > self.shared.opts.max_pending_bytes {
            return Err(End::Drop(
                format!("{pending} bytes of replies unread"),
                false,
            ));
        }
        Ok(())
    }

    fn close(self, writer: JoinHandle<()>, flush: bool) {
        let conn = {
            let mut st = self.shared.lock();
            clear_wait(&mut st, self.id);
            st.conns.remove(&self.id)
        };
        if !flush {
            let _ = self.stream.shutdown(Shutdown::Both);
        }
        // Dropping the last sender ends the writer once it has written what is queued.
        drop(conn);
        let _ = writer.join();
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

fn drop_guard(g: MutexGuard<'_, State>) {
    drop(g);
}

fn send(c: &Conn, bytes: Vec<u8>) -> bool {
    c.pending.fetch_add(bytes.len() as u64, Ordering::Relaxed);
    c.out.send(bytes).is_ok()
}

fn bytes_reply(v: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + v.len());
    out.extend_from_slice(&(v.len() as u64).to_le_bytes());
    out.extend_from_slice(v);
    out
}

fn exists(st: &State, k: &[u8]) -> bool {
    st.kv.contains_key(k) || st.queues.get(k).is_some_and(|q| !q.is_empty())
}

fn set(st: &mut State, key: Vec<u8>, value: Vec<u8>, max_total: u64) -> Result<(), String> {
    let old = st.kv.get(&key).map_or(0, |v| (key.len() + v.len()) as u64);
    let new = (key.len() + value.len()) as u64;
    let total = st.bytes.saturating_sub(old) + new;
    if total > max_total {
        return Err(format!(
            "store is full ({total} bytes over max_total_bytes {max_total})"
        ));
    }
    st.bytes = total;
    let k2 = key.clone();
    st.kv.insert(key, value);
    wake(st, &k2);
    Ok(())
}

/// Wakes the clients waiting for `key`: each whose last awaited key this was gets STOP_WAITING.
fn wake(st: &mut State, key: &[u8]) {
    let Some(ids) = st.waiting.remove(key) else {
        return;
    };
    for id in ids {
        let done = match st.awaited.get_mut(&id) {
            Some(n) => {
                *n = n.saturating_sub(1);
                *n == 0
            }
            None => false,
        };
        if done {
            st.awaited.remove(&id);
            if let Some(c) = st.conns.get(&id) {
                let _ = send(c, vec![STOP_WAITING]);
            }
        }
    }
}

fn clear_wait(st: &mut State, id: u64) {
    if st.awaited.remove(&id).is_none() {
        return;
    }
    st.waiting.retain(|_, ids| {
        ids.retain(|i| *i != id);
        !ids.is_empty()
    });
}

/// Compares in time independent of where the first difference is.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
