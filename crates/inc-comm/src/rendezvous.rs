//! The rendezvous: four all-gathers through the store under a per-communicator prefix.
//!
//! 1. `meta`  (JSON): crate version, options digest, backend, and whether this rank could
//!    set up its device at all. A rank that failed locally still takes part, so its peers
//!    learn why instead of timing out.
//! 2. `hs1`   ([`Handshake`]): host name, device bus id and uuid — same host, distinct
//!    devices, same buffer size and block count.
//! 3. `hs2`   ([`Handshake`]): the NVLink mesh each rank sees, its topology class and the
//!    handles of its symmetric buffer (CUDA IPC handle / shared-memory name). A rank that
//!    failed to allocate sends class [`FAILED_CLASS`] and its reason as the only handle.
//! 4. `opened` (JSON): whether every rank could map every peer's buffer.
//!
//! Every verdict is a pure function of the gathered data, which every rank sees
//! identically, so all ranks agree or all return the same error (the seed aborted the
//! process, or returned on some ranks only). Every gather has the remaining part of one
//! deadline (`CommOptions::timeout`); a rank that never joins makes all the others fail
//! with [`CommError::Timeout`] naming it.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use inc_store::{store_all_gather, Handshake, Store, StoreError};
use inc_topo::{NvlMesh, TopologyClass};
use serde::{Deserialize, Serialize};

use crate::error::{CommError, Result};

/// Class code a rank sends in `hs2` when it could not allocate or map its buffers.
pub const FAILED_CLASS: u8 = 0xff;

/// This build's version string, compared between ranks.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// A rendezvous deadline and the rank/prefix it runs for.
#[derive(Clone)]
pub struct Rdv<'a> {
    /// The store.
    pub store: &'a dyn Store,
    /// `inc/c<N>`: unique per communicator on this store.
    pub prefix: String,
    /// This rank.
    pub rank: usize,
    /// The world size.
    pub world: usize,
    /// When the whole rendezvous must be done.
    pub deadline: Instant,
    /// The configured timeout (for messages).
    pub timeout: Duration,
}

/// Step 1's message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// Crate version.
    pub version: String,
    /// [`CommOptions::agreement_digest`](crate::CommOptions::agreement_digest).
    pub options: String,
    /// Backend name.
    pub backend: String,
    /// Process id (for messages).
    pub pid: u32,
    /// Why this rank cannot take part, if it cannot.
    pub error: Option<String>,
}

/// Step 4's message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Opened {
    /// Why this rank could not map its peers' buffers, if it could not.
    pub error: Option<String>,
}

/// Picks the prefix of a new communicator: each rank counts the communicators it created
/// on this store; ranks that create their communicators in the same order agree.
pub fn comm_prefix(store: &dyn Store, rank: usize) -> Result<String> {
    let n = store
        .add(&format!("inc/comm-seq/{rank}"), 1)
        .map_err(|e| store_err(rank, "", e))?;
    Ok(format!("inc/c{n}"))
}

/// Maps a store error of rendezvous step `step` to a [`CommError`].
pub fn store_err(rank: usize, step: &str, e: StoreError) -> CommError {
    match e {
        StoreError::GatherTimeout {
            missing, timeout, ..
        } => CommError::Timeout {
            rank,
            peer: missing.first().copied(),
            what: format!("in rendezvous step {step:?} waiting for rank(s) {missing:?}"),
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        },
        StoreError::Timeout { keys, timeout } => CommError::Timeout {
            rank,
            peer: None,
            what: format!("in rendezvous step {step:?} waiting for keys {keys:?}"),
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        },
        StoreError::Handshake { rank: peer, reason } => CommError::Rendezvous {
            rank,
            reason: format!("step {step}: bad message from rank {peer}: {reason}"),
        },
        StoreError::HandshakeVersion {
            rank: peer,
            got,
            want,
        } => CommError::Rendezvous {
            rank,
            reason: format!(
                "step {step}: rank {peer} speaks handshake version {got}, we speak {want}"
            ),
        },
        other => CommError::Store {
            rank,
            reason: format!("rendezvous step {step}: {other}"),
            source: crate::error::ErrorSource::new(other),
        },
    }
}

impl Rdv<'_> {
    fn left(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// All-gathers a JSON value.
    pub fn gather_json<T: Serialize + for<'de> Deserialize<'de>>(
        &self,
        step: &str,
        value: &T,
    ) -> Result<Vec<T>> {
        let bytes = serde_json::to_vec(value).map_err(|e| CommError::Rendezvous {
            rank: self.rank,
            reason: format!("step {step}: encoding: {e}"),
        })?;
        let all = store_all_gather(
            self.store,
            &format!("{}/{step}", self.prefix),
            self.rank,
            self.world,
            &bytes,
            self.left(),
        )
        .map_err(|e| self.fix_timeout(store_err(self.rank, step, e)))?;
        all.iter()
            .enumerate()
            .map(|(r, b)| {
                serde_json::from_slice(b).map_err(|e| CommError::Rendezvous {
                    rank: self.rank,
                    reason: format!("step {step}: bad message from rank {r}: {e}"),
                })
            })
            .collect()
    }

    /// All-gathers a [`Handshake`].
    pub fn exchange(&self, step: &str, hs: &Handshake) -> Result<Vec<Handshake>> {
        hs.exchange(self.store, &format!("{}/{step}", self.prefix), self.left())
            .map_err(|e| self.fix_timeout(store_err(self.rank, step, e)))
    }

    fn fix_timeout(&self, e: CommError) -> CommError {
        e.with_timeout_ms(u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX))
    }
}

fn fail(rank: usize, reason: String) -> CommError {
    CommError::Rendezvous { rank, reason }
}

/// Step 1's verdict.
pub fn check_meta(rank: usize, all: &[Meta]) -> Result<()> {
    for (r, m) in all.iter().enumerate() {
        if let Some(e) = &m.error {
            return Err(fail(
                rank,
                format!("rank {r} could not set up its device: {e}"),
            ));
        }
    }
    let Some(first) = all.first() else {
        return Err(fail(rank, "empty group".into()));
    };
    for (r, m) in all.iter().enumerate().skip(1) {
        if m.version != first.version {
            return Err(fail(
                rank,
                format!(
                    "rank {r} runs inc {} but rank 0 runs inc {}",
                    m.version, first.version
                ),
            ));
        }
        if m.backend != first.backend {
            return Err(fail(
                rank,
                format!(
                    "rank {r} uses backend {} but rank 0 uses {}",
                    m.backend, first.backend
                ),
            ));
        }
        if m.options != first.options {
            return Err(fail(
                rank,
                format!(
                    "rank {r} has options [{}] but rank 0 has [{}]",
                    m.options, first.options
                ),
            ));
        }
    }
    Ok(())
}

/// The identity of a rank's device in a handshake (uuid, else PCI bus id).
pub fn device_key(h: &Handshake) -> &str {
    if h.device_uuid.is_empty() {
        &h.pci_bus_id
    } else {
        &h.device_uuid
    }
}

/// The most ranks that share one device (1 when every rank has its own).
pub fn max_ranks_per_device(all: &[Handshake]) -> usize {
    all.iter()
        .map(|h| {
            all.iter()
                .filter(|o| device_key(o) == device_key(h))
                .count()
        })
        .max()
        .unwrap_or(1)
}

/// Step 2's verdict: one host, distinct devices (unless `allow_shared`), same buffer
/// geometry.
pub fn check_devices(rank: usize, all: &[Handshake], allow_shared: bool) -> Result<()> {
    let Some(first) = all.first() else {
        return Err(fail(rank, "empty group".into()));
    };
    let mut seen = HashSet::new();
    for (r, h) in all.iter().enumerate() {
        if h.hostname != first.hostname {
            return Err(fail(
                rank,
                format!(
                    "ranks are not on one host: rank 0 is on {:?}, rank {r} on {:?}",
                    first.hostname, h.hostname
                ),
            ));
        }
        if h.backend != first.backend {
            return Err(fail(
                rank,
                format!("rank {r} uses another backend than rank 0"),
            ));
        }
        let id = if h.device_uuid.is_empty() {
            &h.pci_bus_id
        } else {
            &h.device_uuid
        };
        if !seen.insert(id.clone()) && !allow_shared {
            let other = all
                .iter()
                .position(|o| {
                    (if o.device_uuid.is_empty() {
                        &o.pci_bus_id
                    } else {
                        &o.device_uuid
                    }) == id
                })
                .unwrap_or(0);
            return Err(fail(
                rank,
                format!(
                "ranks {other} and {r} use the same device {id} (set a distinct device per rank, or allow virtual ranks with INC_ALLOW_SHARED_DEVICE=1 / CommOptions::allow_shared_device)"
            ),
            ));
        }
        if h.buffer_bytes != first.buffer_bytes
            || h.blocks != first.blocks
            || h.signal_bytes != first.signal_bytes
        {
            return Err(fail(
                rank,
                format!(
                    "rank {r} has buffer {} B / pad {} B / {} blocks, rank 0 has {} B / {} B / {}",
                    h.buffer_bytes,
                    h.signal_bytes,
                    h.blocks,
                    first.buffer_bytes,
                    first.signal_bytes,
                    first.blocks
                ),
            ));
        }
    }
    Ok(())
}

/// The agreed mesh, its class, and every rank's buffer handles (by rank).
pub type Agreed = (NvlMesh, TopologyClass, Vec<Vec<Vec<u8>>>);

/// Step 3's verdict: every rank allocated, every rank sees the same mesh and class.
/// Returns the agreed mesh and each rank's handles.
pub fn check_buffers(rank: usize, all: &[Handshake]) -> Result<Agreed> {
    for (r, h) in all.iter().enumerate() {
        if h.topology_class == FAILED_CLASS {
            let why = h
                .ipc_handles
                .first()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            return Err(fail(
                rank,
                format!("rank {r} could not allocate its buffers: {why}"),
            ));
        }
    }
    let Some(first) = all.first() else {
        return Err(fail(rank, "empty group".into()));
    };
    for (r, h) in all.iter().enumerate().skip(1) {
        if h.mesh != first.mesh || h.topology_class != first.topology_class {
            return Err(fail(rank, format!(
                "ranks observe different topologies: rank 0 sees {:?} (class {}), rank {r} sees {:?} (class {})",
                first.mesh, first.topology_class, h.mesh, h.topology_class
            )));
        }
    }
    let mesh = NvlMesh::new(first.mesh.clone())
        .map_err(|e| fail(rank, format!("rank 0 sent an invalid mesh: {e}")))?;
    if mesh.num_gpus() != all.len() {
        return Err(fail(
            rank,
            format!(
                "the mesh has {} devices for {} ranks",
                mesh.num_gpus(),
                all.len()
            ),
        ));
    }
    let class = crate::topo::classify(&mesh);
    if crate::topo::class_code(&class) != first.topology_class {
        return Err(fail(
            rank,
            format!(
                "rank 0's class code {} does not match its mesh ({})",
                first.topology_class,
                class.name()
            ),
        ));
    }
    Ok((
        mesh,
        class,
        all.iter().map(|h| h.ipc_handles.clone()).collect(),
    ))
}

/// Step 4's verdict.
pub fn check_opened(rank: usize, all: &[Opened]) -> Result<()> {
    for (r, o) in all.iter().enumerate() {
        if let Some(e) = &o.error {
            return Err(fail(
                rank,
                format!("rank {r} could not map its peers' buffers: {e}"),
            ));
        }
    }
    Ok(())
}

/// This machine's host name.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into the buffer we own.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown-host".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(buf.get(..end).unwrap_or(&[])).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use inc_store::Backend;

    fn meta(opts: &str) -> Meta {
        Meta {
            version: VERSION.into(),
            options: opts.into(),
            backend: "sim".into(),
            pid: 1,
            error: None,
        }
    }

    fn hs(rank: u32, host: &str, dev: &str) -> Handshake {
        Handshake {
            rank,
            world: 2,
            backend: Backend::Sim,
            topology_class: 0,
            hostname: host.into(),
            pci_bus_id: dev.into(),
            device_uuid: String::new(),
            mesh: vec![],
            ipc_handles: vec![],
            buffer_bytes: 1024,
            signal_bytes: 64,
            blocks: 2,
        }
    }

    #[test]
    fn meta_verdicts() {
        assert!(check_meta(0, &[meta("a"), meta("a")]).is_ok());
        let e = check_meta(1, &[meta("a"), meta("b")]).unwrap_err();
        assert!(e.to_string().contains("rank 1 has options"), "{e}");
        let mut bad = meta("a");
        bad.error = Some("no GPU 3".into());
        let e0 = check_meta(0, &[meta("a"), bad.clone()]).unwrap_err();
        let e1 = check_meta(1, &[meta("a"), bad]).unwrap_err();
        // Same reason on every rank.
        match (e0, e1) {
            (CommError::Rendezvous { reason: a, .. }, CommError::Rendezvous { reason: b, .. }) => {
                assert_eq!(a, b);
                assert!(a.contains("no GPU 3"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn device_verdicts() {
        assert!(check_devices(0, &[hs(0, "h", "d0"), hs(1, "h", "d1")], false).is_ok());
        let e = check_devices(0, &[hs(0, "h", "d0"), hs(1, "other", "d1")], false).unwrap_err();
        assert!(e.to_string().contains("not on one host"));
        let e = check_devices(0, &[hs(0, "h", "d0"), hs(1, "h", "d0")], false).unwrap_err();
        assert!(e.to_string().contains("same device"), "{e}");
        assert!(e.to_string().contains("INC_ALLOW_SHARED_DEVICE=1"), "{e}");
        let shared = [hs(0, "h", "d0"), hs(1, "h", "d0")];
        assert!(check_devices(0, &shared, true).is_ok());
        assert_eq!(max_ranks_per_device(&shared), 2);
        assert_eq!(
            max_ranks_per_device(&[hs(0, "h", "d0"), hs(1, "h", "d1")]),
            1
        );
        let mut b = hs(1, "h", "d1");
        b.blocks = 3;
        assert!(check_devices(0, &[hs(0, "h", "d0"), b], false).is_err());
    }

    #[test]
    fn buffer_verdicts() {
        let full = crate::topo::full_mesh(2).unwrap();
        let mk = |rank| {
            let mut h = hs(rank, "h", "d");
            h.mesh = full.rows();
            h.topology_class = 1;
            h.ipc_handles = vec![format!("shm{rank}").into_bytes()];
            h
        };
        let (m, c, handles) = check_buffers(0, &[mk(0), mk(1)]).unwrap();
        assert_eq!(m, full);
        assert_eq!(c, TopologyClass::FullyConnected);
        assert_eq!(handles[1], vec![b"shm1".to_vec()]);
        let mut other = mk(1);
        other.mesh = crate::topo::disconnected_mesh(2).unwrap().rows();
        assert!(check_buffers(0, &[mk(0), other])
            .unwrap_err()
            .to_string()
            .contains("different topologies"));
        let mut failed = mk(1);
        failed.topology_class = FAILED_CLASS;
        failed.ipc_handles = vec![b"out of memory".to_vec()];
        let e = check_buffers(0, &[mk(0), failed]).unwrap_err();
        assert!(e.to_string().contains("out of memory"));
        assert!(check_opened(
            0,
            &[
                Opened { error: None },
                Opened {
                    error: Some("x".into())
                }
            ]
        )
        .is_err());
    }

    #[test]
    fn hostname_is_not_empty() {
        assert!(!hostname().is_empty());
    }
}
