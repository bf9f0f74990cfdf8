//! One client connection's reader: framing (partial frames bounded by the frame timeout),
//! VALIDATE and AUTH first, then every query executed under the state lock (see `ops`),
//! replies queued in order to the connection's writer, and the close.

use std::io::{ErrorKind, Read};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, MutexGuard};
use std::thread::JoinHandle;

use super::ops::{clear_wait, State};
use super::{Conn, Shared};
use crate::proto::{decode_request, Decoded, Request, AUTH_OK, AUTH_REJECTED, VALIDATION_MAGIC};

/// Why a connection's reader stopped.
pub(super) enum End {
    /// Orderly: the peer closed between frames.
    Closed,
    /// Dropped for a reason worth a warning; flush queued replies first when true.
    Drop(String, bool),
}

pub(super) struct ConnReader {
    pub(super) shared: Arc<Shared>,
    pub(super) id: u64,
    pub(super) peer: String,
    pub(super) stream: TcpStream,
    pub(super) pending: Arc<AtomicU64>,
    pub(super) validated: bool,
    pub(super) authed: bool,
}

impl ConnReader {
    /// Reads and serves frames until the peer goes or must be dropped; returns whether the
    /// queued replies should be flushed before closing.
    pub(super) fn run(&mut self) -> bool {
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
        let mut st = self.shared.lock();
        self.execute(&mut st, req)
    }

    /// Queues a reply to this client (called with the state lock held, for ordering).
    pub(super) fn reply(&self, st: &mut State, bytes: Vec<u8>) -> Result<(), End> {
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

    pub(super) fn close(self, writer: JoinHandle<()>, flush: bool) {
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

pub(super) fn send(c: &Conn, bytes: Vec<u8>) -> bool {
    c.pending.fetch_add(bytes.len() as u64, Ordering::Relaxed);
    c.out.send(bytes).is_ok()
}

/// Compares in time independent of where the first difference is.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
