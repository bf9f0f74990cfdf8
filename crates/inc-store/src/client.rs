//! [`TcpStore`]: a client of a TCPStore-protocol server (ours, or PyTorch's).

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::proto::{
    QueryType, AUTH_OK, CHECK_NOT_READY, CHECK_READY, QUERY_AUTH, STOP_WAITING, VALIDATION_MAGIC,
    WAIT_CANCELED,
};
use crate::server::TOKEN_ENV;
use crate::{Store, StoreError};

/// How a [`TcpStore`] client connects and talks.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// How long to keep retrying the connection (with backoff) before giving up (default 30 s).
    pub connect_timeout: Duration,
    /// How long to wait for the reply of a non-blocking query before calling the connection
    /// dead (default 60 s).
    pub op_timeout: Duration,
    /// Prefix added to every key on the wire (default `/`, what torch's TCPStore adds, so
    /// `set("k")` here is `store.get("k")` in Python).
    pub key_prefix: String,
    /// Token to send (AUTH) after VALIDATE; required by a server started with one.
    pub token: Option<String>,
    /// Largest value accepted in a reply (default 64 MiB); a bigger length prefix is a
    /// protocol error rather than an allocation.
    pub max_value_bytes: u64,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            connect_timeout: Duration::from_secs(30),
            op_timeout: Duration::from_secs(60),
            key_prefix: "/".into(),
            token: None,
            max_value_bytes: 64 << 20,
        }
    }
}

impl ClientOptions {
    /// Defaults, with the token taken from `INC_STORE_TOKEN` when it is set and non-empty.
    pub fn from_env() -> Self {
        ClientOptions {
            token: std::env::var(TOKEN_ENV).ok().filter(|t| !t.is_empty()),
            ..Self::default()
        }
    }
}

/// A TCPStore client: one connection, one query at a time (calls from several threads are
/// serialised). Implements [`Store`].
///
/// If the connection breaks (the server died, a reply never came, the peer broke the protocol)
/// the call returns an error and every later call returns [`StoreError::Closed`]; connect again.
pub struct TcpStore {
    addr: String,
    opts: ClientOptions,
    conn: Mutex<Option<TcpStream>>,
}

const MAX_WAIT_SLICE: Duration = Duration::from_secs(30 * 24 * 3600);

impl TcpStore {
    /// Connects to `addr` (`host:port`), retrying with exponential backoff until
    /// `opts.connect_timeout`, then validates (magic number), authenticates (when a token is
    /// set) and pings.
    pub fn connect(addr: &str, opts: ClientOptions) -> Result<Self, StoreError> {
        let deadline = Instant::now() + opts.connect_timeout;
        let mut backoff = Duration::from_millis(10);
        let mut last: String;
        loop {
            match Self::try_connect(addr, &opts, deadline) {
                Ok(s) => {
                    return Ok(TcpStore {
                        addr: addr.to_owned(),
                        opts,
                        conn: Mutex::new(Some(s)),
                    });
                }
                Err(e @ (StoreError::AuthRejected { .. } | StoreError::InvalidArgument(_))) => {
                    return Err(e)
                }
                Err(e) => last = e.to_string(),
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(StoreError::Connect {
                    addr: addr.to_owned(),
                    timeout: opts.connect_timeout,
                    last,
                });
            }
            std::thread::sleep(backoff.min(deadline - now));
            backoff = (backoff * 2).min(Duration::from_millis(500));
        }
    }

    fn try_connect(
        addr: &str,
        opts: &ClientOptions,
        deadline: Instant,
    ) -> Result<TcpStream, StoreError> {
        if !addr.contains(':') {
            return Err(StoreError::InvalidArgument(format!(
                "store address {addr:?} has no port (want host:port)"
            )));
        }
        let io = |source| StoreError::Io {
            addr: addr.to_owned(),
            source,
        };
        let addrs: Vec<SocketAddr> = addr
            .to_socket_addrs()
            .map_err(|e| match e.kind() {
                // A malformed address will not get better by retrying.
                ErrorKind::InvalidInput => {
                    StoreError::InvalidArgument(format!("store address {addr:?}: {e}"))
                }
                _ => io(e),
            })?
            .collect();
        let mut last = None;
        for a in addrs {
            let left = deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1));
            match TcpStream::connect_timeout(&a, left.min(Duration::from_secs(5))) {
                Ok(s) => {
                    Self::validate(&s, addr, opts, deadline)?;
                    return Ok(s);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(io(last.unwrap_or_else(|| {
            std::io::Error::new(ErrorKind::NotFound, "address resolved to nothing")
        })))
    }

    fn validate(
        s: &TcpStream,
        addr: &str,
        opts: &ClientOptions,
        deadline: Instant,
    ) -> Result<(), StoreError> {
        let io = |source| StoreError::Io {
            addr: addr.to_owned(),
            source,
        };
        s.set_nodelay(true).map_err(io)?;
        let t = deadline
            .saturating_duration_since(Instant::now())
            .clamp(Duration::from_millis(100), opts.op_timeout);
        s.set_read_timeout(Some(t)).map_err(io)?;
        s.set_write_timeout(Some(opts.op_timeout.max(Duration::from_millis(1))))
            .map_err(io)?;
        let mut f = vec![QueryType::Validate as u8];
        f.extend_from_slice(&VALIDATION_MAGIC.to_le_bytes());
        if let Some(tok) = &opts.token {
            f.push(QUERY_AUTH);
            put_bytes(&mut f, tok.as_bytes());
        }
        let nonce = std::process::id() ^ 0x5A5A_0000;
        f.push(QueryType::Ping as u8);
        f.extend_from_slice(&nonce.to_le_bytes());
        let mut w = s;
        w.write_all(&f).map_err(io)?;
        let mut r = s;
        if opts.token.is_some() {
            let mut b = [0u8; 1];
            read_exact(&mut r, &mut b, addr).map_err(|e| hint_token(e, addr))?;
            if b[0] != AUTH_OK {
                return Err(StoreError::AuthRejected {
                    addr: addr.to_owned(),
                });
            }
        }
        let mut b = [0u8; 4];
        read_exact(&mut r, &mut b, addr).map_err(|e| hint_token(e, addr))?;
        if u32::from_le_bytes(b) != nonce {
            return Err(StoreError::Protocol(format!(
                "{addr}: ping returned a wrong nonce"
            )));
        }
        Ok(())
    }

    /// The address this client connected to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Appends `value` to the value of `key` (creating it), as c10d's APPEND.
    pub fn append(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let mut f = vec![QueryType::Append as u8];
        put_bytes(&mut f, self.k(key).as_bytes());
        put_bytes(&mut f, value);
        self.with_conn(|c| self.send(c, &f))
    }

    /// Round-trips a PING (checks that the server is alive and in sync).
    pub fn ping(&self) -> Result<(), StoreError> {
        let nonce: u32 = 0x1234_5678;
        let mut f = vec![QueryType::Ping as u8];
        f.extend_from_slice(&nonce.to_le_bytes());
        self.with_conn(|c| {
            self.send(c, &f)?;
            let got = u32::from_le_bytes(self.recv_arr(c)?);
            if got != nonce {
                return Err(StoreError::Protocol("ping returned a wrong nonce".into()));
            }
            Ok(())
        })
    }

    fn k(&self, key: &str) -> String {
        format!("{}{}", self.opts.key_prefix, key)
    }

    fn lock(&self) -> MutexGuard<'_, Option<TcpStream>> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs one exchange; an error that may leave the stream out of sync closes it for good.
    fn with_conn<T>(
        &self,
        f: impl FnOnce(&mut TcpStream) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut g = self.lock();
        let Some(c) = g.as_mut() else {
            return Err(StoreError::Closed(format!(
                "connection to {} broke earlier; reconnect",
                self.addr
            )));
        };
        let r = f(c);
        if let Err(e) = &r {
            if !matches!(
                e,
                StoreError::Timeout { .. }
                    | StoreError::TooLarge { .. }
                    | StoreError::InvalidArgument(_)
            ) {
                if let Some(c) = g.take() {
                    let _ = c.shutdown(std::net::Shutdown::Both);
                }
            }
        }
        r
    }

    fn send(&self, c: &mut TcpStream, f: &[u8]) -> Result<(), StoreError> {
        c.write_all(f).map_err(|e| map_io(e, &self.addr))
    }

    fn recv_arr<const N: usize>(&self, c: &mut TcpStream) -> Result<[u8; N], StoreError> {
        c.set_read_timeout(Some(self.opts.op_timeout.max(Duration::from_millis(1))))
            .map_err(|e| map_io(e, &self.addr))?;
        let mut b = [0u8; N];
        read_exact(c, &mut b, &self.addr)?;
        Ok(b)
    }

    fn recv_bytes(&self, c: &mut TcpStream) -> Result<Vec<u8>, StoreError> {
        let n = u64::from_le_bytes(self.recv_arr(c)?);
        if n > self.opts.max_value_bytes {
            return Err(StoreError::Protocol(format!(
                "reply of {n} bytes is over max_value_bytes"
            )));
        }
        let mut v =
            vec![0u8; usize::try_from(n).map_err(|_| StoreError::Protocol("reply length".into()))?];
        read_exact(c, &mut v, &self.addr)?;
        Ok(v)
    }

    fn check_sizes(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        if value.len() as u64 > self.opts.max_value_bytes {
            return Err(StoreError::TooLarge {
                what: "value",
                len: value.len() as u64,
                max: self.opts.max_value_bytes,
            });
        }
        let _ = key;
        Ok(())
    }

    /// WAIT with the c10d timeout dance: on timeout send CANCEL_WAIT and read until
    /// WAIT_CANCELED. `Ok(true)` = keys exist, `Ok(false)` = timed out (stream in sync).
    fn do_wait(
        &self,
        c: &mut TcpStream,
        wire_keys: &[String],
        timeout: Duration,
    ) -> Result<bool, StoreError> {
        let mut f = vec![QueryType::Wait as u8];
        f.extend_from_slice(&(wire_keys.len() as u64).to_le_bytes());
        for k in wire_keys {
            put_bytes(&mut f, k.as_bytes());
        }
        self.send(c, &f)?;
        let slice = timeout.clamp(Duration::from_millis(1), MAX_WAIT_SLICE);
        let deadline = Instant::now() + slice;
        c.set_read_timeout(Some(slice))
            .map_err(|e| map_io(e, &self.addr))?;
        let mut b = [0u8; 1];
        loop {
            match c.read(&mut b) {
                Ok(0) => {
                    return Err(StoreError::ConnectionClosed {
                        addr: self.addr.clone(),
                    })
                }
                Ok(_) if b[0] == STOP_WAITING => return Ok(true),
                Ok(_) => {
                    return Err(StoreError::Protocol(format!(
                        "unexpected WAIT reply {}",
                        b[0]
                    )))
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {
                    let left = deadline
                        .saturating_duration_since(Instant::now())
                        .max(Duration::from_millis(1));
                    c.set_read_timeout(Some(left))
                        .map_err(|e| map_io(e, &self.addr))?;
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
                Err(e) => return Err(map_io(e, &self.addr)),
            }
        }
        self.send(c, &[QueryType::CancelWait as u8])?;
        let [r] = self.recv_arr::<1>(c)?;
        match r {
            WAIT_CANCELED => Ok(false),
            STOP_WAITING => {
                // The keys arrived just before the cancel: the wait succeeded after all.
                let [r2] = self.recv_arr::<1>(c)?;
                if r2 != WAIT_CANCELED {
                    return Err(StoreError::Protocol(format!(
                        "expected WAIT_CANCELED, got {r2}"
                    )));
                }
                Ok(true)
            }
            other => Err(StoreError::Protocol(format!(
                "unexpected CANCEL_WAIT reply {other}"
            ))),
        }
    }

    fn wait_keys(
        &self,
        c: &mut TcpStream,
        keys: &[&str],
        timeout: Duration,
    ) -> Result<(), StoreError> {
        let wire: Vec<String> = keys.iter().map(|k| self.k(k)).collect();
        if self.do_wait(c, &wire, timeout)? {
            Ok(())
        } else {
            Err(StoreError::Timeout {
                keys: keys.iter().map(|k| (*k).to_owned()).collect(),
                timeout,
            })
        }
    }
}

impl Store for TcpStore {
    fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.check_sizes(key, value)?;
        let mut f = Vec::with_capacity(32 + key.len() + value.len());
        f.push(QueryType::Set as u8);
        put_bytes(&mut f, self.k(key).as_bytes());
        put_bytes(&mut f, value);
        self.with_conn(|c| self.send(c, &f))
    }

    fn get(&self, key: &str, timeout: Duration) -> Result<Vec<u8>, StoreError> {
        let mut f = vec![QueryType::Get as u8];
        put_bytes(&mut f, self.k(key).as_bytes());
        self.with_conn(|c| {
            self.wait_keys(c, &[key], timeout)?;
            self.send(c, &f)?;
            self.recv_bytes(c)
        })
    }

    fn add(&self, key: &str, delta: i64) -> Result<i64, StoreError> {
        let mut f = vec![QueryType::Add as u8];
        put_bytes(&mut f, self.k(key).as_bytes());
        f.extend_from_slice(&delta.to_le_bytes());
        self.with_conn(|c| {
            self.send(c, &f)?;
            Ok(i64::from_le_bytes(self.recv_arr(c)?))
        })
    }

    fn compare_set(
        &self,
        key: &str,
        expected: &[u8],
        desired: &[u8],
    ) -> Result<Vec<u8>, StoreError> {
        self.check_sizes(key, expected)?;
        self.check_sizes(key, desired)?;
        let mut f = vec![QueryType::CompareSet as u8];
        put_bytes(&mut f, self.k(key).as_bytes());
        put_bytes(&mut f, expected);
        put_bytes(&mut f, desired);
        self.with_conn(|c| {
            self.send(c, &f)?;
            self.recv_bytes(c)
        })
    }

    fn check(&self, keys: &[&str]) -> Result<bool, StoreError> {
        let mut f = vec![QueryType::Check as u8];
        f.extend_from_slice(&(keys.len() as u64).to_le_bytes());
        for k in keys {
            put_bytes(&mut f, self.k(k).as_bytes());
        }
        self.with_conn(|c| {
            self.send(c, &f)?;
            match self.recv_arr::<1>(c)? {
                [CHECK_READY] => Ok(true),
                [CHECK_NOT_READY] => Ok(false),
                [o] => Err(StoreError::Protocol(format!("unexpected CHECK reply {o}"))),
            }
        })
    }

    fn wait(&self, keys: &[&str], timeout: Duration) -> Result<(), StoreError> {
        self.with_conn(|c| self.wait_keys(c, keys, timeout))
    }

    fn delete(&self, key: &str) -> Result<bool, StoreError> {
        let mut f = vec![QueryType::DeleteKey as u8];
        put_bytes(&mut f, self.k(key).as_bytes());
        self.with_conn(|c| {
            self.send(c, &f)?;
            Ok(i64::from_le_bytes(self.recv_arr(c)?) == 1)
        })
    }

    fn num_keys(&self) -> Result<u64, StoreError> {
        self.with_conn(|c| {
            self.send(c, &[QueryType::GetNumKeys as u8])?;
            let n = i64::from_le_bytes(self.recv_arr(c)?);
            u64::try_from(n).map_err(|_| StoreError::Protocol(format!("negative key count {n}")))
        })
    }

    fn multi_set(&self, pairs: &[(&str, &[u8])]) -> Result<(), StoreError> {
        let mut f = vec![QueryType::MultiSet as u8];
        f.extend_from_slice(&(pairs.len() as u64).to_le_bytes());
        for (k, v) in pairs {
            self.check_sizes(k, v)?;
            put_bytes(&mut f, self.k(k).as_bytes());
            put_bytes(&mut f, v);
        }
        self.with_conn(|c| self.send(c, &f))
    }

    fn multi_get(&self, keys: &[&str], timeout: Duration) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut f = vec![QueryType::MultiGet as u8];
        f.extend_from_slice(&(keys.len() as u64).to_le_bytes());
        for k in keys {
            put_bytes(&mut f, self.k(k).as_bytes());
        }
        self.with_conn(|c| {
            self.wait_keys(c, keys, timeout)?;
            self.send(c, &f)?;
            keys.iter().map(|_| self.recv_bytes(c)).collect()
        })
    }
}

fn put_bytes(f: &mut Vec<u8>, b: &[u8]) {
    f.extend_from_slice(&(b.len() as u64).to_le_bytes());
    f.extend_from_slice(b);
}

fn map_io(e: std::io::Error, addr: &str) -> StoreError {
    match e.kind() {
        ErrorKind::UnexpectedEof
        | ErrorKind::ConnectionReset
        | ErrorKind::ConnectionAborted
        | ErrorKind::BrokenPipe => StoreError::ConnectionClosed {
            addr: addr.to_owned(),
        },
        _ => StoreError::Io {
            addr: addr.to_owned(),
            source: e,
        },
    }
}

fn read_exact(c: &mut impl Read, b: &mut [u8], addr: &str) -> Result<(), StoreError> {
    c.read_exact(b).map_err(|e| map_io(e, addr))
}

fn hint_token(e: StoreError, addr: &str) -> StoreError {
    match e {
        StoreError::ConnectionClosed { .. } => StoreError::Protocol(format!(
            "{addr} closed the connection during validation (a server that requires a token \
             closes clients without the right INC_STORE_TOKEN)"
        )),
        other => other,
    }
}
