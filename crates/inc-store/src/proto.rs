//! The wire protocol of PyTorch's `TCPStore` (c10d), as a pure frame encoder/decoder that can be
//! driven from bytes without a socket (the server uses it; so does the `store_frame` fuzz target).
//!
//! Sources read (pytorch/pytorch, `torch/csrc/distributed/c10d/`): `TCPStoreBackend.hpp` (magic
//! number, `QueryType`, `CheckResponseType`, `WaitResponseType`), `TCPStore.cpp` (the client:
//! `SendBuffer`, `validate`, `ping`, `doWait`/`CANCEL_WAIT`, `doGet`, key prefix `/`),
//! `TCPStoreLibUvBackend.cpp` (the default server since torch 2.4: `parse_*_command`, limits)
//! and `TCPStoreBackend.cpp` (the legacy server). This is our own implementation.
//!
//! # Frames (client → server)
//!
//! Every integer is little-endian (host order on x86/arm). A *string* or *bytes* is a `u64`
//! length followed by that many bytes. A frame is one query-type byte and its arguments:
//!
//! | byte | query        | arguments                         | reply                                  |
//! |------|--------------|-----------------------------------|----------------------------------------|
//! | 0    | VALIDATE     | `u32` magic `0x3C85F7CE`          | none                                   |
//! | 1    | SET          | key, value                        | none                                   |
//! | 2    | COMPARE_SET  | key, expected, desired            | bytes (value held afterwards)          |
//! | 3    | GET          | key                               | bytes (empty if missing)               |
//! | 4    | ADD          | key, `i64` delta                  | `i64` new value (stored as decimal)    |
//! | 5    | CHECK        | `u64` n, n keys                   | `u8` 0 = READY, 1 = NOT_READY          |
//! | 6    | WAIT         | `u64` n, n keys                   | `u8` 0 = STOP_WAITING, when all exist  |
//! | 7    | GETNUMKEYS   | —                                 | `i64`                                  |
//! | 8    | DELETE_KEY   | key                               | `i64` number deleted (0 or 1)          |
//! | 9    | APPEND       | key, value                        | none                                   |
//! | 10   | MULTI_GET    | `u64` n, n keys                   | n × bytes                              |
//! | 11   | MULTI_SET    | `u64` n, n × (key, value)         | none                                   |
//! | 12   | CANCEL_WAIT  | —                                 | `u8` 1 = WAIT_CANCELED                 |
//! | 13   | PING         | `u32` nonce                       | `u32` the same nonce                   |
//! | 14   | QUEUE_PUSH   | key, value                        | none                                   |
//! | 15   | QUEUE_POP    | key                               | `i64` length before pop; if > 0 bytes  |
//! | 16   | QUEUE_LEN    | key                               | `i64`                                  |
//! | 0xA5 | AUTH (inc)   | token bytes                       | `u8` 0 = accepted, 1 = rejected        |
//!
//! AUTH is our extension (torch never sends it): an inc client whose `INC_STORE_TOKEN` is set
//! sends it right after VALIDATE. A server started with a token requires it before any other
//! query; a server without a token accepts any AUTH, so torch clients work unchanged there.
//! Newer torch query types (LIST_KEYS, BARRIER, ...) are not served: such a client is dropped.
//!
//! The torch client connects, sends VALIDATE then PING; `get(k)` is `WAIT [k]` then `GET k`;
//! a wait that times out sends CANCEL_WAIT and reads replies until WAIT_CANCELED (a
//! STOP_WAITING may come first). Its keys carry the prefix `/` (`TCPStore.keyPrefix_`); a
//! Python `PrefixStore("p", s)` adds `p/` in front of that.

use crate::StoreError;

/// The number a client sends in VALIDATE (c10d `validationMagicNumber`).
pub const VALIDATION_MAGIC: u32 = 0x3C85_F7CE;
/// The query byte of inc's AUTH extension.
pub const QUERY_AUTH: u8 = 0xA5;
/// CHECK reply: all keys exist.
pub const CHECK_READY: u8 = 0;
/// CHECK reply: some key is missing.
pub const CHECK_NOT_READY: u8 = 1;
/// WAIT reply: all awaited keys exist.
pub const STOP_WAITING: u8 = 0;
/// CANCEL_WAIT reply.
pub const WAIT_CANCELED: u8 = 1;
/// AUTH reply: accepted.
pub const AUTH_OK: u8 = 0;
/// AUTH reply: rejected (the server closes the connection after it).
pub const AUTH_REJECTED: u8 = 1;

/// c10d's query types, by wire value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum QueryType {
    /// Connection validation (magic number).
    Validate = 0,
    /// Set a key.
    Set = 1,
    /// Compare and set.
    CompareSet = 2,
    /// Get a key.
    Get = 3,
    /// Add to a counter.
    Add = 4,
    /// Check keys exist.
    Check = 5,
    /// Wait for keys.
    Wait = 6,
    /// Number of keys.
    GetNumKeys = 7,
    /// Delete a key.
    DeleteKey = 8,
    /// Append bytes to a key.
    Append = 9,
    /// Get several keys.
    MultiGet = 10,
    /// Set several keys.
    MultiSet = 11,
    /// Cancel the pending wait.
    CancelWait = 12,
    /// Echo a nonce.
    Ping = 13,
    /// Push onto a queue.
    QueuePush = 14,
    /// Pop from a queue.
    QueuePop = 15,
    /// Length of a queue.
    QueueLen = 16,
}

/// Bounds on what a peer may send; a frame over any of them is refused before it is buffered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest key (default 4 KiB).
    pub max_key_bytes: u64,
    /// Largest value (default 64 MiB).
    pub max_value_bytes: u64,
    /// Most keys in one CHECK/WAIT/MULTI_GET/MULTI_SET (default 128 Ki, as torch).
    pub max_keys_per_op: u64,
    /// Largest whole frame (default 64 MiB + 1 MiB).
    pub max_frame_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_key_bytes: 4 << 10,
            max_value_bytes: 64 << 20,
            max_keys_per_op: 128 << 10,
            max_frame_bytes: (64 << 20) + (1 << 20),
        }
    }
}

/// One decoded client frame. Keys are raw bytes (c10d keys are `std::string`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// VALIDATE.
    Validate {
        /// The magic the client sent.
        magic: u32,
    },
    /// SET.
    Set {
        /// Key.
        key: Vec<u8>,
        /// Value.
        value: Vec<u8>,
    },
    /// COMPARE_SET.
    CompareSet {
        /// Key.
        key: Vec<u8>,
        /// Expected current value.
        expected: Vec<u8>,
        /// Value to store when it matches.
        desired: Vec<u8>,
    },
    /// GET.
    Get {
        /// Key.
        key: Vec<u8>,
    },
    /// ADD.
    Add {
        /// Key.
        key: Vec<u8>,
        /// Amount to add.
        delta: i64,
    },
    /// CHECK.
    Check {
        /// Keys.
        keys: Vec<Vec<u8>>,
    },
    /// WAIT.
    Wait {
        /// Keys.
        keys: Vec<Vec<u8>>,
    },
    /// GETNUMKEYS.
    GetNumKeys,
    /// DELETE_KEY.
    DeleteKey {
        /// Key.
        key: Vec<u8>,
    },
    /// APPEND.
    Append {
        /// Key.
        key: Vec<u8>,
        /// Bytes to append.
        value: Vec<u8>,
    },
    /// MULTI_GET.
    MultiGet {
        /// Keys.
        keys: Vec<Vec<u8>>,
    },
    /// MULTI_SET.
    MultiSet {
        /// Key/value pairs.
        pairs: Vec<(Vec<u8>, Vec<u8>)>,
    },
    /// CANCEL_WAIT.
    CancelWait,
    /// PING.
    Ping {
        /// Nonce to echo.
        nonce: u32,
    },
    /// QUEUE_PUSH.
    QueuePush {
        /// Queue key.
        key: Vec<u8>,
        /// Item.
        value: Vec<u8>,
    },
    /// QUEUE_POP.
    QueuePop {
        /// Queue key.
        key: Vec<u8>,
    },
    /// QUEUE_LEN.
    QueueLen {
        /// Queue key.
        key: Vec<u8>,
    },
    /// inc's AUTH extension.
    Auth {
        /// The token.
        token: Vec<u8>,
    },
}

/// The result of trying to decode one frame from the front of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A whole frame of `len` bytes.
    Frame {
        /// The request.
        request: Request,
        /// Bytes it took from the buffer.
        len: usize,
    },
    /// Not enough bytes yet: the frame needs at least `need` bytes in total.
    Incomplete {
        /// Lower bound on the whole frame's size.
        need: usize,
    },
}

enum Stop {
    More(usize),
    Bad(StoreError),
}

struct Cur<'a> {
    b: &'a [u8],
    pos: usize,
    lim: &'a Limits,
}

impl<'a> Cur<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Stop> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or_else(|| Stop::Bad(StoreError::BadFrame("length overflow".into())))?;
        if end as u64 > self.lim.max_frame_bytes {
            return Err(Stop::Bad(StoreError::TooLarge {
                what: "frame",
                len: end as u64,
                max: self.lim.max_frame_bytes,
            }));
        }
        match self.b.get(self.pos..end) {
            Some(s) => {
                self.pos = end;
                Ok(s)
            }
            None => Err(Stop::More(end)),
        }
    }
    fn arr<const N: usize>(&mut self) -> Result<[u8; N], Stop> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }
    fn u32(&mut self) -> Result<u32, Stop> {
        Ok(u32::from_le_bytes(self.arr()?))
    }
    fn u64(&mut self) -> Result<u64, Stop> {
        Ok(u64::from_le_bytes(self.arr()?))
    }
    fn bytes(&mut self, what: &'static str, max: u64) -> Result<Vec<u8>, Stop> {
        let n = self.u64()?;
        if n > max {
            return Err(Stop::Bad(StoreError::TooLarge { what, len: n, max }));
        }
        // n <= max <= max_frame_bytes, which fits usize on every supported target.
        let n = usize::try_from(n)
            .map_err(|_| Stop::Bad(StoreError::TooLarge { what, len: n, max }))?;
        Ok(self.take(n)?.to_vec())
    }
    fn key(&mut self) -> Result<Vec<u8>, Stop> {
        self.bytes("key", self.lim.max_key_bytes)
    }
    fn value(&mut self) -> Result<Vec<u8>, Stop> {
        self.bytes("value", self.lim.max_value_bytes)
    }
    fn count(&mut self) -> Result<usize, Stop> {
        let n = self.u64()?;
        if n > self.lim.max_keys_per_op {
            return Err(Stop::Bad(StoreError::TooLarge {
                what: "key count",
                len: n,
                max: self.lim.max_keys_per_op,
            }));
        }
        usize::try_from(n).map_err(|_| Stop::Bad(StoreError::BadFrame("key count".into())))
    }
    fn keys(&mut self) -> Result<Vec<Vec<u8>>, Stop> {
        let n = self.count()?;
        // Each key takes >= 8 bytes, so do not trust n for the allocation beyond what is here.
        let mut v = Vec::with_capacity(n.min(self.b.len() / 8 + 1));
        for _ in 0..n {
            v.push(self.key()?);
        }
        Ok(v)
    }
}

/// Tries to decode one client frame from the front of `buf`.
///
/// Returns [`Decoded::Incomplete`] when more bytes are needed, and an error for an unknown
/// query type or a length over `limits` — detected as soon as the length prefix is in `buf`,
/// so a peer can never make the server buffer more than `limits.max_frame_bytes`.
pub fn decode_request(buf: &[u8], limits: &Limits) -> Result<Decoded, StoreError> {
    let mut c = Cur {
        b: buf,
        pos: 0,
        lim: limits,
    };
    match decode_inner(&mut c) {
        Ok(request) => Ok(Decoded::Frame {
            request,
            len: c.pos,
        }),
        Err(Stop::More(need)) => Ok(Decoded::Incomplete { need }),
        Err(Stop::Bad(e)) => Err(e),
    }
}

fn decode_inner(c: &mut Cur<'_>) -> Result<Request, Stop> {
    let [q] = c.arr::<1>()?;
    Ok(match q {
        0 => Request::Validate { magic: c.u32()? },
        1 => Request::Set {
            key: c.key()?,
            value: c.value()?,
        },
        2 => Request::CompareSet {
            key: c.key()?,
            expected: c.value()?,
            desired: c.value()?,
        },
        3 => Request::Get { key: c.key()? },
        4 => Request::Add {
            key: c.key()?,
            delta: i64::from_le_bytes(c.arr()?),
        },
        5 => Request::Check { keys: c.keys()? },
        6 => Request::Wait { keys: c.keys()? },
        7 => Request::GetNumKeys,
        8 => Request::DeleteKey { key: c.key()? },
        9 => Request::Append {
            key: c.key()?,
            value: c.value()?,
        },
        10 => Request::MultiGet { keys: c.keys()? },
        11 => {
            let n = c.count()?;
            let mut pairs = Vec::with_capacity(n.min(c.b.len() / 16 + 1));
            for _ in 0..n {
                pairs.push((c.key()?, c.value()?));
            }
            Request::MultiSet { pairs }
        }
        12 => Request::CancelWait,
        13 => Request::Ping { nonce: c.u32()? },
        14 => Request::QueuePush {
            key: c.key()?,
            value: c.value()?,
        },
        15 => Request::QueuePop { key: c.key()? },
        16 => Request::QueueLen { key: c.key()? },
        QUERY_AUTH => Request::Auth { token: c.key()? },
        other => {
            return Err(Stop::Bad(StoreError::BadFrame(format!(
                "unknown query type {other}"
            ))))
        }
    })
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u64).to_le_bytes());
    out.extend_from_slice(b);
}

/// Appends the wire form of `req` to `out` (what a c10d client sends).
pub fn encode_request(req: &Request, out: &mut Vec<u8>) {
    let keys = |out: &mut Vec<u8>, q: QueryType, keys: &[Vec<u8>]| {
        out.push(q as u8);
        out.extend_from_slice(&(keys.len() as u64).to_le_bytes());
        for k in keys {
            put_bytes(out, k);
        }
    };
    match req {
        Request::Validate { magic } => {
            out.push(QueryType::Validate as u8);
            out.extend_from_slice(&magic.to_le_bytes());
        }
        Request::Set { key, value } => {
            out.push(QueryType::Set as u8);
            put_bytes(out, key);
            put_bytes(out, value);
        }
        Request::CompareSet {
            key,
            expected,
            desired,
        } => {
            out.push(QueryType::CompareSet as u8);
            put_bytes(out, key);
            put_bytes(out, expected);
            put_bytes(out, desired);
        }
        Request::Get { key } => {
            out.push(QueryType::Get as u8);
            put_bytes(out, key);
        }
        Request::Add { key, delta } => {
            out.push(QueryType::Add as u8);
            put_bytes(out, key);
            out.extend_from_slice(&delta.to_le_bytes());
        }
        Request::Check { keys: k } => keys(out, QueryType::Check, k),
        Request::Wait { keys: k } => keys(out, QueryType::Wait, k),
        Request::GetNumKeys => out.push(QueryType::GetNumKeys as u8),
        Request::DeleteKey { key } => {
            out.push(QueryType::DeleteKey as u8);
            put_bytes(out, key);
        }
        Request::Append { key, value } => {
            out.push(QueryType::Append as u8);
            put_bytes(out, key);
            put_bytes(out, value);
        }
        Request::MultiGet { keys: k } => keys(out, QueryType::MultiGet, k),
        Request::MultiSet { pairs } => {
            out.push(QueryType::MultiSet as u8);
            out.extend_from_slice(&(pairs.len() as u64).to_le_bytes());
            for (k, v) in pairs {
                put_bytes(out, k);
                put_bytes(out, v);
            }
        }
        Request::CancelWait => out.push(QueryType::CancelWait as u8),
        Request::Ping { nonce } => {
            out.push(QueryType::Ping as u8);
            out.extend_from_slice(&nonce.to_le_bytes());
        }
        Request::QueuePush { key, value } => {
            out.push(QueryType::QueuePush as u8);
            put_bytes(out, key);
            put_bytes(out, value);
        }
        Request::QueuePop { key } => {
            out.push(QueryType::QueuePop as u8);
            put_bytes(out, key);
        }
        Request::QueueLen { key } => {
            out.push(QueryType::QueueLen as u8);
            put_bytes(out, key);
        }
        Request::Auth { token } => {
            out.push(QUERY_AUTH);
            put_bytes(out, token);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn samples() -> Vec<Request> {
        vec![
            Request::Validate {
                magic: VALIDATION_MAGIC,
            },
            Request::Set {
                key: b"/k".to_vec(),
                value: b"v".to_vec(),
            },
            Request::CompareSet {
                key: b"/k".to_vec(),
                expected: vec![],
                desired: b"d".to_vec(),
            },
            Request::Get {
                key: b"/k".to_vec(),
            },
            Request::Add {
                key: b"/c".to_vec(),
                delta: -5,
            },
            Request::Check {
                keys: vec![b"a".to_vec(), b"b".to_vec()],
            },
            Request::Wait {
                keys: vec![b"a".to_vec()],
            },
            Request::GetNumKeys,
            Request::DeleteKey { key: b"a".to_vec() },
            Request::Append {
                key: b"a".to_vec(),
                value: b"xy".to_vec(),
            },
            Request::MultiGet {
                keys: vec![b"a".to_vec(), vec![]],
            },
            Request::MultiSet {
                pairs: vec![(b"a".to_vec(), b"1".to_vec()), (b"b".to_vec(), vec![])],
            },
            Request::CancelWait,
            Request::Ping { nonce: 77 },
            Request::QueuePush {
                key: b"q".to_vec(),
                value: b"i".to_vec(),
            },
            Request::QueuePop { key: b"q".to_vec() },
            Request::QueueLen { key: b"q".to_vec() },
            Request::Auth {
                token: b"secret".to_vec(),
            },
        ]
    }

    #[test]
    fn wire_bytes_match_c10d() {
        // VALIDATE: type 0 then the magic, little-endian.
        let mut b = Vec::new();
        encode_request(
            &Request::Validate {
                magic: VALIDATION_MAGIC,
            },
            &mut b,
        );
        assert_eq!(b, [0, 0xCE, 0xF7, 0x85, 0x3C]);
        // SET "/a" = "xy": type 1, u64 2, "/a", u64 2, "xy".
        b.clear();
        encode_request(
            &Request::Set {
                key: b"/a".to_vec(),
                value: b"xy".to_vec(),
            },
            &mut b,
        );
        assert_eq!(
            b,
            [1, 2, 0, 0, 0, 0, 0, 0, 0, b'/', b'a', 2, 0, 0, 0, 0, 0, 0, 0, b'x', b'y']
        );
    }

    #[test]
    fn round_trip_and_every_prefix_is_incomplete() {
        let lim = Limits::default();
        for r in samples() {
            let mut b = Vec::new();
            encode_request(&r, &mut b);
            assert_eq!(
                decode_request(&b, &lim).unwrap(),
                Decoded::Frame {
                    request: r.clone(),
                    len: b.len()
                }
            );
            for cut in 0..b.len() {
                match decode_request(&b[..cut], &lim).unwrap() {
                    Decoded::Incomplete { need } => {
                        assert!(need > cut && need <= b.len(), "{r:?} cut {cut} need {need}")
                    }
                    other => panic!("{r:?} cut {cut}: {other:?}"),
                }
            }
        }
    }

    #[test]
    fn huge_lengths_and_garbage_are_errors_at_once() {
        let lim = Limits::default();
        // SET with a key length of 2^63: refused as soon as the 9 bytes are in.
        let mut b = vec![1u8];
        b.extend_from_slice(&(1u64 << 63).to_le_bytes());
        assert!(matches!(
            decode_request(&b, &lim),
            Err(StoreError::TooLarge { what: "key", .. })
        ));
        // A value of 1 GiB.
        let mut b = vec![1u8, 1, 0, 0, 0, 0, 0, 0, 0, b'k'];
        b.extend_from_slice(&(1u64 << 30).to_le_bytes());
        assert!(matches!(
            decode_request(&b, &lim),
            Err(StoreError::TooLarge { what: "value", .. })
        ));
        // WAIT with 2^40 keys.
        let mut b = vec![6u8];
        b.extend_from_slice(&(1u64 << 40).to_le_bytes());
        assert!(matches!(
            decode_request(&b, &lim),
            Err(StoreError::TooLarge {
                what: "key count",
                ..
            })
        ));
        assert!(matches!(
            decode_request(b"GET /x HTTP/1.1", &lim),
            Err(StoreError::BadFrame(_))
        ));
        // Many maximal values in one MULTI_SET go over the frame bound.
        let small = Limits {
            max_frame_bytes: 100,
            ..lim
        };
        let mut b = Vec::new();
        encode_request(
            &Request::MultiSet {
                pairs: vec![(b"a".to_vec(), vec![0; 60]), (b"b".to_vec(), vec![0; 60])],
            },
            &mut b,
        );
        assert!(matches!(
            decode_request(&b, &small),
            Err(StoreError::TooLarge { what: "frame", .. })
        ));
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let lim = Limits { max_frame_bytes: 1 << 12, ..Limits::default() };
            if let Ok(Decoded::Frame { request, len }) = decode_request(&bytes, &lim) {
                let mut re = Vec::new();
                encode_request(&request, &mut re);
                prop_assert_eq!(&re[..], &bytes[..len]);
            }
        }
    }
}
