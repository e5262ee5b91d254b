"""The dlm Python package (python/) against redis-py, on servers the caller
started. bench.sh runs it for scripts/bench-bindings.sh; the contract (the
DLM_BENCH_* variables it reads, the JSON lines it prints) is ../README.md.

Workers are threads. Each client is shared by all of them, as both are
meant to be used: one ``dlm.Client`` (a pool of connections; its blocking
calls release the GIL) and one ``redis.Redis`` (its ``ConnectionPool``).
Both pools end up holding one connection per worker: redis-py's keeps every
connection it opened, and the dlm client is given ``max_idle`` = the
largest worker count so that it keeps them too (with its default of 4 it
would close and reopen connections all the time under 64 threads). Every
worker uses a key of its own (uncontended):

  lock  dlm:   client.lock(key, ttl=30, auto_renew=False) taken, then
               released (no renewal thread: Redis's lock is not renewed
               either)
        redis: SET key token NX PX 30000, then EVALSHA of the
               compare-and-delete script (loaded once with SCRIPT LOAD)
  kv    dlm:   client.put(key, 32 bytes, ttl=300), then client.get(key)
        redis: SET key value PX 300000, then GET key

One operation is the pair. For each (workload, workers) the two clients
take turns in slices of at most one second until each has run
DLM_BENCH_SECONDS, after a short warm-up each, so a drift of the machine
touches both alike. A failed cycle ends the program with status 1.
"""

import json
import math
import os
import secrets
import sys
import threading
import time

import dlm
import redis

LOCK_TTL_S = 30
VALUE_TTL_S = 300
SLICE_S = 1.0
WARMUP_S = 0.3
VALUE = b"x" * 32
RELEASE_SCRIPT = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then "
    "return redis.call('del', KEYS[1]) else return 0 end"
)


class Failed(Exception):
    """A cycle that cannot fail on a healthy server did."""


def env(name, default):
    value = os.environ.get(name, "").strip()
    return value if value else default


def host_port(text):
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        sys.exit(f"bench.py: not HOST:PORT: {text!r}")
    return host.strip("[]"), int(port)


def dlm_ops(addr, max_workers):
    client = dlm.Client(addr, max_idle=max_workers)

    def lock(key, _token):
        with client.lock(key, ttl=LOCK_TTL_S, auto_renew=False):
            pass

    def kv(key, _token):
        client.put(key, VALUE, ttl=VALUE_TTL_S)
        got = client.get(key)
        if got is None or got.value != VALUE:
            raise Failed(f"{key}: read {got!r}")

    return {"lock": lock, "kv": kv}, client.close


def redis_ops(addr):
    host, port = host_port(addr)
    r = redis.Redis(connection_pool=redis.ConnectionPool(host=host, port=port))
    sha = r.script_load(RELEASE_SCRIPT)

    def lock(key, token):
        if not r.set(key, token, nx=True, px=LOCK_TTL_S * 1000):
            raise Failed(f"{key} is taken")
        if r.evalsha(sha, 1, key, token) != 1:
            raise Failed(f"{key} was not released")

    def kv(key, _token):
        r.set(key, VALUE, px=VALUE_TTL_S * 1000)
        got = r.get(key)
        if got != VALUE:
            raise Failed(f"{key}: read {got!r}")

    return {"lock": lock, "kv": kv}, r.close


def run(op, keys, tokens, seconds, samples):
    """Runs one closed loop of `op` per key, in a thread each, for `seconds`
    from when all have started. Latencies in us go to `samples` (a list)
    when given. Returns (operations, elapsed seconds)."""
    n = len(keys)
    start = threading.Barrier(n + 1)
    deadline = [0.0]
    counts = [0] * n
    lats = [[] for _ in range(n)]
    errors = []

    def worker(i):
        key, token, mine = keys[i], tokens[i], lats[i]
        start.wait()
        end = deadline[0]
        count = 0
        clock = time.perf_counter
        try:
            while True:
                t0 = clock()
                if t0 >= end:
                    break
                op(key, token)
                mine.append(clock() - t0)
                count += 1
        except Exception as e:  # reported by the main thread
            errors.append(e)
        counts[i] = count

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    t0 = time.perf_counter()
    deadline[0] = t0 + seconds
    start.wait()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise errors[0]
    if samples is not None:
        for mine in lats:
            samples.extend(mine)
    return sum(counts), elapsed


def percentile_us(sorted_s, p):
    if not sorted_s:
        return 0
    i = min(len(sorted_s) - 1, max(0, math.ceil(p / 100 * len(sorted_s)) - 1))
    return round(sorted_s[i] * 1e6)


def main():
    dlm_addr = env("DLM_BENCH_DLM", "")
    redis_addr = env("DLM_BENCH_REDIS", "")
    if not dlm_addr or not redis_addr:
        sys.exit("bench.py: DLM_BENCH_DLM and DLM_BENCH_REDIS (HOST:PORT) are needed")
    try:
        seconds = float(env("DLM_BENCH_SECONDS", "3"))
        workers_list = [int(w) for w in env("DLM_BENCH_WORKERS", "16 64").split()]
    except ValueError as e:
        sys.exit(f"bench.py: bad DLM_BENCH_SECONDS or DLM_BENCH_WORKERS: {e}")
    if not (seconds > 0) or not workers_list or min(workers_list) < 1:
        sys.exit("bench.py: DLM_BENCH_SECONDS must be positive, DLM_BENCH_WORKERS positive counts")
    workloads = env("DLM_BENCH_WORKLOADS", "lock kv").split()
    if any(w not in ("lock", "kv") for w in workloads):
        sys.exit(f"bench.py: unknown workload in {workloads}")
    tag = env("DLM_BENCH_RUN", f"python-{os.getpid()}")

    clients = {}
    closers = []
    try:
        clients["dlm"], close = dlm_ops(dlm_addr, max(workers_list))
        closers.append(close)
        clients["redis-py"], close = redis_ops(redis_addr)
        closers.append(close)
        for workload in workloads:
            for workers in workers_list:
                keys = [f"bench:{tag}:{workload}:{workers}:{i}" for i in range(workers)]
                tokens = [secrets.token_hex(12) for _ in range(workers)]
                results = {}
                for name, ops in clients.items():
                    run(ops[workload], keys, tokens, WARMUP_S, None)
                    results[name] = {"ops": 0, "elapsed": 0.0, "samples": []}
                left = seconds
                while left > 1e-9:
                    piece = min(SLICE_S, left)
                    for name, ops in clients.items():
                        r = results[name]
                        done, took = run(ops[workload], keys, tokens, piece, r["samples"])
                        r["ops"] += done
                        r["elapsed"] += took
                    left -= piece
                for name, r in results.items():
                    r["samples"].sort()
                    line = {
                        "binding": "python",
                        "client": name,
                        "workload": workload,
                        "workers": workers,
                        "ops_per_s": round(r["ops"] / r["elapsed"]) if r["elapsed"] > 0 else 0,
                        "p50_us": percentile_us(r["samples"], 50),
                        "p99_us": percentile_us(r["samples"], 99),
                        "ops": r["ops"],
                        "seconds": round(r["elapsed"], 3),
                    }
                    print(json.dumps(line, separators=(",", ":")), flush=True)
    except (Failed, dlm.DlmError, redis.RedisError) as e:
        sys.exit(f"bench.py: {type(e).__name__}: {e}")
    finally:
        for close in closers:
            close()


if __name__ == "__main__":
    main()
