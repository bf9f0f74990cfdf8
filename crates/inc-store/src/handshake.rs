//! Versioned, bounds-checked handshake messages for inc-comm's rendezvous.
//!
//! Unlike the seed (a raw `memcpy` of a C struct through the store), the message is an explicit
//! little-endian encoding:
//!
//! ```text
//! magic   "INCH"                         4 bytes
//! version u16                            HANDSHAKE_VERSION
//! rank    u32, world u32
//! backend u8                             0 = cuda, 1 = sim, 2 = cpu
//! topology_class u8
//! hostname, pci_bus_id, device_uuid      each: u32 length + UTF-8 bytes (<= 256 bytes)
//! mesh    u32 rows, each: u32 len + len x u32   (<= 1024 rows, <= 1024 per row, <= 65536 total)
//! ipc_handles u32 count, each: u32 len + bytes  (<= 1024 handles, <= 4096 bytes each)
//! buffer_bytes u64, signal_bytes u64, blocks u32
//! ```
//!
//! Nothing may follow. A message with another magic, another version, a length over a bound, a
//! truncated field, trailing bytes or a rank other than the expected one is an error that names
//! the rank it came from.

use std::time::Duration;

use crate::{store_all_gather, Store, StoreError};

/// The handshake version this build speaks. Bump it on any change of the layout.
pub const HANDSHAKE_VERSION: u16 = 1;

const MAGIC: &[u8; 4] = b"INCH";
const MAX_STR: usize = 256;
const MAX_ROWS: usize = 1024;
const MAX_ROW: usize = 1024;
const MAX_MESH_CELLS: usize = 65536;
const MAX_HANDLES: usize = 1024;
const MAX_HANDLE_BYTES: usize = 4096;

/// The data backend a rank runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// CUDA devices; IPC handles are 64-byte `cudaIpcMemHandle_t`s.
    Cuda,
    /// The CPU simulator; IPC handles are shared-memory names.
    Sim,
    /// A plain CPU backend (threads in one process).
    Cpu,
}

impl Backend {
    fn code(self) -> u8 {
        match self {
            Backend::Cuda => 0,
            Backend::Sim => 1,
            Backend::Cpu => 2,
        }
    }
    fn from_code(c: u8) -> Option<Self> {
        match c {
            0 => Some(Backend::Cuda),
            1 => Some(Backend::Sim),
            2 => Some(Backend::Cpu),
            _ => None,
        }
    }
}

/// What one rank tells the others during rendezvous.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    /// The sender's rank.
    pub rank: u32,
    /// The world size the sender believes in.
    pub world: u32,
    /// The sender's data backend.
    pub backend: Backend,
    /// The topology class the sender computed (inc-topo's classification as a number).
    pub topology_class: u8,
    /// Host name (ranks must share one host).
    pub hostname: String,
    /// PCI bus id of the sender's device (e.g. `0000:18:00.0`).
    pub pci_bus_id: String,
    /// Device UUID (e.g. `GPU-…`).
    pub device_uuid: String,
    /// The NvlMesh as plain numbers: `mesh[i][j]` = NVLink count from device i to device j.
    pub mesh: Vec<Vec<u32>>,
    /// IPC handles of the sender's buffers (CUDA: 64-byte handles; sim: shm names as bytes).
    pub ipc_handles: Vec<Vec<u8>>,
    /// Bytes of the sender's symmetric data buffer.
    pub buffer_bytes: u64,
    /// Bytes of the sender's signal pad.
    pub signal_bytes: u64,
    /// Thread blocks (signal slots) the sender's kernels use.
    pub blocks: u32,
}

impl Handshake {
    /// Encodes the message (see the module docs for the layout). Fails on a field over a bound.
    pub fn encode(&self) -> Result<Vec<u8>, StoreError> {
        let bad = |reason: String| StoreError::Handshake {
            rank: self.rank as usize,
            reason,
        };
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&HANDSHAKE_VERSION.to_le_bytes());
        out.extend_from_slice(&self.rank.to_le_bytes());
        out.extend_from_slice(&self.world.to_le_bytes());
        out.push(self.backend.code());
        out.push(self.topology_class);
        for (name, s) in [
            ("hostname", &self.hostname),
            ("pci_bus_id", &self.pci_bus_id),
            ("device_uuid", &self.device_uuid),
        ] {
            if s.len() > MAX_STR {
                return Err(bad(format!("{name} is {} bytes, over {MAX_STR}", s.len())));
            }
            put_len(&mut out, s.len());
            out.extend_from_slice(s.as_bytes());
        }
        if self.mesh.len() > MAX_ROWS {
            return Err(bad(format!(
                "mesh has {} rows, over {MAX_ROWS}",
                self.mesh.len()
            )));
        }
        let cells: usize = self.mesh.iter().map(Vec::len).sum();
        if cells > MAX_MESH_CELLS || self.mesh.iter().any(|r| r.len() > MAX_ROW) {
            return Err(bad(format!(
                "mesh has {cells} cells or a row over {MAX_ROW}"
            )));
        }
        put_len(&mut out, self.mesh.len());
        for row in &self.mesh {
            put_len(&mut out, row.len());
            for v in row {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        if self.ipc_handles.len() > MAX_HANDLES {
            return Err(bad(format!(
                "{} IPC handles, over {MAX_HANDLES}",
                self.ipc_handles.len()
            )));
        }
        put_len(&mut out, self.ipc_handles.len());
        for h in &self.ipc_handles {
            if h.len() > MAX_HANDLE_BYTES {
                return Err(bad(format!(
                    "IPC handle of {} bytes, over {MAX_HANDLE_BYTES}",
                    h.len()
                )));
            }
            put_len(&mut out, h.len());
            out.extend_from_slice(h);
        }
        out.extend_from_slice(&self.buffer_bytes.to_le_bytes());
        out.extend_from_slice(&self.signal_bytes.to_le_bytes());
        out.extend_from_slice(&self.blocks.to_le_bytes());
        Ok(out)
    }

    /// Decodes a message that rank `expected_rank` sent. Every error names `expected_rank`.
    pub fn decode(bytes: &[u8], expected_rank: usize) -> Result<Self, StoreError> {
        let rank = expected_rank;
        let bad = |reason: String| StoreError::Handshake { rank, reason };
        let mut r = Reader {
            b: bytes,
            pos: 0,
            rank,
        };
        if r.take(4)? != MAGIC {
            return Err(bad("not a handshake message (bad magic)".into()));
        }
        let version = r.u16()?;
        if version != HANDSHAKE_VERSION {
            return Err(StoreError::HandshakeVersion {
                rank,
                got: version,
                want: HANDSHAKE_VERSION,
            });
        }
        let sender = r.u32()?;
        if sender as usize != expected_rank {
            return Err(bad(format!("message claims rank {sender}")));
        }
        let world = r.u32()?;
        let code = r.u8()?;
        let backend =
            Backend::from_code(code).ok_or_else(|| bad(format!("unknown backend code {code}")))?;
        let topology_class = r.u8()?;
        let hostname = r.string("hostname")?;
        let pci_bus_id = r.string("pci_bus_id")?;
        let device_uuid = r.string("device_uuid")?;
        let rows = r.len("mesh rows", MAX_ROWS)?;
        let mut mesh = Vec::with_capacity(rows);
        let mut cells = 0usize;
        for _ in 0..rows {
            let n = r.len("mesh row", MAX_ROW)?;
            cells += n;
            if cells > MAX_MESH_CELLS {
                return Err(bad(format!("mesh over {MAX_MESH_CELLS} cells")));
            }
            let mut row = Vec::with_capacity(n);
            for _ in 0..n {
                row.push(r.u32()?);
            }
            mesh.push(row);
        }
        let nh = r.len("IPC handle count", MAX_HANDLES)?;
        let mut ipc_handles = Vec::with_capacity(nh);
        for _ in 0..nh {
            let n = r.len("IPC handle", MAX_HANDLE_BYTES)?;
            ipc_handles.push(r.take(n)?.to_vec());
        }
        let buffer_bytes = r.u64()?;
        let signal_bytes = r.u64()?;
        let blocks = r.u32()?;
        if r.pos != bytes.len() {
            return Err(bad(format!("{} trailing bytes", bytes.len() - r.pos)));
        }
        Ok(Handshake {
            rank: sender,
            world,
            backend,
            topology_class,
            hostname,
            pci_bus_id,
            device_uuid,
            mesh,
            ipc_handles,
            buffer_bytes,
            signal_bytes,
            blocks,
        })
    }

    /// Encodes `self`, all-gathers it over the group through `store` under `prefix`, decodes
    /// every peer's message and checks that all agree on the world size. Returns them by rank.
    pub fn exchange(
        &self,
        store: &dyn Store,
        prefix: &str,
        timeout: Duration,
    ) -> Result<Vec<Handshake>, StoreError> {
        let world = self.world as usize;
        let all = store_all_gather(
            store,
            prefix,
            self.rank as usize,
            world,
            &self.encode()?,
            timeout,
        )?;
        let mut out = Vec::with_capacity(world);
        for (r, bytes) in all.iter().enumerate() {
            let h = Handshake::decode(bytes, r)?;
            if h.world != self.world {
                return Err(StoreError::Handshake {
                    rank: r,
                    reason: format!("world size {} differs from ours ({})", h.world, self.world),
                });
            }
            out.push(h);
        }
        Ok(out)
    }
}

fn put_len(out: &mut Vec<u8>, n: usize) {
    // Callers bound n far below u32::MAX.
    out.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes());
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
    rank: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], StoreError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.b.len())
            .ok_or_else(|| StoreError::Handshake {
                rank: self.rank,
                reason: format!(
                    "truncated message ({} bytes, needed {} more at offset {})",
                    self.b.len(),
                    n,
                    self.pos
                ),
            })?;
        let s = self
            .b
            .get(self.pos..end)
            .ok_or_else(|| StoreError::Handshake {
                rank: self.rank,
                reason: "truncated message".into(),
            })?;
        self.pos = end;
        Ok(s)
    }
    fn arr<const N: usize>(&mut self) -> Result<[u8; N], StoreError> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, StoreError> {
        Ok(self.arr::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, StoreError> {
        Ok(u16::from_le_bytes(self.arr()?))
    }
    fn u32(&mut self) -> Result<u32, StoreError> {
        Ok(u32::from_le_bytes(self.arr()?))
    }
    fn u64(&mut self) -> Result<u64, StoreError> {
        Ok(u64::from_le_bytes(self.arr()?))
    }
    fn len(&mut self, what: &str, max: usize) -> Result<usize, StoreError> {
        let n = self.u32()? as usize;
        if n > max {
            return Err(StoreError::Handshake {
                rank: self.rank,
                reason: format!("{what} length {n} over {max}"),
            });
        }
        Ok(n)
    }
    fn string(&mut self, what: &str) -> Result<String, StoreError> {
        let n = self.len(what, MAX_STR)?;
        let s = self.take(n)?;
        String::from_utf8(s.to_vec()).map_err(|_| StoreError::Handshake {
            rank: self.rank,
            reason: format!("{what} is not UTF-8"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample(rank: u32) -> Handshake {
        Handshake {
            rank,
            world: 2,
            backend: Backend::Cuda,
            topology_class: 3,
            hostname: "node-1".into(),
            pci_bus_id: "0000:18:00.0".into(),
            device_uuid: "GPU-0123".into(),
            mesh: vec![vec![0, 18], vec![18, 0]],
            ipc_handles: vec![vec![7u8; 64], vec![9u8; 64]],
            buffer_bytes: 1 << 26,
            signal_bytes: 1 << 20,
            blocks: 24,
        }
    }

    #[test]
    fn round_trip() {
        let h = sample(1);
        assert_eq!(Handshake::decode(&h.encode().unwrap(), 1).unwrap(), h);
    }

    #[test]
    fn wrong_version_names_rank() {
        let mut b = sample(1).encode().unwrap();
        b[4] = 9;
        let e = Handshake::decode(&b, 1).unwrap_err();
        assert!(
            matches!(
                e,
                StoreError::HandshakeVersion {
                    rank: 1,
                    got: 9,
                    want: HANDSHAKE_VERSION
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("rank 1"));
    }

    #[test]
    fn wrong_rank_truncation_trailing_and_bounds() {
        let b = sample(1).encode().unwrap();
        assert!(matches!(
            Handshake::decode(&b, 0),
            Err(StoreError::Handshake { rank: 0, .. })
        ));
        for cut in 0..b.len() {
            assert!(
                matches!(
                    Handshake::decode(&b[..cut], 1),
                    Err(StoreError::Handshake { rank: 1, .. })
                ),
                "cut {cut}"
            );
        }
        let mut t = b.clone();
        t.push(0);
        assert!(Handshake::decode(&t, 1)
            .unwrap_err()
            .to_string()
            .contains("trailing"));
        // A huge hostname length is refused without allocating.
        let mut h = b.clone();
        h[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(Handshake::decode(&h, 1)
            .unwrap_err()
            .to_string()
            .contains("over"));
        let mut big = sample(0);
        big.hostname = "x".repeat(MAX_STR + 1);
        assert!(big.encode().is_err());
    }

    #[test]
    fn exchange_over_memstore() {
        let s = std::sync::Arc::new(crate::MemStore::new());
        let hs: Vec<_> = (0..2u32)
            .map(|r| {
                let s = s.clone();
                std::thread::spawn(move || {
                    sample(r)
                        .exchange(&*s, "hs", Duration::from_secs(5))
                        .unwrap()
                })
            })
            .collect();
        for h in hs {
            let all = h.join().unwrap();
            assert_eq!(all, vec![sample(0), sample(1)]);
        }
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Handshake::decode(&bytes, 3);
        }

        #[test]
        fn round_trip_any(
            host in "[a-z0-9.-]{0,40}",
            mesh in proptest::collection::vec(proptest::collection::vec(any::<u32>(), 0..9), 0..9),
            handles in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..80), 0..9),
            buf in any::<u64>(), blocks in any::<u32>(), tc in any::<u8>(),
        ) {
            let h = Handshake { hostname: host, mesh, ipc_handles: handles, buffer_bytes: buf, blocks,
                topology_class: tc, backend: Backend::Sim, ..sample(2) };
            prop_assert_eq!(Handshake::decode(&h.encode().unwrap(), 2).unwrap(), h);
        }
    }
}
