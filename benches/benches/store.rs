//! Rendezvous costs: the versioned handshake's encode/decode, and `store_all_gather` of
//! 8 ranks x 4 KiB through a TCP store over loopback (and through the in-memory store).
#![allow(clippy::unwrap_used, clippy::expect_used)] // bench harness: a setup failure should stop it

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use inc_store::{
    store_all_gather, Backend, ClientOptions, Handshake, MemStore, ServerOptions, Store, TcpStore,
    TcpStoreServer,
};

const WORLD: usize = 8;
const BYTES: usize = 4096;
const TIMEOUT: Duration = Duration::from_secs(30);

fn handshake() -> Handshake {
    Handshake {
        rank: 3,
        world: WORLD as u32,
        backend: Backend::Cuda,
        topology_class: 1,
        hostname: "gpu-node-0042.cluster.example".into(),
        pci_bus_id: "0000:5D:00.0".into(),
        device_uuid: "GPU-5f1e9a2c-4b7d-3e8f-9a1b-2c3d4e5f6a7b".into(),
        mesh: (0..WORLD)
            .map(|i| (0..WORLD).map(|j| if i == j { 0 } else { 18 }).collect())
            .collect(),
        ipc_handles: vec![vec![0xA5; 64], vec![0x5A; 64]],
        buffer_bytes: 64 << 20,
        signal_bytes: 16 << 10,
        blocks: 24,
    }
}

/// `iters` all-gathers on every rank at once; returns the time rank 0 saw.
fn gather_rounds(stores: &[Arc<dyn Store>], prefix: &str, iters: u64) -> Duration {
    let start = Barrier::new(stores.len());
    let payload: Vec<Vec<u8>> = (0..stores.len()).map(|r| vec![r as u8; BYTES]).collect();
    std::thread::scope(|s| {
        let handles: Vec<_> = stores
            .iter()
            .enumerate()
            .map(|(rank, st)| {
                let start = &start;
                let mine = &payload[rank];
                s.spawn(move || {
                    start.wait();
                    let t0 = Instant::now();
                    for _ in 0..iters {
                        let all =
                            store_all_gather(&**st, prefix, rank, WORLD, mine, TIMEOUT).unwrap();
                        assert_eq!(all.len(), WORLD);
                    }
                    t0.elapsed()
                })
            })
            .collect();
        let times: Vec<Duration> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        times.into_iter().max().unwrap_or_default()
    })
}

fn bench(c: &mut Criterion) {
    let hs = handshake();
    let bytes = hs.encode().unwrap();
    assert_eq!(Handshake::decode(&bytes, 3).unwrap(), hs);
    let mut g = c.benchmark_group("store");
    g.bench_function("handshake/encode_8gpu", |b| {
        b.iter(|| black_box(&hs).encode().unwrap())
    });
    g.bench_function("handshake/decode_8gpu", |b| {
        b.iter(|| Handshake::decode(black_box(&bytes), 3).unwrap())
    });

    let server = TcpStoreServer::start(ServerOptions::default()).unwrap();
    let addr = server.local_addr().to_string();
    let tcp: Vec<Arc<dyn Store>> = (0..WORLD)
        .map(|_| {
            Arc::new(TcpStore::connect(&addr, ClientOptions::default()).unwrap()) as Arc<dyn Store>
        })
        .collect();
    g.throughput(Throughput::Bytes((WORLD * BYTES) as u64));
    g.bench_function("all_gather/tcp_loopback_8x4KiB", |b| {
        b.iter_custom(|iters| gather_rounds(&tcp, "bench/tcp", iters))
    });
    let mem: Arc<dyn Store> = Arc::new(MemStore::new());
    let mem: Vec<Arc<dyn Store>> = (0..WORLD).map(|_| mem.clone()).collect();
    g.bench_function("all_gather/mem_8x4KiB", |b| {
        b.iter_custom(|iters| gather_rounds(&mem, "bench/mem", iters))
    });
    g.finish();
    drop(tcp);
    drop(server);
}

criterion_group!(benches, bench);
criterion_main!(benches);
