"""A chaos client through the dlm Python package (python/, PyO3 over the
`dlm` crate, failover on), run by dlm-chaos (tests/src/chaos/bindings.rs).

It speaks JSON lines with dlm-chaos: on stdout what it did (grants,
key/value operations, call durations), and for each write to the guarded
resource, or to ask whether to stop, a request that dlm-chaos answers on
stdin. Times are nanoseconds of CLOCK_MONOTONIC since --origin (the run's
clock, shared with dlm-chaos). A call that failed after it may have been
sent is reported as indeterminate.
"""

import argparse
import json
import random
import sys
import time

import dlm


def now(origin):
    return time.monotonic_ns() - origin


def send(msg):
    sys.stdout.write(json.dumps(msg) + "\n")
    sys.stdout.flush()


def ask(msg):
    send(msg)
    line = sys.stdin.readline()
    if not line:
        raise SystemExit(0)
    return json.loads(line)


# Refusals: the request was certainly not applied.
REFUSED = (dlm.NotOwnerError, dlm.BadRequestError, dlm.InvalidArgumentError, dlm.NoMemoryError)


def raw():
    # Values stored as their text: the protocol clients share the keys.
    return dlm.FunctionEncoder(lambda v: v.decode("utf-8"), lambda s: s)


def lock_worker(a, rng):
    ttl = a.ttl_ms / 1000.0
    ttl_ns = a.ttl_ms * 1_000_000
    attempt = 0
    while not ask({"t": "stop?"})["stop"]:
        attempt += 1
        name = rng.choice(a.names)
        owner = "py%d-%d" % (a.client, attempt)
        wait = rng.uniform(0.1, 0.6) if rng.random() < 0.7 else None
        try:
            client = dlm.Client(a.servers, client_id=owner, timeout=a.timeout,
                                connect_timeout=0.3, encoder=raw())
        except dlm.DlmError:
            time.sleep(0.05)
            continue
        call = now(a.origin)
        try:
            held = client.lock(name, ttl=ttl, wait=wait, auto_renew=False).acquire()
        except (dlm.NotOwnerError, dlm.TimeoutError):
            held = None
        except REFUSED:
            held = None
        except dlm.DlmError:
            send({"t": "unknown_lock"})
            held = None
        ret = now(a.origin)
        send({"t": "call", "what": "Lock", "call": call, "ret": ret,
              "timeout": int(((wait or 0) + a.wait_slack + a.timeout) * 1e9)})
        if held is None:
            client.close()
            time.sleep(rng.uniform(0.02, 0.08))
            continue
        token = held.token or 0
        lease_end = call + ttl_ns
        for _ in range(rng.randrange(1, 5)):
            if not ask({"t": "write", "name": name, "token": token, "lease_end": lease_end})["ran"]:
                break
            time.sleep(rng.uniform(0, ttl / 3))
            if rng.random() < 0.5:
                c0 = now(a.origin)
                lost = False
                try:
                    held.extend(ttl)
                    lease_end = max(lease_end, c0 + ttl_ns)
                except (dlm.LockLostError, dlm.NotOwnerError):
                    lease_end = min(lease_end, c0)
                    lost = True
                except dlm.DlmError:
                    pass
                send({"t": "call", "what": "Extend", "call": c0, "ret": now(a.origin),
                      "timeout": int(a.timeout * 1e9)})
                if lost:
                    break
        if rng.random() < 0.3:
            # The whole lease used: a last write just before it runs out.
            margin = rng.randrange(1, 30) * 1_000_000
            left = lease_end - now(a.origin) - margin
            if left > 0:
                time.sleep(left / 1e9)
                ask({"t": "write", "name": name, "token": token, "lease_end": lease_end})
        c0 = now(a.origin)
        send({"t": "grant", "owner": owner, "name": name, "token": token, "call": call,
              "ret": ret, "lease_end": min(lease_end, c0)})
        try:
            held.release()
        except dlm.DlmError:
            pass
        send({"t": "call", "what": "Unlock", "call": c0, "ret": now(a.origin),
              "timeout": int(a.timeout * 1e9)})
        client.close()


def kv_worker(a, rng):
    client = dlm.Client(a.servers, client_id=a.kv_owner, timeout=a.timeout,
                        connect_timeout=0.3, encoder=raw())
    n = 0
    seen_rev = 0
    while not ask({"t": "stop?"})["stop"]:
        n += 1
        key = rng.choice(a.keys)
        value = "p%dx%d" % (a.client, n)
        roll = rng.randrange(100)
        op = {"t": "kv", "key": key}
        if roll < 30:
            op.update(op="put", value=value)
        elif roll < 65:
            op.update(op="get")
        elif roll < 95:
            op.update(op="cas", value=value, expect=0 if rng.random() < 0.2 else seen_rev)
        else:
            op.update(op="erase")
        call = now(a.origin)
        try:
            if op["op"] == "put":
                op.update(status="Done", out_rev=client.put(key, value, ttl=3000))
            elif op["op"] == "cas":
                try:
                    op.update(status="Done",
                              out_rev=client.put(key, value, ttl=3000, revision=op["expect"]))
                except dlm.ConflictError as e:
                    op.update(status="Conflict", out_rev=e.revision)
            elif op["op"] == "get":
                v = client.get(key)
                if v is None:
                    op.update(status="NotFound")
                else:
                    op.update(status="Done", out_value=v.text, out_rev=v.revision)
            else:
                op.update(status="Done" if client.erase(key) else "NotFound")
        except REFUSED:
            continue
        except dlm.DlmError:
            op.update(unknown=True)
        op.update(call=call, ret=now(a.origin))
        if "out_rev" in op:
            seen_rev = op["out_rev"]
        send(op)
        send({"t": "call", "what": "key/value", "call": call, "ret": op["ret"],
              "timeout": int(a.timeout * 1e9)})
        time.sleep(rng.uniform(0, 0.02))
    client.close()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--servers", required=True)
    p.add_argument("--role", choices=["lock", "kv"], required=True)
    p.add_argument("--client", type=int, required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--ttl-ms", type=int, required=True)
    p.add_argument("--origin", type=int, required=True)
    p.add_argument("--timeout", type=float, required=True)
    p.add_argument("--wait-slack", type=float, required=True)
    p.add_argument("--kv-owner", required=True)
    p.add_argument("--keys", type=lambda s: s.split(","), required=True)
    p.add_argument("--names", type=lambda s: s.split(","), required=True)
    a = p.parse_args()
    rng = random.Random(a.seed * 10007 + a.client)
    if a.role == "lock":
        lock_worker(a, rng)
    else:
        kv_worker(a, rng)


if __name__ == "__main__":
    main()
