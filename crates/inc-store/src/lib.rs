//! inc-store: the rendezvous key-value store of inc.
//!
//! * [`Store`]: c10d-style key-value store (`set`, blocking `get`, `add`, `compare_set`,
//!   `check`, `wait`, `delete`, `num_keys`, `multi_get`/`multi_set`); object safe,
//!   `Send + Sync`, every blocking call takes a [`std::time::Duration`] timeout and returns
//!   [`StoreError::Timeout`] when it passes. [`PrefixStore`] namespaces keys like c10d's.
//! * [`MemStore`]: in-process (mutex + condvar), for multi-thread mode and tests.
//! * [`TcpStoreServer`] / [`TcpStore`]: server and client of PyTorch's `TCPStore` wire protocol
//!   ([`proto`] documents it, with the PyTorch source files it was read from). An inc rank can
//!   join a torchrun job's store (`MASTER_ADDR:MASTER_PORT`) and torch clients can use an inc
//!   server (verified against torch 2.11: libuv and legacy servers, gloo rendezvous). The
//!   server binds 127.0.0.1 by default, bounds every frame and its total memory, drops a client
//!   that sends garbage (with a `tracing::warn!`) and keeps serving the others; a shared token
//!   (`INC_STORE_TOKEN`, sent as inc's AUTH query right after VALIDATE) is checked when set.
//! * [`store_all_gather`]: every rank's bytes to every rank, keys `{prefix}/{round}/{rank}`
//!   with a per-rank round counter in the store (see the `gather` module docs for the rule and
//!   clean-up).
//! * [`Handshake`]: the explicit, versioned, bounds-checked rendezvous message (hostname, PCI
//!   bus id, device UUID, NvlMesh, topology class, IPC handles, buffer sizes); decode errors
//!   name the sending rank.
//!
//! ```
//! use std::{sync::Arc, time::Duration};
//! use inc_store::{store_all_gather, ClientOptions, ServerOptions, Store, TcpStore, TcpStoreServer};
//!
//! let server = TcpStoreServer::start(ServerOptions::default())?; // 127.0.0.1, free port
//! let addr = server.local_addr().to_string();
//! let ranks: Vec<_> = (0..2)
//!     .map(|rank| {
//!         let addr = addr.clone();
//!         std::thread::spawn(move || {
//!             let store: Arc<dyn Store> = Arc::new(TcpStore::connect(&addr, ClientOptions::default())?);
//!             store_all_gather(&*store, "job42/hs1", rank, 2, &[rank as u8], Duration::from_secs(10))
//!         })
//!     })
//!     .collect();
//! for r in ranks {
//!     assert_eq!(r.join().unwrap()?, vec![vec![0u8], vec![1u8]]);
//! }
//! # Ok::<(), inc_store::StoreError>(())
//! ```

mod client;
mod error;
mod gather;
pub mod handshake;
mod mem;
pub mod proto;
mod server;
mod store;

pub use client::{ClientOptions, TcpStore};
pub use error::StoreError;
pub use gather::store_all_gather;
pub use handshake::{Backend, Handshake, HANDSHAKE_VERSION};
pub use mem::MemStore;
pub use server::{ServerOptions, TcpStoreServer, TOKEN_ENV};
pub use store::{PrefixStore, Store};
