package dlm

// #include "shim.h"
import "C"

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"time"
)

// Lock is a held lock. Its methods are safe for concurrent use.
//
// Its rules — when the grant happened, its deadline, when to renew and
// retry, when it is lost — are dlm-core's lease (libdlm's dlm_lease), the
// same state machine every dlm client drives; the Lock only drives it,
// with Go's clock and timers and the Client's connections.
//
// Keep the *Lock reachable for as long as you hold the lock (usually with
// `defer l.Unlock(ctx)`): a Lock that becomes unreachable is released by a
// finalizer, at a time of the garbage collector's choosing.
type Lock struct {
	c     *Client // keeps the client alive while the lock is
	core  *lockCore
	name  string
	token uint64
}

// lockCore owns the lease. The Client's registry and the renewal
// goroutine point at it, not at the Lock, so an unreachable Lock can
// still be finalized.
type lockCore struct {
	c    *clientCore
	name string

	// io is held while a request for this lock is in flight: one at a
	// time, as the lease wants.
	io sync.Mutex
	// mu guards lease (libdlm's lease is not thread-safe) and byClose.
	mu    sync.Mutex
	lease *C.dlm_lease // nil once freed
	// byClose says the Client's Close freed it (calls then fail with
	// ErrClosed rather than ErrLockLost).
	byClose bool

	// lost is the Lost channel: the lock's own, or its multi-lock's,
	// shared by every name of the set.
	lost     *lostSignal
	stop     chan struct{} // closed to stop the renewal goroutine
	stopOnce sync.Once
}

// lostSignal is the Lost channel, closed once.
type lostSignal struct {
	once sync.Once
	ch   chan struct{}
}

func (s *lostSignal) fire() { s.once.Do(func() { close(s.ch) }) }

func newLostSignal() *lostSignal { return &lostSignal{ch: make(chan struct{})} }

// lptr returns the C pointer for a call; see wire.wptr.
func (l *lockCore) lptr() *C.dlm_lease {
	p := l.lease
	maybeGC()
	return p
}

// noteLost closes Lost if the lease says the lock is lost.
func (l *lockCore) noteLost(info *C.dlm_lease_info) {
	if info.flags&C.DLM_LEASE_LOST != 0 {
		l.lost.fire()
	}
}

// state advances the lease to now and returns its state (ok is false once
// the lease is freed). l.mu must not be held.
func (l *lockCore) state() (info C.dlm_lease_info, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lease == nil {
		return info, false
	}
	C.gdlm_lease_state(l.lptr(), C.uint64_t(nowMs()), &info)
	runtime.KeepAlive(l)
	l.noteLost(&info)
	return info, true
}

// exchange sends the request the lease wants sent, if any, and hands it
// the answer (or the failure to get one). It says whether it sent one,
// and the error of that request for call op. The caller holds l.io.
func (l *lockCore) exchange(ctx context.Context, op string) (bool, error) {
	l.mu.Lock()
	if l.lease == nil {
		l.mu.Unlock()
		return false, nil
	}
	// The call of the request the lease wants sent: an extension ends by
	// the lease's deadline, a release carries its grant's request ID.
	fc, _, f := l.c.fo.startLease(l.lptr(), l.c.w, l.c.t.ioTimeout)
	runtime.KeepAlive(l)
	l.mu.Unlock()
	if f != nil {
		return false, f.asError(op, l.name)
	}
	if fc == nil {
		return false, nil
	}
	o := getOp()
	err := l.c.t.do(ctx, o, false, fc)
	fc.free()

	l.mu.Lock()
	defer l.mu.Unlock()
	var info C.dlm_lease_info
	now := C.uint64_t(nowMs())
	if err != nil {
		C.gdlm_lease_failed(l.lptr(), now, &info)
		runtime.KeepAlive(l)
		l.noteLost(&info)
		e := l.c.transportError(ctx, op, l.name, err)
		l.c.recycle(o, e)
		return true, e
	}
	var done C.dlm_lease_done
	s := C.gdlm_lease_handle_response(l.lptr(), now,
		(*C.char)(bytesPtr(o.line)), C.size_t(len(o.line)), &done, &info, &o.report)
	runtime.KeepAlive(l)
	l.noteLost(&info)
	if s != C.DLM_OK {
		f := takeFailure(s, &o.report)
		putOp(o)
		return true, f.asError(op, l.name)
	}
	putOp(o)
	return true, nil
}

// release asks the lease to release the grant and sends the release.
// The caller holds l.io.
func (l *lockCore) release(ctx context.Context) error {
	l.mu.Lock()
	if l.lease == nil {
		l.mu.Unlock()
		return nil
	}
	var queued C.bool
	C.dlm_lease_release(l.lptr(), C.uint64_t(nowMs()), &queued)
	runtime.KeepAlive(l)
	l.mu.Unlock()
	if !queued {
		return nil
	}
	_, err := l.exchange(ctx, "unlock")
	return err
}

// free releases the lock (best effort) if it is still held, and frees
// its lease. Idempotent.
func (l *lockCore) free(byClose bool) {
	l.io.Lock()
	_ = l.release(context.Background())
	freed := l.freeLease(byClose)
	l.io.Unlock()
	if freed {
		l.stopRenewal()
		l.c.locks.remove(l)
	}
}

// freeLease frees the lease if not yet freed (the caller holds l.io).
func (l *lockCore) freeLease(byClose bool) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lease == nil {
		return false
	}
	C.dlm_lease_free(l.lptr())
	l.lease = nil
	l.byClose = byClose
	return true
}

func (l *lockCore) stopRenewal() {
	if l.stop != nil {
		l.stopOnce.Do(func() { close(l.stop) })
	}
}

// gone is the error of a call on a freed lease.
func (l *lockCore) gone(op string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.byClose {
		return newError(op, l.name, ErrClosed, nil)
	}
	return newError(op, l.name, ErrLockLost, nil)
}

// renew is the goroutine of an auto-renewed lock: it sleeps until the
// lease's next timeout and sends what the lease asks for, until the lock
// is released or lost.
func (l *lockCore) renew() {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		l.io.Lock()
		sent, _ := l.exchange(context.Background(), "renew")
		l.io.Unlock()
		if sent {
			continue
		}
		info, ok := l.state()
		if !ok || info.flags&C.DLM_LEASE_HAS_TIMEOUT == 0 {
			return // released or lost
		}
		if info.flags&C.DLM_LEASE_HAS_REQUEST != 0 {
			continue
		}
		timer.Reset(time.Until(msTime(uint64(info.next_timeout_ms))))
		select {
		case <-timer.C:
		case <-l.stop:
			return
		}
	}
}

// Lock acquires name.
//
// Without Wait, it makes one attempt and fails with ErrNotOwner if another
// owner holds the lock. With Wait(d), it queues in the server's fair queue
// for up to d and fails with ErrTimeout when that runs out; cancelling ctx
// (or its deadline passing) aborts the wait at once with ErrCancelled, and
// the server drops the waiter from its queue. A waiting lock has a
// connection of its own.
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

	kind := cfg.kind
	if kind == 0 {
		kind = C.DLM_CALL_LOCK
	}
	cl := call{kind: kind, name: name, ttl: millis(cfg.ttl), wait: millis(cfg.wait), permits: cfg.permits}
	if cfg.autoRenew {
		cl.flags |= C.DLM_LOCK_AUTO_RENEW
	}
	switch {
	case cfg.lockDelay != 0 && cfg.session == nil:
		e := newError(op, name, ErrInvalidArgument, nil)
		e.Message = "LockDelay binds a lock to a Session: use Session.Lock"
		return nil, e
	case cfg.lockDelay < 0 || cfg.lockDelay > MaxLockDelay:
		e := newError(op, name, ErrInvalidArgument, nil)
		e.Message = "a lock-delay is at most 60 s"
		return nil, e
	case cfg.session != nil:
		cl.flags |= C.DLM_LOCK_SESSION
		cl.delay = millis(cfg.lockDelay)
	}
	waits := cl.wait > 0
	o := getOp()
	sent := nowMs()
	if !waits || cfg.session != nil {
		// Granted after the caller gave up (its ctx ended): give it back
		// rather than leave it held until its TTL. (A wait elsewhere has
		// a connection of its own, closed when it is given up, which
		// takes the waiter out of the queue; a session's cannot be.)
		core := c.clientCore
		o.orphan = func(line []byte) { core.releaseOrphan(cl, sent, line) }
	}
	var err error
	if cfg.session != nil {
		err = cfg.session.roundTrip(ctx, op, &cl, o)
	} else {
		err = c.roundTrip(ctx, op, &cl, o, waits)
	}
	if err != nil {
		c.recycle(o, err)
		if waits && errors.Is(err, ErrClosed) {
			// Close cancelled the wait.
			return nil, newError(op, name, ErrCancelled, ErrClosed)
		}
		return nil, err
	}
	lease, f := c.w.newLease(&cl, o, sent)
	putOp(o)
	if f != nil {
		return nil, f.asError(op, name)
	}
	core, token := c.adopt(name, lease, newLostSignal())
	if cfg.session != nil {
		cfg.session.bind(core)
	}
	if cfg.autoRenew {
		core.startRenewal()
	}
	l := &Lock{c: c, core: core, name: name, token: token}
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

// adopt makes the lockCore of a new lease, registered with the Client so
// that Close releases it, and returns it with its fencing token.
func (c *clientCore) adopt(name string, lease *C.dlm_lease, lost *lostSignal) (*lockCore, uint64) {
	core := &lockCore{c: c, name: name, lease: lease, lost: lost}
	var info C.dlm_lease_info
	C.dlm_lease_inspect(core.lease, C.uint64_t(nowMs()), &info)
	c.locks.add(core)
	return core, uint64(info.token)
}

// startRenewal starts the lock's renewal goroutine.
func (l *lockCore) startRenewal() {
	l.stop = make(chan struct{})
	go l.renew()
}

// Semaphore takes one permit of the counting semaphore name of permits
// permits (at least 1), with the options of Lock (TTL, Wait, AutoRenew).
//
// Every acquisition is a hold of its own, with its own fencing token
// (Token), extended and released by its own *Lock: the same Client may
// hold several permits. Without Wait, it fails with ErrNotOwner if no
// permit is free; with Wait it queues first come, first served. The size
// is fixed by the first use while anyone holds or waits: another size, or
// a name that is another kind of lock, fails with ErrConflict (the
// message says what the name is).
func (c *Client) Semaphore(ctx context.Context, name string, permits uint32, opts ...LockOption) (*Lock, error) {
	cfg := lockConfig{ttl: DefaultTTL}
	for _, o := range opts {
		o(&cfg)
	}
	cfg.kind, cfg.permits = C.DLM_CALL_SEMAPHORE, permits
	return c.lock(ctx, "semaphore", name, cfg)
}

// ReadLock takes the shared (read) side of the read/write lock name, with
// the options of Lock: held beside other readers, never beside a writer.
// Waiters form one first-come, first-served queue, so a writer that waits
// holds back every reader that comes after it (writers are not starved).
// Each read hold has its own fencing token. A name that is another kind
// of lock fails with ErrConflict. See also RWMutex.
func (c *Client) ReadLock(ctx context.Context, name string, opts ...LockOption) (*Lock, error) {
	cfg := lockConfig{ttl: DefaultTTL}
	for _, o := range opts {
		o(&cfg)
	}
	cfg.kind = C.DLM_CALL_READ_LOCK
	return c.lock(ctx, "readlock", name, cfg)
}

// WriteLock takes the exclusive (write) side of the read/write lock name,
// with the options of Lock: held alone. A name that is another kind of
// lock fails with ErrConflict.
func (c *Client) WriteLock(ctx context.Context, name string, opts ...LockOption) (*Lock, error) {
	cfg := lockConfig{ttl: DefaultTTL}
	for _, o := range opts {
		o(&cfg)
	}
	cfg.kind = C.DLM_CALL_WRITE_LOCK
	return c.lock(ctx, "writelock", name, cfg)
}

// releaseOrphan reads the answer to a lock request whose caller gave up
// waiting, and releases the grant if there was one.
func (c *clientCore) releaseOrphan(cl call, sent uint64, line []byte) {
	if c.begin(context.Background(), "lock", cl.name) != nil {
		return
	}
	defer c.mu.RUnlock()
	o := getOp()
	o.line = append(o.line[:0], line...)
	lease, f := c.w.newLease(&cl, o, sent)
	putOp(o)
	if f != nil {
		return // not granted
	}
	l := &lockCore{c: c, name: cl.name, lease: lease, lost: newLostSignal()}
	l.io.Lock()
	_ = l.release(context.Background())
	l.freeLease(false)
	l.io.Unlock()
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
func (l *Lock) Lost() <-chan struct{} { return l.core.lost.ch }

// Remaining is the time left before the lock expires unless extended, by
// this process's clock (never more than the server's); 0 once lost or
// unlocked.
func (l *Lock) Remaining() time.Duration {
	info, ok := l.core.state()
	runtime.KeepAlive(l)
	if !ok {
		return 0
	}
	return time.Duration(info.remaining_ms) * time.Millisecond
}

// Extend extends this grant to d from now (and makes d the TTL auto-renewal
// uses). It never re-acquires: if the lock expired, was released, or is
// held by anyone else, it fails with ErrLockLost and Lost is closed.
// Cancelling ctx stops waiting for the answer (ErrCancelled); the lease
// then counts the extension as failed.
func (l *Lock) Extend(ctx context.Context, d time.Duration) error {
	defer runtime.KeepAlive(l)
	return l.core.extend(ctx, d)
}

// extend extends the grant (see Lock.Extend).
func (lc *lockCore) extend(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return newError("extend", lc.name, ErrCancelled, err)
	}
	lc.io.Lock()
	defer lc.io.Unlock()
	lc.mu.Lock()
	if lc.lease == nil {
		lc.mu.Unlock()
		return lc.gone("extend")
	}
	o := getOp()
	s := C.gdlm_lease_extend(lc.lptr(), C.uint64_t(nowMs()), C.uint64_t(millis(d)), &o.report)
	lc.mu.Unlock()
	if s != C.DLM_OK {
		f := takeFailure(s, &o.report)
		putOp(o)
		lc.state() // closes Lost if the extension found the lock lost
		return f.asError("extend", lc.name)
	}
	putOp(o)
	sent, err := lc.exchange(ctx, "extend")
	if !sent && err == nil {
		// Lost before it could be sent.
		lc.state()
		return newError("extend", lc.name, ErrLockLost, nil)
	}
	return err
}

// Unlock releases the lock and stops its auto-renewal. It is idempotent:
// only the first call does anything and reports the outcome (ErrLockLost
// if the lock had expired first, ErrUnavailable if the server could not
// be reached — a release is not retried); later calls return nil. After
// the Client is closed it returns ErrClosed.
//
// Unlock releases even if ctx is already done: it is one round trip,
// bounded by the I/O timeout, and a lock left held because a context ended
// would only keep others waiting until its TTL runs out.
func (l *Lock) Unlock(ctx context.Context) error {
	_ = ctx
	err := l.core.unlock()
	runtime.SetFinalizer(l, nil)
	return err
}

// unlock releases the lock once and frees its lease (see Lock.Unlock).
func (lc *lockCore) unlock() error {
	lc.io.Lock()
	lc.mu.Lock()
	if lc.lease == nil {
		byClose := lc.byClose
		lc.mu.Unlock()
		lc.io.Unlock()
		if byClose {
			return newError("unlock", lc.name, ErrClosed, nil)
		}
		return nil
	}
	lc.mu.Unlock()
	err := lc.release(context.Background())
	freed := lc.freeLease(false)
	lc.io.Unlock()
	if freed {
		lc.stopRenewal()
		lc.c.locks.remove(lc)
	}
	return err
}

// String describes the lock for logs (never anything secret).
func (l *Lock) String() string {
	return "dlm.Lock(" + l.name + ")"
}
