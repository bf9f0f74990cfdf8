#!/usr/bin/env python3
"""Interop of inc's TCPStore-protocol server/client with PyTorch's torch.distributed.TCPStore.

Usage: python3 torch_interop.py --inc-bin PATH/TO/inc [--skip-gloo]

(a) torch TCPStore server (libuv and legacy backends) <-> `inc store` client commands;
(b) `inc store serve` <-> torch TCPStore client (set/get/add/compare_set/wait/check/delete/
    num_keys/multi ops, PrefixStore, a wait that times out, and a 2-process gloo
    init_process_group + all_reduce rendezvousing through the inc server).
Prints one PASS/FAIL line per check; exits 1 if any failed, 2 if torch is missing.
"""
import argparse
import os
import subprocess
import sys
import threading
import time
from datetime import timedelta

FAILS = []


def check(name, cond, detail=""):
    if cond:
        print(f"PASS {name}")
    else:
        print(f"FAIL {name} {detail}")
        FAILS.append(name)


def attempt(name, fn):
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - report every failure as a FAIL line
        check(name, False, f"raised {type(e).__name__}: {e}")


def inc(bin_, *args, timeout=60):
    env = dict(os.environ)
    env.pop("INC_STORE_TOKEN", None)
    p = subprocess.run([bin_, "store", *args], capture_output=True, timeout=timeout, env=env)
    return p.returncode, p.stdout.decode().rstrip("\n"), p.stderr.decode().strip()


def torch_server_inc_client(bin_, use_libuv):
    import torch.distributed as dist

    tag = f"torch-server(libuv={use_libuv})"
    try:
        store = dist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False,
                              timeout=timedelta(seconds=30), use_libuv=use_libuv)
    except Exception as e:  # noqa: BLE001
        print(f"SKIP {tag}: cannot start ({e})")
        return
    addr = f"127.0.0.1:{store.port}"

    def body():
        rc, _, err = inc(bin_, "set", "--addr", addr, "a", "hello")
        check(f"{tag} inc set", rc == 0, err)
        check(f"{tag} torch get of inc's key", store.get("a") == b"hello")
        store.set("b", "world")
        rc, out, err = inc(bin_, "get", "--addr", addr, "b")
        check(f"{tag} inc get of torch's key", rc == 0 and out == "world", f"{rc} {out!r} {err}")
        inc(bin_, "add", "--addr", addr, "ctr", "5")
        rc, out, err = inc(bin_, "add", "--addr", addr, "ctr", "5")
        check(f"{tag} inc add", rc == 0 and out == "10", f"{rc} {out!r} {err}")
        check(f"{tag} torch add sees inc counter", store.add("ctr", 1) == 11)
        rc, out, err = inc(bin_, "compare-set", "--addr", addr, "cs", "", "v1")
        check(f"{tag} inc compare_set on missing key", rc == 0 and out == "v1", f"{rc} {out!r} {err}")
        check(f"{tag} torch compare_set after inc", store.compare_set("cs", "v1", "v2") == b"v2")
        rc, out, err = inc(bin_, "compare-set", "--addr", addr, "cs", "zz", "v3")
        check(f"{tag} inc compare_set mismatch", rc == 0 and out == "v2", f"{rc} {out!r} {err}")
        # inc waits, torch sets
        p = subprocess.Popen([bin_, "store", "wait", "--addr", addr, "late", "--timeout", "20"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(0.5)
        store.set("late", "x")
        check(f"{tag} inc wait woken by torch set", p.wait(timeout=30) == 0)
        # torch waits, inc sets
        res = {}

        def waiter():
            try:
                store.wait(["from_inc"], timedelta(seconds=20))
                res["ok"] = True
            except Exception as e:  # noqa: BLE001
                res["err"] = e

        t = threading.Thread(target=waiter)
        t.start()
        time.sleep(0.3)
        inc(bin_, "set", "--addr", addr, "from_inc", "1")
        t.join(30)
        check(f"{tag} torch wait woken by inc set", res.get("ok", False), str(res))
        t0 = time.time()
        rc, _, err = inc(bin_, "get", "--addr", addr, "absent", "--timeout", "0.5")
        check(f"{tag} inc get of missing key times out", rc != 0 and "timed out" in err and time.time() - t0 < 10, err)
        rc, out, err = inc(bin_, "delete", "--addr", addr, "b")
        check(f"{tag} inc delete", rc == 0 and out == "true" and not store.check(["b"]), f"{rc} {out!r} {err}")

    attempt(f"{tag} session", body)


def inc_server_torch_client(bin_, skip_gloo):
    import torch
    import torch.distributed as dist

    tag = "inc-server"
    srv = subprocess.Popen([bin_, "store", "serve", "--addr", "127.0.0.1:0"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
    try:
        addr = srv.stdout.readline().decode().strip()
        host, port = addr.rsplit(":", 1)
        port = int(port)
        check(f"{tag} prints its address", port > 0, addr)

        def body():
            s = dist.TCPStore(host, port, is_master=False, wait_for_workers=False, timeout=timedelta(seconds=30))
            s.set("k", "v")
            check(f"{tag} torch set/get", s.get("k") == b"v")
            rc, out, err = inc(bin_, "get", "--addr", addr, "k")
            check(f"{tag} inc get of torch's key", rc == 0 and out == "v", f"{rc} {out!r} {err}")
            inc(bin_, "set", "--addr", addr, "from_inc", "bytes!")
            check(f"{tag} torch get of inc's key", s.get("from_inc") == b"bytes!")
            check(f"{tag} torch add", s.add("c", 3) == 3 and s.add("c", -1) == 2)
            rc, out, _ = inc(bin_, "add", "--addr", addr, "c", "10")
            check(f"{tag} inc add on torch counter", out == "12", out)
            check(f"{tag} torch compare_set missing+empty", s.compare_set("cs", "", "a") == b"a")
            check(f"{tag} torch compare_set match", s.compare_set("cs", "a", "b") == b"b")
            check(f"{tag} torch compare_set mismatch", s.compare_set("cs", "zz", "c") == b"b")
            check(f"{tag} torch compare_set missing+nonempty", s.compare_set("nokey", "e", "d") == b"e")
            check(f"{tag} torch check", s.check(["k", "c"]) and not s.check(["k", "nope"]))
            t0 = time.time()
            try:
                s.wait(["never"], timedelta(milliseconds=300))
                check(f"{tag} torch wait timeout", False, "no exception")
            except Exception as e:  # noqa: BLE001
                check(f"{tag} torch wait timeout", "timeout" in str(e).lower() and time.time() - t0 < 10, str(e))
            s.set("after", "sync")
            check(f"{tag} torch in sync after CANCEL_WAIT", s.get("after") == b"sync")
            p = subprocess.Popen([bin_, "store", "set", "--addr", addr, "late", "L"])
            s.wait(["late"], timedelta(seconds=20))
            p.wait(10)
            check(f"{tag} torch wait woken by inc", s.get("late") == b"L")
            n = s.num_keys()
            s.set("one_more", "1")
            check(f"{tag} torch num_keys", isinstance(n, int) and s.num_keys() == n + 1 and n == 6, str(n))
            check(f"{tag} torch delete_key", s.delete_key("k") and not s.check(["k"]))
            s.append("ap", "x")
            s.append("ap", "y")
            check(f"{tag} torch append", s.get("ap") == b"xy")
            if hasattr(s, "multi_set"):
                s.multi_set(["m1", "m2"], ["1", "2"])
                check(f"{tag} torch multi_set/multi_get", s.multi_get(["m1", "m2"]) == [b"1", b"2"])
            ps = dist.PrefixStore("grp", s)
            ps.set("pk", "pv")
            rc, out, _ = inc(bin_, "get", "--addr", addr, "grp/pk")
            check(f"{tag} PrefixStore key seen by inc as grp/pk", out == "pv", out)
            s2 = dist.TCPStore(host, port, is_master=False, wait_for_workers=False, timeout=timedelta(seconds=30))
            check(f"{tag} second torch client", s2.get("after") == b"sync")

        attempt(f"{tag} session", body)
        if not skip_gloo:
            attempt(f"{tag} gloo", lambda: gloo_over_inc(host, port))
    finally:
        srv.kill()
        srv.wait()


def _gloo_rank(host, port, rank, q):
    import torch
    import torch.distributed as dist

    try:
        s = dist.TCPStore(host, port, is_master=False, wait_for_workers=False, timeout=timedelta(seconds=60))
        dist.init_process_group("gloo", store=s, rank=rank, world_size=2, timeout=timedelta(seconds=60))
        t = torch.tensor([float(rank + 1)])
        dist.all_reduce(t)
        dist.barrier()
        dist.destroy_process_group()
        q.put((rank, float(t.item())))
    except Exception as e:  # noqa: BLE001
        q.put((rank, repr(e)))


def gloo_over_inc(host, port):
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    ps = [ctx.Process(target=_gloo_rank, args=(host, port, r, q)) for r in range(2)]
    for p in ps:
        p.start()
    got = dict(q.get(timeout=120) for _ in ps)
    for p in ps:
        p.join(30)
    check("inc-server gloo init_process_group + all_reduce (2 processes)", got == {0: 3.0, 1: 3.0}, str(got))


def _bench_round_trips(host, port, world=8, rounds=200, size=4096):
    """8 threads, each its own torch TCPStore client: per round set own 4 KiB key, then wait +
    multi_get all ranks' keys (the store all-gather pattern). Returns microseconds per round."""
    import torch.distributed as dist

    clients = [dist.TCPStore(host, port, is_master=False, wait_for_workers=False,
                             timeout=timedelta(seconds=60)) for _ in range(world)]
    barrier = threading.Barrier(world)
    times = [0.0] * world

    def rank(r):
        s = clients[r]
        payload = bytes([r]) * size
        barrier.wait()
        t0 = time.perf_counter()
        for n in range(rounds):
            s.set(f"ag/{n}/{r}", payload)
            keys = [f"ag/{n}/{q}" for q in range(world)]
            s.wait(keys)
            vals = s.multi_get(keys) if hasattr(s, "multi_get") else [s.get(k) for k in keys]
            assert vals[r] == payload
        times[r] = time.perf_counter() - t0

    ts = [threading.Thread(target=rank, args=(r,)) for r in range(world)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return max(times) / rounds * 1e6


def bench(bin_):
    import torch.distributed as dist

    master = dist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False, timeout=timedelta(seconds=60))
    us = _bench_round_trips("127.0.0.1", master.port)
    print(f"BENCH torch-libuv-server all-gather 8 ranks x 4 KiB (torch clients): {us:.1f} us/round")
    srv = subprocess.Popen([bin_, "store", "serve", "--addr", "127.0.0.1:0"], stdout=subprocess.PIPE)
    try:
        host, port = srv.stdout.readline().decode().strip().rsplit(":", 1)
        us = _bench_round_trips(host, int(port))
        print(f"BENCH inc-server all-gather 8 ranks x 4 KiB (torch clients): {us:.1f} us/round")
    finally:
        srv.kill()
        srv.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--inc-bin", required=True)
    ap.add_argument("--skip-gloo", action="store_true")
    ap.add_argument("--bench", action="store_true", help="also time an 8-rank store all-gather")
    a = ap.parse_args()
    try:
        import torch
    except ImportError:
        print("SKIP torch is not installed")
        sys.exit(2)
    print(f"torch {torch.__version__}")
    for libuv in (True, False):
        torch_server_inc_client(a.inc_bin, libuv)
    inc_server_torch_client(a.inc_bin, a.skip_gloo)
    if a.bench:
        attempt("bench", lambda: bench(a.inc_bin))
    print(f"{'FAILED' if FAILS else 'ALL PASSED'}: {len(FAILS)} failure(s)")
    sys.exit(1 if FAILS else 0)


if __name__ == "__main__":
    main()
