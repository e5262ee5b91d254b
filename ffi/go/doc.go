// Package dlm is the Go client of dlm, a distributed lock manager and
// volatile state coordinator. It wraps libdlm, dlm's native client library
// (written in Rust, with a C ABI), through cgo.
//
//	c, err := dlm.Dial(ctx, "127.0.0.1:37373")
//	if err != nil { ... }
//	defer c.Close()
//
//	l, err := c.Lock(ctx, "nightly-report", dlm.TTL(30*time.Second),
//		dlm.Wait(10*time.Second), dlm.AutoRenew())
//	if err != nil { ... }
//	defer l.Unlock(ctx)
//	// Hand l.Token() to whatever the lock protects.
//
// # How it fits together
//
//	Go code ──> package dlm ──cgo──> libdlm (Rust) ──TCP──> dlm-server
//	              │   ▲                 │    │
//	              │   └── lost / encode ┘    └── its own threads: auto-renewal
//	              └── a goroutine per waiting Lock, watching ctx.Done()
//	                  and calling dlm_cancel_trigger
//
// Every Go value owns one libdlm handle: a Client owns a dlm_client, a Lock
// a dlm_lock. Close (or Unlock) frees it at once; a finalizer frees what
// was forgotten. Callbacks from libdlm (a lost lock, a custom Encoder) come
// back to Go through exported functions, with a cgo.Handle as userdata.
//
// # Concurrency
//
// A Client is safe for concurrent use by many goroutines, and should be
// shared: libdlm's dlm_client is thread-safe and keeps its own pool of
// connections, so calls from several goroutines run side by side. Locks
// belong to the Client's owner ID, not to a goroutine: to make goroutines
// (or processes) exclude each other, give each its own Client. A Lock's
// methods are safe for concurrent use.
//
// # Contexts
//
// Only a waiting Lock (with Wait) blocks for long; cancelling its ctx
// aborts the wait at once (ErrCancelled, wrapping ctx's error) and the
// server drops the waiter. Dial gives up when ctx is done. Every other call
// checks ctx before it starts and is then bounded by the I/O timeout
// (WithIOTimeout), because libdlm cannot abort it midway.
//
// # Errors
//
// Every error is an *Error that says which call failed, carries libdlm's
// message, and unwraps to a sentinel: use errors.Is(err, dlm.ErrNotOwner)
// and so on. libdlm keeps a failure's message per OS thread; this package
// reads it inside the same cgo call, so it always belongs to that failure.
//
// # Values
//
// Put and Get store small values (16 KiB by default) with a TTL, owned by
// the Client's ID, with compare-and-set by revision (PutIf). Values pass
// through an encoder: libdlm's table codec by default (JackrabbitDLM's
// format, readable from every dlm binding and from JackrabbitDLM's Python
// client), libdlm's sealed XChaCha20-Poly1305 encoder (WithSealedKey), or
// a Go Encoder (WithEncoder).
//
// # Building
//
// The package links libdlm statically from the repository's
// target/debug/libdlm.a, so build it once first, from the repository root:
//
//	cargo build -p libdlm
//
// With -tags dlm_dynamic it links target/debug/libdlm.so instead. Build
// with -tags debug to force a garbage collection at every C call, which
// turns a missing runtime.KeepAlive into a crash in tests. See README.md.
package dlm
