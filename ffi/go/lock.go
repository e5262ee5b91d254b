package dlm

// #include "shim.h"
import "C"

import (
	"context"
	"errors"
	"runtime"
	"runtime/cgo"
	"sync"
	"time"
)

// Lock is a held lock: libdlm's dlm_lock. Its methods are safe for
// concurrent use.
//
// Keep the *Lock reachable for as long as you hold the lock (usually with
// `defer l.Unlock(ctx)`): a Lock that becomes unreachable is released by a
// finalizer, at a time of the garbage collector's choosing.
type Lock struct {
	c     *Client // keeps the client alive (libdlm frees locks first)
	core  *lockCore
	name  string
	token uint64
	lost  *lostSignal
}

// lockCore owns the dlm_lock pointer. The Client's registry points at it,
// not at the Lock, so an unreachable Lock can still be finalized.
type lockCore struct {
	// mu is held shared by every call on ptr and exclusively to free it.
	mu  sync.RWMutex
	ptr *C.dlm_lock // nil once freed
	// byClose says the Client's Close freed it (calls then fail with
	// ErrClosed rather than ErrLockLost).
	byClose bool
	// handle is the lost callback's userdata, valid until ptr is freed.
	handle cgo.Handle
	reg    *registry
}

// lptr returns the C pointer for a call; see Client.cptr.
func (l *lockCore) lptr() *C.dlm_lock {
	p := l.ptr
	maybeGC()
	return p
}

// free frees the dlm_lock (releasing the lock if it is still held, best
// effort) and its callback handle. Idempotent.
func (l *lockCore) free(byClose bool) {
	l.mu.Lock()
	freed := l.freeLocked(byClose)
	l.mu.Unlock()
	if freed {
		l.reg.removeLock(l)
	}
}

// freeLocked is free with l.mu held; it says whether it freed anything
// (the caller then removes l from the registry, after unlocking l.mu).
func (l *lockCore) freeLocked(byClose bool) bool {
	if l.ptr == nil {
		return false
	}
	// dlm_lock_free stops the renewal thread before returning, so the
	// lost callback cannot run after this: the handle may go.
	C.dlm_lock_free(l.lptr())
	l.ptr = nil
	l.byClose = byClose
	l.handle.Delete()
	return true
}

// lostSignal is what the lost callback's handle points at.
type lostSignal struct {
	once sync.Once
	ch   chan struct{}
}

func (s *lostSignal) fire() { s.once.Do(func() { close(s.ch) }) }

//export goDlmLost
func goDlmLost(h C.uintptr_t) {
	// Runs on libdlm's renewal thread (or in an Extend that found the lock
	// gone); it must not call back into the lock, and does not.
	cgo.Handle(h).Value().(*lostSignal).fire()
}

// Lock acquires name.
//
// Without Wait, it makes one attempt and fails with ErrNotOwner if another
// owner holds the lock. With Wait(d), it queues in the server's fair queue
// for up to d and fails with ErrTimeout when that runs out; cancelling ctx
// (or its deadline passing) aborts the wait at once with ErrCancelled, and
// the server drops the waiter from its queue. libdlm gives each waiting
// lock a connection of its own.
//
// The lock is held by the Client's owner ID, not by the goroutine: see
// Client. Pass Token() to whatever the lock protects.
func (c *Client) Lock(ctx context.Context, name string, opts ...LockOption) (*Lock, error) {
	cfg := lockConfig{ttl: DefaultTTL}
	for _, o := range opts {
		o(&cfg)
	}
	return c.lock(ctx, "lock", name, cfg)
}

// TryLock makes one attempt at name (any Wait option is ignored). It
// returns ok == false, with a nil error, if another owner holds the lock.
func (c *Client) TryLock(ctx context.Context, name string, opts ...LockOption) (l *Lock, ok bool, err error) {
	cfg := lockConfig{ttl: DefaultTTL}
	for _, o := range opts {
		o(&cfg)
	}
	cfg.wait = 0
	l, err = c.lock(ctx, "trylock", name, cfg)
	switch {
	case err == nil:
		return l, true, nil
	case errors.Is(err, ErrNotOwner):
		return nil, false, nil
	default:
		return nil, false, err
	}
}

func (c *Client) lock(ctx context.Context, op, name string, cfg lockConfig) (*Lock, error) {
	if err := c.begin(ctx, op, name); err != nil {
		return nil, err
	}
	defer c.mu.RUnlock()

	var flags C.uint32_t
	if cfg.autoRenew {
		flags |= C.DLM_LOCK_AUTO_RENEW
	}
	lost := &lostSignal{ch: make(chan struct{})}
	handle := cgo.NewHandle(lost)

	// A waiting lock gets a cancel handle, triggered by a goroutine that
	// watches ctx (context.AfterFunc) or by Close. libdlm never reuses a
	// connection that carried a cancel handle, so one-shot attempts go
	// without.
	var cancel *C.dlm_cancel
	if cfg.wait > 0 {
		if s := C.dlm_cancel_new(&cancel); s != C.DLM_OK {
			handle.Delete()
			return nil, statusError(op, name, s, nil)
		}
		if !c.reg.addCancel(cancel) {
			C.dlm_cancel_free(cancel)
			handle.Delete()
			return nil, newError(op, name, ErrClosed, nil)
		}
		triggered := make(chan struct{})
		stop := context.AfterFunc(ctx, func() {
			C.dlm_cancel_trigger(cancel)
			close(triggered)
		})
		defer func() {
			if !stop() {
				<-triggered // the trigger ran or is running: let it finish
			}
			c.reg.removeCancel(cancel)
			C.dlm_cancel_free(cancel)
		}()
	}

	var out *C.dlm_lock
	var report C.gdlm_err
	s := C.gdlm_client_lock(c.cptr(), textOf(name), C.size_t(len(name)),
		C.uint64_t(millis(cfg.ttl)), C.uint64_t(millis(cfg.wait)), flags, cancel,
		C.uintptr_t(handle), &out, &report)
	runtime.KeepAlive(c)
	if s != C.DLM_OK {
		handle.Delete()
		e := statusError(op, name, s, &report)
		if s == C.DLM_ERR_CANCELLED {
			if err := ctx.Err(); err != nil {
				e.cause = err
			} else {
				e.cause = ErrClosed
			}
		}
		return nil, e
	}
	var token C.uint64_t
	C.dlm_lock_token(out, &token)
	core := &lockCore{ptr: out, handle: handle, reg: c.reg}
	c.reg.addLock(core)
	l := &Lock{c: c, core: core, name: name, token: uint64(token), lost: lost}
	runtime.SetFinalizer(l, func(l *Lock) {
		// Releasing is a network call: keep it off the finalizer
		// goroutine. The closure keeps l.c alive until it is done.
		go func() {
			l.core.free(false)
			runtime.KeepAlive(l.c)
		}()
	})
	return l, nil
}

// Name is the lock's name.
func (l *Lock) Name() string { return l.name }

// Token is the grant's fencing token: every grant gets a token greater than
// every earlier one. Pass it to whatever the lock protects so it can refuse
// a holder whose lock has expired. 0 from a server that gives no tokens
// (JackrabbitDLM): nothing can fence then, and extensions are plain
// re-locks, sent only before the lock's deadline.
func (l *Lock) Token() uint64 { return l.token }

// Lost is closed when the lock is known to be lost: an auto-renewed lock
// whose renewal failed until its deadline, or an Extend or Unlock that
// found it gone. A lock without AutoRenew is found lost by the first call
// on it (Remaining, Extend, Unlock) after its deadline. It is never closed
// by a successful Unlock.
func (l *Lock) Lost() <-chan struct{} { return l.lost.ch }

// Remaining is the time left before the lock expires unless extended, by
// this process's clock (never more than the server's); 0 once lost or
// unlocked.
func (l *Lock) Remaining() time.Duration {
	l.core.mu.RLock()
	defer l.core.mu.RUnlock()
	if l.core.ptr == nil {
		return 0
	}
	var ms C.uint64_t
	s := C.dlm_lock_remaining_ms(l.core.lptr(), &ms)
	runtime.KeepAlive(l)
	if s != C.DLM_OK {
		return 0
	}
	return time.Duration(ms) * time.Millisecond
}

// Extend extends this grant to d from now (and makes d the TTL auto-renewal
// uses). It never re-acquires: if the lock expired, was released, or is
// held by anyone else, it fails with ErrLockLost and Lost is closed. ctx is
// checked before the call, which is bounded by the I/O timeout.
func (l *Lock) Extend(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return newError("extend", l.name, ErrCancelled, err)
	}
	l.core.mu.RLock()
	defer l.core.mu.RUnlock()
	if l.core.ptr == nil {
		if l.core.byClose {
			return newError("extend", l.name, ErrClosed, nil)
		}
		return newError("extend", l.name, ErrLockLost, nil)
	}
	var report C.gdlm_err
	s := C.gdlm_lock_extend(l.core.lptr(), C.uint64_t(millis(d)), &report)
	runtime.KeepAlive(l)
	if s != C.DLM_OK {
		if s == C.DLM_ERR_LOCK_LOST {
			l.lost.fire()
		}
		return statusError("extend", l.name, s, &report)
	}
	return nil
}

// Unlock releases the lock and stops its auto-renewal. It is idempotent:
// only the first call does anything and reports the outcome (ErrLockLost
// if the lock had expired first, ErrUnavailable if the server could not
// be reached — libdlm does not retry a release); later calls return nil.
// After the Client is closed it returns ErrClosed.
//
// Unlock releases even if ctx is already done: it is one round trip,
// bounded by the I/O timeout, and a lock left held because a context ended
// would only keep others waiting until its TTL runs out.
func (l *Lock) Unlock(ctx context.Context) error {
	_ = ctx
	l.core.mu.Lock()
	if l.core.ptr == nil {
		byClose := l.core.byClose
		l.core.mu.Unlock()
		if byClose {
			return newError("unlock", l.name, ErrClosed, nil)
		}
		return nil
	}
	var report C.gdlm_err
	s := C.gdlm_lock_release(l.core.lptr(), &report)
	runtime.KeepAlive(l)
	var err error
	if s != C.DLM_OK {
		if s == C.DLM_ERR_LOCK_LOST {
			l.lost.fire()
		}
		err = statusError("unlock", l.name, s, &report)
	}
	freed := l.core.freeLocked(false)
	l.core.mu.Unlock()
	if freed {
		l.core.reg.removeLock(l.core)
	}
	runtime.SetFinalizer(l, nil)
	return err
}

// String describes the lock for logs (never anything secret).
func (l *Lock) String() string {
	return "dlm.Lock(" + l.name + ")"
}
