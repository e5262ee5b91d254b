// Package dlm is the Go client of dlm, a distributed lock manager and
// volatile state coordinator. It does its I/O in Go (net.Conn, the
// netpoller, contexts) and calls libdlm, dlm's native client library
// (Rust, with a C ABI), through cgo only for the client's rules: writing
// requests, reading answers, and the lease of a held lock.
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
// Semaphore, ReadLock and WriteLock take one hold of a counting semaphore
// or a read/write lock, each a *Lock with its own token; RWMutex adapts a
// read/write lock to sync.RWMutex's shape (RLocker is a sync.Locker).
//
// LockAll takes several exclusive locks all or none (a *MultiLock, one
// token per name), waiting in every name's queue at once without risk of
// deadlock.
//
// Client.Session opens a server session whose locks (Session.Lock, with
// an optional LockDelay) end with it; Client.Watch and Client.WatchName
// deliver every change of a prefix or a name on a channel, resumable by
// revision.
//
// # How it fits together
//
//	Go code ──> package dlm ──TCP (net.Conn)──> dlm-server
//	              │    └── reader goroutines parked on the netpoller;
//	              │        a renewal goroutine per AutoRenew lock
//	              └──cgo──> libdlm's dlm_wire (request lines out, typed
//	                        answers in) and dlm_lease (a lock's lease):
//	                        short calls, no socket, no sleep
//
// A Client owns one dlm_wire and each Lock one dlm_lease. Close (or
// Unlock) frees it at once; a finalizer frees what was forgotten.
//
// # Concurrency
//
// A Client is safe for concurrent use by many goroutines, and should be
// shared: calls from many goroutines are pipelined on a few shared
// connections (one write and one read carry many requests), and a lock
// waiting in the server's queue gets a connection of its own. Locks belong
// to the Client's owner ID, not to a goroutine: to make goroutines (or
// processes) exclude each other, give each its own Client. A Lock's
// methods are safe for concurrent use.
//
// # Contexts
//
// Every call honours its context: when it ends, the call returns
// ErrCancelled (wrapping ctx's error). Cancelling a waiting Lock (with
// Wait) closes the wait's connection, so the server drops the waiter; a
// lock without Wait granted after its caller gave up is released. No
// answer may take longer than the I/O timeout (WithIOTimeout) beyond a
// lock's Wait. Unlock releases even with a finished context.
//
// # Errors
//
// Every error is an *Error that says which call failed, carries what there
// is to say beyond its kind (why a connection failed, the server's reason,
// libdlm's detail), and unwraps to a sentinel: use errors.Is(err,
// dlm.ErrNotOwner) and so on. libdlm keeps a failure's detail per OS
// thread; this package reads it inside the same cgo call, so it always
// belongs to that failure.
//
// # Values
//
// Put and Get store small values (16 KiB by default) with a TTL, owned by
// the Client's ID, with compare-and-set by revision (PutIf). Values pass
// through an encoder: libdlm's table codec by default (JackrabbitDLM's
// format, readable from every dlm binding and from JackrabbitDLM's Python
// client), libdlm's sealed XChaCha20-Poly1305 encoder (WithSealedKey), or
// a Go Encoder (WithEncoder). Readers and ReadersAny share a value with
// other identities or with every client (writing stays the owner's), and
// Value.Owner says whose value Get read:
//
//	_, err = c.Put(ctx, "cfg", []byte("v1"), time.Hour, dlm.Readers("alice"))
//
// # Building
//
// The package links an installed libdlm through pkg-config (#cgo
// pkg-config: dlm), statically by default, so build and install it first,
// from the repository root:
//
//	scripts/install-libdlm.sh /opt/dlm
//	export PKG_CONFIG_PATH=/opt/dlm/lib/pkgconfig
//
// With -tags dlm_dynamic it links the installed libdlm.so instead, and
// with -tags dlm_intree the repository's target/release/libdlm.a (for
// developing libdlm and this package together). Build with -tags debug to
// force a garbage collection at every C call, which turns a missing
// runtime.KeepAlive into a crash in tests. See README.md.
package dlm
