//! The one error type of the crate.

use std::time::Duration;

/// Everything that can go wrong in a store, an all-gather or a handshake.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A blocking call did not see its keys before the timeout passed.
    #[error("timed out after {timeout:?} waiting for key(s) {keys:?}")]
    Timeout {
        /// The keys that were awaited (as the caller named them).
        keys: Vec<String>,
        /// The timeout that passed.
        timeout: Duration,
    },
    /// An all-gather round did not complete in time; names the ranks that never wrote.
    #[error(
        "all-gather `{prefix}` round {round}: timed out after {timeout:?}; ranks that never \
         wrote: {missing:?}"
    )]
    GatherTimeout {
        /// The group prefix of the all-gather.
        prefix: String,
        /// The round number (per rank and prefix, starting at 1).
        round: i64,
        /// Ranks whose contribution was missing when the timeout passed.
        missing: Vec<usize>,
        /// The timeout that passed.
        timeout: Duration,
    },
    /// Could not connect (and validate) to a store server before the timeout.
    #[error("could not connect to store at {addr} within {timeout:?}: {last}")]
    Connect {
        /// The address tried.
        addr: String,
        /// The connect timeout.
        timeout: Duration,
        /// The last error seen.
        last: String,
    },
    /// The peer closed the connection (e.g. the server died mid-wait).
    #[error("connection to store at {addr} closed by the peer")]
    ConnectionClosed {
        /// The peer address.
        addr: String,
    },
    /// An I/O error on a store connection.
    #[error("I/O error on store connection to {addr}: {source}")]
    Io {
        /// The peer address.
        addr: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The server rejected our token (or required one that we did not send).
    #[error("store at {addr} rejected the authentication token (check INC_STORE_TOKEN)")]
    AuthRejected {
        /// The server address.
        addr: String,
    },
    /// The peer sent bytes that do not follow the TCPStore protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// A frame could not be decoded (bad query type, length over a limit, ...).
    #[error("bad frame: {0}")]
    BadFrame(String),
    /// A key, value or key list is larger than the configured limit.
    #[error("{what} is {len} bytes/items, over the limit of {max}")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// Its size.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// `add` on a key whose value is not a decimal integer, or the sum overflowed.
    #[error("value of key {key:?} is not a 64-bit decimal integer (or the sum overflows)")]
    NotAnInteger {
        /// The key.
        key: String,
    },
    /// A caller passed an invalid argument.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A handshake message from a peer could not be decoded or does not fit.
    #[error("handshake from rank {rank}: {reason}")]
    Handshake {
        /// The rank whose message was bad.
        rank: usize,
        /// What was wrong.
        reason: String,
    },
    /// A peer speaks another handshake version.
    #[error("handshake from rank {rank}: version {got}, but this build speaks version {want}")]
    HandshakeVersion {
        /// The rank whose message had another version.
        rank: usize,
        /// The version it sent.
        got: u16,
        /// The version we speak.
        want: u16,
    },
    /// The server was shut down, or the store is otherwise unusable.
    #[error("store is closed: {0}")]
    Closed(String),
}

impl StoreError {
    /// True for the timeout variants.
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            StoreError::Timeout { .. } | StoreError::GatherTimeout { .. }
        )
    }
}
