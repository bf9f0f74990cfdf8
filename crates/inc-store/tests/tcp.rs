#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Loopback tests of the TCPStore-protocol server and client, including failure behaviour.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use inc_store::proto::{encode_request, Request, VALIDATION_MAGIC};
use inc_store::{
    store_all_gather, ClientOptions, ServerOptions, Store, StoreError, TcpStore, TcpStoreServer,
};

const T: Duration = Duration::from_secs(20);

fn server() -> TcpStoreServer {
    TcpStoreServer::start(ServerOptions::default()).unwrap()
}

fn client(s: &TcpStoreServer) -> TcpStore {
    TcpStore::connect(&s.local_addr().to_string(), ClientOptions::default()).unwrap()
}

fn raw(s: &TcpStoreServer) -> TcpStream {
    let c = TcpStream::connect(s.local_addr()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c
}

fn frame(r: Request) -> Vec<u8> {
    let mut b = Vec::new();
    encode_request(&r, &mut b);
    b
}

/// Waits until the server has `n` connections (connection teardown is asynchronous).
fn wait_conns(s: &TcpStoreServer, n: usize) {
    let t0 = Instant::now();
    while s.connections() != n {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "server has {} connections, want {n}",
            s.connections()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn all_operations() {
    let s = server();
    let c = client(&s);
    c.set("a", b"1").unwrap();
    assert_eq!(c.get("a", T).unwrap(), b"1");
    assert_eq!(c.add("a", 5).unwrap(), 6);
    assert_eq!(c.add("ctr", 2).unwrap(), 2);
    assert_eq!(c.get("ctr", T).unwrap(), b"2");
    assert_eq!(c.compare_set("cs", b"x", b"y").unwrap(), b"x");
    assert_eq!(c.compare_set("cs", b"", b"y").unwrap(), b"y");
    assert_eq!(c.compare_set("cs", b"y", b"z").unwrap(), b"z");
    assert_eq!(c.compare_set("cs", b"nope", b"w").unwrap(), b"z");
    assert!(c.check(&["a", "ctr"]).unwrap());
    assert!(!c.check(&["a", "zzz"]).unwrap());
    c.wait(&["a", "cs"], T).unwrap();
    assert_eq!(c.num_keys().unwrap(), 3);
    assert!(c.delete("a").unwrap());
    assert!(!c.delete("a").unwrap());
    c.multi_set(&[("m1", b"x"), ("m2", b"")]).unwrap();
    assert_eq!(
        c.multi_get(&["m1", "m2"], T).unwrap(),
        vec![b"x".to_vec(), vec![]]
    );
    c.append("ap", b"ab").unwrap();
    c.append("ap", b"cd").unwrap();
    assert_eq!(c.get("ap", T).unwrap(), b"abcd");
    c.ping().unwrap();
    // Keys carry torch's "/" prefix on the wire.
    let bare = TcpStore::connect(
        &s.local_addr().to_string(),
        ClientOptions {
            key_prefix: String::new(),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(bare.get("/ap", T).unwrap(), b"abcd");
}

#[test]
fn timeouts_are_typed_and_leave_the_connection_usable() {
    let s = server();
    let c = client(&s);
    let t0 = Instant::now();
    let e = c.get("missing", Duration::from_millis(100)).unwrap_err();
    assert!(
        matches!(&e, StoreError::Timeout { keys, .. } if keys == &vec!["missing".to_string()]),
        "{e}"
    );
    assert!(t0.elapsed() >= Duration::from_millis(100));
    assert!(t0.elapsed() < Duration::from_secs(5));
    let e = c.wait(&["x", "y"], Duration::from_millis(30)).unwrap_err();
    assert!(e.is_timeout());
    // Still in sync after the CANCEL_WAIT dance.
    c.set("x", b"1").unwrap();
    assert_eq!(c.get("x", T).unwrap(), b"1");
    assert_eq!(c.add("n", 1).unwrap(), 1);
    // Zero timeout on an existing key works; on a missing one times out at once.
    assert_eq!(c.get("x", Duration::ZERO).unwrap(), b"1");
    assert!(c.get("nope", Duration::ZERO).unwrap_err().is_timeout());
}

#[test]
fn blocking_wait_does_not_block_other_clients() {
    let s = server();
    let addr = s.local_addr().to_string();
    let waiter = {
        let addr = addr.clone();
        std::thread::spawn(move || {
            let c = TcpStore::connect(&addr, ClientOptions::default()).unwrap();
            c.get("late", T)
        })
    };
    std::thread::sleep(Duration::from_millis(50));
    let c = client(&s);
    for i in 0..50 {
        assert_eq!(c.add("busy", 1).unwrap(), i + 1);
    }
    c.set("late", b"here").unwrap();
    assert_eq!(waiter.join().unwrap().unwrap(), b"here");
}

#[test]
fn many_clients_concurrently() {
    let s = server();
    let addr = s.local_addr().to_string();
    let n = 48;
    let hs: Vec<_> = (0..n)
        .map(|i| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let c = TcpStore::connect(&addr, ClientOptions::default()).unwrap();
                for _ in 0..20 {
                    c.add("total", 1).unwrap();
                }
                c.set(&format!("k{i}"), format!("v{i}").as_bytes()).unwrap();
                // Everyone waits for everyone.
                let keys: Vec<String> = (0..n).map(|j| format!("k{j}")).collect();
                let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
                let all = c.multi_get(&refs, T).unwrap();
                for (j, v) in all.iter().enumerate() {
                    assert_eq!(v, format!("v{j}").as_bytes());
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    let c = client(&s);
    assert_eq!(c.get("total", T).unwrap(), (n * 20).to_string().as_bytes());
}

#[test]
fn concurrent_all_gathers_2_to_64_ranks() {
    let s = server();
    let addr = s.local_addr().to_string();
    let worlds = [2usize, 3, 8, 17, 64];
    let groups: Vec<_> = worlds
        .iter()
        .map(|&world| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let ranks: Vec<_> = (0..world)
                    .map(|r| {
                        let addr = addr.clone();
                        std::thread::spawn(move || {
                            let c: Arc<dyn Store> = Arc::new(
                                TcpStore::connect(&addr, ClientOptions::default()).unwrap(),
                            );
                            let prefix = format!("grp{world}");
                            for round in 0..3 {
                                let mine = vec![(r % 251) as u8; 16 + r + round];
                                let all =
                                    store_all_gather(&*c, &prefix, r, world, &mine, T).unwrap();
                                assert_eq!(all.len(), world);
                                for (q, v) in all.iter().enumerate() {
                                    assert_eq!(v, &vec![(q % 251) as u8; 16 + q + round]);
                                }
                            }
                        })
                    })
                    .collect();
                for h in ranks {
                    h.join().unwrap();
                }
            })
        })
        .collect();
    for g in groups {
        g.join().unwrap();
    }
}

#[test]
fn garbage_no_validate_bad_magic_and_huge_lengths_are_dropped() {
    let s = server();
    let good = client(&s);
    good.set("alive", b"1").unwrap();
    let cases: Vec<Vec<u8>> = vec![
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        frame(Request::Validate { magic: 0xDEAD_BEEF }),
        // A query before VALIDATE.
        frame(Request::Set {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
        }),
        // Valid VALIDATE then a SET with a 2^62-byte value.
        {
            let mut b = frame(Request::Validate {
                magic: VALIDATION_MAGIC,
            });
            b.extend_from_slice(&[1, 1, 0, 0, 0, 0, 0, 0, 0, b'k']);
            b.extend_from_slice(&(1u64 << 62).to_le_bytes());
            b
        },
        // Valid VALIDATE then an unknown query type.
        {
            let mut b = frame(Request::Validate {
                magic: VALIDATION_MAGIC,
            });
            b.push(200);
            b
        },
    ];
    for bytes in cases {
        let mut r = raw(&s);
        r.write_all(&bytes).unwrap();
        // The server closes the connection: read returns EOF (or a reset), not a hang.
        let mut sink = [0u8; 64];
        let t0 = Instant::now();
        loop {
            match r.read(&mut sink) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        assert!(t0.elapsed() < Duration::from_secs(5));
        assert_eq!(good.get("alive", T).unwrap(), b"1");
    }
    wait_conns(&s, 1);
}

#[test]
fn client_killed_mid_frame_does_not_disturb_others() {
    let s = server();
    let good = client(&s);
    let waiter = {
        let addr = s.local_addr().to_string();
        std::thread::spawn(move || {
            TcpStore::connect(&addr, ClientOptions::default())
                .unwrap()
                .get("k", T)
        })
    };
    {
        let mut r = raw(&s);
        let mut b = frame(Request::Validate {
            magic: VALIDATION_MAGIC,
        });
        let set = frame(Request::Set {
            key: b"/k".to_vec(),
            value: vec![7; 1000],
        });
        b.extend_from_slice(&set[..500]);
        r.write_all(&b).unwrap();
        // dropped here, mid-frame
    }
    std::thread::sleep(Duration::from_millis(50));
    wait_conns(&s, 2);
    assert!(
        !good.check(&["k"]).unwrap(),
        "a half frame must not be applied"
    );
    good.set("k", b"whole").unwrap();
    assert_eq!(waiter.join().unwrap().unwrap(), b"whole");
}

#[test]
fn client_stalled_mid_frame_is_dropped_after_frame_timeout() {
    let s = TcpStoreServer::start(ServerOptions {
        frame_timeout: Duration::from_millis(200),
        ..Default::default()
    })
    .unwrap();
    let mut r = raw(&s);
    let mut b = frame(Request::Validate {
        magic: VALIDATION_MAGIC,
    });
    b.extend_from_slice(&[1, 5, 0]);
    r.write_all(&b).unwrap();
    let mut sink = [0u8; 8];
    let t0 = Instant::now();
    assert!(matches!(r.read(&mut sink), Ok(0) | Err(_)));
    assert!(t0.elapsed() >= Duration::from_millis(150));
    wait_conns(&s, 0);
    // An idle (between frames) client is not dropped.
    let c = client(&s);
    std::thread::sleep(Duration::from_millis(400));
    c.set("still", b"ok").unwrap();
    assert_eq!(c.get("still", T).unwrap(), b"ok");
}

#[test]
fn server_killed_mid_wait_gives_waiters_an_error() {
    let mut s = server();
    let addr = s.local_addr().to_string();
    let waiters: Vec<_> = (0..4)
        .map(|_| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let c = TcpStore::connect(&addr, ClientOptions::default()).unwrap();
                let t0 = Instant::now();
                let r = c.get("never", Duration::from_secs(60));
                (r, t0.elapsed(), c)
            })
        })
        .collect();
    wait_conns(&s, 4);
    std::thread::sleep(Duration::from_millis(50));
    s.shutdown();
    for w in waiters {
        let (r, took, c) = w.join().unwrap();
        let e = r.unwrap_err();
        assert!(
            matches!(
                e,
                StoreError::ConnectionClosed { .. } | StoreError::Io { .. }
            ),
            "{e}"
        );
        assert!(took < Duration::from_secs(10));
        // Later calls fail fast too.
        assert!(matches!(c.set("x", b"y"), Err(StoreError::Closed(_))));
    }
}

#[test]
fn connect_retries_until_the_server_appears_and_times_out_otherwise() {
    // Find a free port, then start the server on it a little later.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        let s = TcpStoreServer::start(ServerOptions {
            addr: format!("127.0.0.1:{port}").parse().unwrap(),
            ..Default::default()
        })
        .unwrap();
        std::thread::sleep(Duration::from_secs(2));
        drop(s);
    });
    let c = TcpStore::connect(
        &addr,
        ClientOptions {
            connect_timeout: Duration::from_secs(10),
            ..Default::default()
        },
    )
    .unwrap();
    c.set("k", b"v").unwrap();
    t.join().unwrap();

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let t0 = Instant::now();
    let e = TcpStore::connect(
        &format!("127.0.0.1:{port}"),
        ClientOptions {
            connect_timeout: Duration::from_millis(300),
            ..Default::default()
        },
    )
    .err()
    .unwrap();
    assert!(matches!(e, StoreError::Connect { .. }), "{e}");
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert!(matches!(
        TcpStore::connect("nohostport", ClientOptions::default()),
        Err(StoreError::InvalidArgument(_))
    ));
}

#[test]
fn token_is_checked_at_connect() {
    let s = TcpStoreServer::start(ServerOptions {
        token: Some("s3cret".into()),
        ..Default::default()
    })
    .unwrap();
    let addr = s.local_addr().to_string();
    let quick = |token: Option<&str>| ClientOptions {
        token: token.map(str::to_owned),
        connect_timeout: Duration::from_millis(300),
        ..Default::default()
    };
    let ok = TcpStore::connect(&addr, quick(Some("s3cret"))).unwrap();
    ok.set("k", b"v").unwrap();
    assert!(matches!(
        TcpStore::connect(&addr, quick(Some("wrong"))),
        Err(StoreError::AuthRejected { .. })
    ));
    let e = TcpStore::connect(&addr, quick(None)).err().unwrap();
    assert!(e.to_string().contains("token"), "{e}");
    // A raw torch-style client (no AUTH) is dropped at its first query.
    let mut r = raw(&s);
    let mut b = frame(Request::Validate {
        magic: VALIDATION_MAGIC,
    });
    b.extend_from_slice(&frame(Request::Ping { nonce: 5 }));
    r.write_all(&b).unwrap();
    let mut sink = [0u8; 4];
    assert!(matches!(r.read(&mut sink), Ok(0) | Err(_)));
    assert_eq!(ok.get("k", T).unwrap(), b"v");
    // A server without a token accepts a client that sends one.
    let open = server();
    TcpStore::connect(&open.local_addr().to_string(), quick(Some("any")))
        .unwrap()
        .ping()
        .unwrap();
}

#[test]
fn torch_style_raw_session() {
    // The exact bytes a torch client sends: VALIDATE, PING, SET, WAIT+GET, ADD, CHECK.
    let s = server();
    let mut r = raw(&s);
    let mut b = frame(Request::Validate {
        magic: VALIDATION_MAGIC,
    });
    b.extend_from_slice(&frame(Request::Ping { nonce: 4242 }));
    r.write_all(&b).unwrap();
    let mut n = [0u8; 4];
    r.read_exact(&mut n).unwrap();
    assert_eq!(u32::from_le_bytes(n), 4242);
    r.write_all(&frame(Request::Set {
        key: b"/x".to_vec(),
        value: b"hello".to_vec(),
    }))
    .unwrap();
    r.write_all(&frame(Request::Wait {
        keys: vec![b"/x".to_vec()],
    }))
    .unwrap();
    let mut one = [0u8; 1];
    r.read_exact(&mut one).unwrap();
    assert_eq!(one[0], 0, "STOP_WAITING");
    r.write_all(&frame(Request::Get {
        key: b"/x".to_vec(),
    }))
    .unwrap();
    let mut len = [0u8; 8];
    r.read_exact(&mut len).unwrap();
    let mut v = vec![0u8; u64::from_le_bytes(len) as usize];
    r.read_exact(&mut v).unwrap();
    assert_eq!(v, b"hello");
    r.write_all(&frame(Request::Add {
        key: b"/c".to_vec(),
        delta: 7,
    }))
    .unwrap();
    let mut a = [0u8; 8];
    r.read_exact(&mut a).unwrap();
    assert_eq!(i64::from_le_bytes(a), 7);
    // The value is stored as a decimal string, readable by our client.
    assert_eq!(client(&s).get("c", T).unwrap(), b"7");
    // WAIT on a missing key, then CANCEL_WAIT: exactly one WAIT_CANCELED comes back.
    r.write_all(&frame(Request::Wait {
        keys: vec![b"/none".to_vec()],
    }))
    .unwrap();
    r.write_all(&frame(Request::CancelWait)).unwrap();
    r.read_exact(&mut one).unwrap();
    assert_eq!(one[0], 1, "WAIT_CANCELED");
    r.write_all(&frame(Request::Check {
        keys: vec![b"/x".to_vec(), b"/none".to_vec()],
    }))
    .unwrap();
    r.read_exact(&mut one).unwrap();
    assert_eq!(one[0], 1, "NOT_READY");
    // Queues.
    r.write_all(&frame(Request::QueuePush {
        key: b"/q".to_vec(),
        value: b"i1".to_vec(),
    }))
    .unwrap();
    r.write_all(&frame(Request::QueueLen {
        key: b"/q".to_vec(),
    }))
    .unwrap();
    r.read_exact(&mut a).unwrap();
    assert_eq!(i64::from_le_bytes(a), 1);
    r.write_all(&frame(Request::QueuePop {
        key: b"/q".to_vec(),
    }))
    .unwrap();
    r.read_exact(&mut a).unwrap();
    assert_eq!(i64::from_le_bytes(a), 1);
    r.read_exact(&mut len).unwrap();
    let mut item = vec![0u8; u64::from_le_bytes(len) as usize];
    r.read_exact(&mut item).unwrap();
    assert_eq!(item, b"i1");
}

#[test]
fn memory_bounds_drop_the_offender_only() {
    let s = TcpStoreServer::start(ServerOptions {
        max_total_bytes: 10_000,
        ..Default::default()
    })
    .unwrap();
    let good = client(&s);
    good.set("small", b"1").unwrap();
    let big = client(&s);
    let e = big
        .set("big", &vec![0u8; 20_000])
        .and_then(|_| big.ping())
        .unwrap_err();
    assert!(
        matches!(
            e,
            StoreError::ConnectionClosed { .. } | StoreError::Io { .. }
        ),
        "{e}"
    );
    assert_eq!(good.get("small", T).unwrap(), b"1");
    assert!(!good.check(&["big"]).unwrap());
    // Client-side bound: a value over max_value_bytes is refused before sending.
    let c = TcpStore::connect(
        &s.local_addr().to_string(),
        ClientOptions {
            max_value_bytes: 10,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(matches!(
        c.set("k", &[0u8; 11]),
        Err(StoreError::TooLarge { .. })
    ));
    c.ping().unwrap();
}
