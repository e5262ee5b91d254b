package dlm

// #include "shim.h"
import "C"

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"time"
)

// MaxLockAll is the most names LockAll takes at once.
const MaxLockAll = 16

// MultiLock is several exclusive locks taken together, all or none, by
// Client.LockAll. Its methods are safe for concurrent use.
//
// Each name is an ordinary lock of its own on the server, with its own
// fencing token (Tokens), driven by its own lease (libdlm's dlm_lease, as
// for a Lock); the MultiLock extends and releases them together. Keep it
// reachable while you hold the locks (usually with `defer
// m.Unlock(ctx)`): one that becomes unreachable is released by a
// finalizer.
type MultiLock struct {
	c      *Client // keeps the client alive while the locks are
	cores  []*lockCore
	names  []string
	tokens []uint64
	lost   *lostSignal
}

// LockAll takes every one of names (1 to MaxLockAll distinct lock names)
// as an exclusive lock, all or none (PROTOCOL.md section 8,
// "Multi-locks"), with the options of Lock (TTL, Wait, AutoRenew).
//
// Without Wait, it makes one attempt and fails with ErrNotOwner, taking
// nothing, if any name is held or awaited by another owner, or already
// held by this Client while another is not. With Wait(d), the set waits in
// every name's queue at once and is granted whole when it is first in
// line on each, so two LockAll calls never deadlock, whatever order they
// name the locks in; it fails with ErrTimeout when d runs out, and
// cancelling ctx aborts the wait at once (ErrCancelled). A name that is a
// semaphore or read/write lock fails with ErrConflict; a server without
// multi-locks (JackrabbitDLM) with ErrBadRequest.
//
// The tokens (one per name, in the order given) are distinct and greater
// than every token granted before. With AutoRenew, each lock is renewed
// in the background.
func (c *Client) LockAll(ctx context.Context, names []string, opts ...LockOption) (*MultiLock, error) {
	cfg := lockConfig{ttl: DefaultTTL}
	for _, o := range opts {
		o(&cfg)
	}
	const op = "lockall"
	label := strings.Join(names, ",")
	if cfg.lockDelay != 0 || cfg.session != nil {
		e := newError(op, label, ErrInvalidArgument, nil)
		e.Message = "a multi-lock is not bound to a session"
		return nil, e
	}
	if err := c.begin(ctx, op, label); err != nil {
		return nil, err
	}
	defer c.mu.RUnlock()

	// The name is only for errors: libdlm sends the names.
	cl := call{kind: C.DLM_CALL_LOCK_ALL, name: label, names: append([]string(nil), names...),
		ttl: millis(cfg.ttl), wait: millis(cfg.wait)}
	if cfg.autoRenew {
		cl.flags |= C.DLM_LOCK_AUTO_RENEW
	}
	waits := cl.wait > 0
	o := getOp()
	sent := nowMs()
	if !waits {
		// Granted after the caller gave up: give every lock back.
		core := c.clientCore
		o.orphan = func(line []byte) { core.releaseOrphanAll(cl, sent, line) }
	}
	if err := c.roundTrip(ctx, op, &cl, o, waits); err != nil {
		c.recycle(o, err)
		if waits && errors.Is(err, ErrClosed) {
			return nil, newError(op, label, ErrCancelled, ErrClosed)
		}
		return nil, err
	}
	leases, f := c.w.newLeases(&cl, o, sent)
	putOp(o)
	if f != nil {
		return nil, f.asError(op, label)
	}
	m := &MultiLock{c: c, names: cl.names, lost: newLostSignal()}
	for i, lease := range leases {
		core, token := c.adopt(names[i], lease, m.lost)
		if cfg.autoRenew {
			core.startRenewal()
		}
		m.cores = append(m.cores, core)
		m.tokens = append(m.tokens, token)
	}
	runtime.SetFinalizer(m, func(m *MultiLock) {
		// Off the finalizer goroutine, as for a Lock.
		go func() {
			for _, lc := range m.cores {
				lc.free(false)
			}
			runtime.KeepAlive(m.c)
		}()
	})
	return m, nil
}

// releaseOrphanAll reads the answer to a multi-lock whose caller gave up
// waiting, and releases every grant if there were any.
func (c *clientCore) releaseOrphanAll(cl call, sent uint64, line []byte) {
	if c.begin(context.Background(), "lockall", cl.name) != nil {
		return
	}
	defer c.mu.RUnlock()
	o := getOp()
	o.line = append(o.line[:0], line...)
	leases, f := c.w.newLeases(&cl, o, sent)
	putOp(o)
	if f != nil {
		return // not granted
	}
	for i, lease := range leases {
		l := &lockCore{c: c, name: cl.names[i], lease: lease, lost: newLostSignal()}
		l.io.Lock()
		_ = l.release(context.Background())
		l.freeLease(false)
		l.io.Unlock()
	}
}

// Names are the lock names, in the order given to LockAll.
func (m *MultiLock) Names() []string { return append([]string(nil), m.names...) }

// Tokens are the fencing tokens, one per name in the order given: pass
// each to whatever its name protects. 0s from a server that gives none.
func (m *MultiLock) Tokens() []uint64 { return append([]uint64(nil), m.tokens...) }

// Token is the fencing token of name, and whether name is one of the set.
func (m *MultiLock) Token(name string) (uint64, bool) {
	for i, n := range m.names {
		if n == name {
			return m.tokens[i], true
		}
	}
	return 0, false
}

// Lost is closed when any of the locks is known to be lost (see
// Lock.Lost).
func (m *MultiLock) Lost() <-chan struct{} { return m.lost.ch }

// Remaining is the time left before the first of the locks expires
// unless extended; 0 once any is lost or they are unlocked.
func (m *MultiLock) Remaining() time.Duration {
	defer runtime.KeepAlive(m)
	least := time.Duration(-1)
	for _, lc := range m.cores {
		info, ok := lc.state()
		if !ok {
			return 0
		}
		left := time.Duration(info.remaining_ms) * time.Millisecond
		if least < 0 || left < least {
			least = left
		}
	}
	if least < 0 {
		return 0
	}
	return least
}

// Extend extends every lock to d from now, each by its token (and makes
// d the TTL auto-renewal uses). It never re-acquires. It tries them all
// and returns the first failure (ErrLockLost for one that expired or was
// released; Lost is then closed).
func (m *MultiLock) Extend(ctx context.Context, d time.Duration) error {
	defer runtime.KeepAlive(m)
	var first error
	for _, lc := range m.cores {
		if err := lc.extend(ctx, d); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// Unlock releases every lock and stops their renewal. It tries them all
// and returns the first failure (ErrLockLost for one that had expired
// first); only the first call does anything, later calls return nil.
// As Lock.Unlock, it releases even if ctx is already done.
func (m *MultiLock) Unlock(ctx context.Context) error {
	_ = ctx
	var first error
	for _, lc := range m.cores {
		if err := lc.unlock(); err != nil && first == nil {
			first = err
		}
	}
	runtime.SetFinalizer(m, nil)
	return first
}

// String describes the locks for logs.
func (m *MultiLock) String() string {
	return "dlm.MultiLock(" + strings.Join(m.names, ",") + ")"
}
