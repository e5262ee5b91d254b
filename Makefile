# The two commands a user needs are in README.md; everything else is here.
.PHONY: test setup bench bench-cluster bench-bindings fuzz header deb chaos
test:
	scripts/test.sh

setup:
	scripts/setup.sh

# Regenerate ffi/libdlm/include/dlm.h from ffi/libdlm/src (cbindgen, pinned version)
# and ffi/go/errors_gen.go from dlm-core's client::ErrorKind.
header:
	DLM_BLESS=1 cargo test -p libdlm --test header

# dlm-server against Redis and the floor server, one table (needs redis-server;
# scripts/bench.sh installs it).
bench:
	scripts/bench.sh

# 3-node dlm clusters (durable and in memory) and a single dlm-server beside
# a private 3-member etcd cluster, throughput and failover, with the targets
# of issue 13 (installs etcd and etcd's Go client if needed; a few minutes;
# not part of `make test`; `scripts/bench-cluster.sh --quick` is the smoke run).
bench-cluster:
	scripts/bench-cluster.sh

# Each binding (C, Rust, ...) against its language's best-known Redis client,
# one table (bench/bindings/README.md; installs redis-server and hiredis).
bench-bindings:
	scripts/bench-bindings.sh

# Long randomized runs: the server simulation over ~200,000 seeds, the
# engine model, and cargo-fuzz where a nightly toolchain has it.
fuzz:
	scripts/fuzz.sh

# The Debian package: dlm-server with its systemd unit, the dlm command,
# libdlm with its headers and pkg-config file (scripts/make-deb.sh;
# target/deb/dlm_VERSION_ARCH.deb).
deb:
	scripts/make-deb.sh

# The fault-injection suite (issue 15): dlm clusters of 3 and 5 members, of
# one, in memory, and the plain in-memory server, under kills, pauses,
# partitions, delays, cut data-dir tails and clock jumps; mutual exclusion at
# a fenced resource and linearizability (porcupine) checked. CHAOS_DURATION
# seconds per run (default 300, five runs); `scripts/chaos.sh --quick` is
# the short run `make test` makes.
chaos:
	scripts/chaos.sh
