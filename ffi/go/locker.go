package dlm

import (
	"context"
	"errors"
	"sync"
	"time"
)

// LockerWait is how long each of a Locker's waits in the server's queue
// lasts before it queues again, unless a Wait option says otherwise.
const LockerWait = time.Minute

// Locker adapts one lock name to sync.Locker, for code that wants one
// (sync.Cond, libraries taking a sync.Locker). Create it with
// Client.Locker.
//
// Because sync.Locker's methods return no error, a Locker panics instead:
//
//   - Lock blocks until the lock is acquired, queueing again whenever a
//     wait times out (like sync.Mutex, it never gives up), and panics with
//     the *Error of any other failure (server unreachable, bad request,
//     client closed, ...).
//   - Unlock panics if the Locker is not locked, and with the *Error if
//     the release fails — notably ErrLockLost, which means the lock expired
//     while held and the critical section may not have been exclusive.
//
// To make that last case rare, a Locker always auto-renews its lock. Use
// Client.Lock when you want the errors as values.
//
// A Locker also holds an in-process mutex while locked, so goroutines
// sharing one Locker exclude each other even though they share the
// Client's owner ID. Two Lockers (or a Locker and Client.Lock) for the
// same name on the same Client do not exclude each other: they are the
// same owner.
type Locker struct {
	c     *Client
	take  func(context.Context, string, ...LockOption) (*Lock, error)
	name  string
	opts  []LockOption
	local sync.Mutex
	held  *Lock // guarded by local
}

var _ sync.Locker = (*Locker)(nil)

// Locker returns a sync.Locker for name; opts are as for Lock (AutoRenew
// is implied; Wait sets the length of each wait, LockerWait by default).
func (c *Client) Locker(name string, opts ...LockOption) *Locker {
	all := append([]LockOption{Wait(LockerWait)}, opts...)
	all = append(all, AutoRenew())
	return &Locker{c: c, take: c.Lock, name: name, opts: all}
}

// Lock acquires the lock, blocking until it has it; it panics on failure
// (see Locker).
func (k *Locker) Lock() {
	k.local.Lock()
	for {
		l, err := k.take(context.Background(), k.name, k.opts...)
		if err == nil {
			k.held = l
			return
		}
		if !errors.Is(err, ErrTimeout) {
			k.local.Unlock()
			panic(err)
		}
	}
}

// Unlock releases the lock; it panics if the Locker is not locked or the
// release fails (see Locker).
func (k *Locker) Unlock() {
	l := k.held
	if l == nil {
		panic("dlm: Unlock of unlocked Locker " + k.name)
	}
	k.held = nil
	err := l.Unlock(context.Background())
	k.local.Unlock()
	if err != nil {
		panic(err)
	}
}

// Token is the fencing token of the current grant; call it only while
// the Locker is locked (it is 0 otherwise).
func (k *Locker) Token() uint64 {
	if l := k.held; l != nil {
		return l.Token()
	}
	return 0
}

// RWMutex adapts one read/write lock name to the shape of sync.RWMutex:
// Lock and Unlock take and release the write side (Client.WriteLock),
// RLock and RUnlock a read side (Client.ReadLock), and RLocker returns a
// sync.Locker of the read side. Create it with Client.RWMutex.
//
// As for Locker, its methods cannot return errors: each acquisition
// blocks until it succeeds, queueing again whenever a wait times out, and
// panics with the *Error of any other failure; an unlock panics if
// nothing is held or the release fails (ErrLockLost: the hold expired
// while held). Every hold auto-renews.
//
// The server's queue is first come, first served, readers and writers
// together: a writer that waits holds back every reader that comes after
// it, so a stream of readers cannot starve a writer. Within the process an
// RWMutex also holds a sync.RWMutex, so goroutines sharing one exclude
// each other as a sync.RWMutex would even though they share the Client's
// owner ID: many readers at once (each with a read hold of its own in the
// server), one writer alone.
type RWMutex struct {
	c     *Client
	name  string
	opts  []LockOption
	local sync.RWMutex

	mu      sync.Mutex // guards writer and readers
	writer  *Lock
	readers []*Lock
}

// RWMutex returns an RWMutex for name; opts are as for Lock (AutoRenew is
// implied; Wait sets the length of each wait, LockerWait by default).
func (c *Client) RWMutex(name string, opts ...LockOption) *RWMutex {
	all := append([]LockOption{Wait(LockerWait)}, opts...)
	all = append(all, AutoRenew())
	return &RWMutex{c: c, name: name, opts: all}
}

// acquire takes a hold with take until it gets one, queueing again
// whenever a wait runs out; other failures are returned.
func (m *RWMutex) acquire(take func(context.Context, string, ...LockOption) (*Lock, error)) (*Lock, error) {
	for {
		l, err := take(context.Background(), m.name, m.opts...)
		if err == nil || !errors.Is(err, ErrTimeout) {
			return l, err
		}
	}
}

// Lock takes the write side, blocking until it has it; it panics on
// failure (see RWMutex).
func (m *RWMutex) Lock() {
	m.local.Lock()
	l, err := m.acquire(m.c.WriteLock)
	if err != nil {
		m.local.Unlock()
		panic(err)
	}
	m.mu.Lock()
	m.writer = l
	m.mu.Unlock()
}

// Unlock releases the write side; it panics if it is not held or the
// release fails (see RWMutex).
func (m *RWMutex) Unlock() {
	m.mu.Lock()
	l := m.writer
	m.writer = nil
	m.mu.Unlock()
	if l == nil {
		panic("dlm: Unlock of unlocked RWMutex " + m.name)
	}
	err := l.Unlock(context.Background())
	m.local.Unlock()
	if err != nil {
		panic(err)
	}
}

// RLock takes a read side, blocking until it has it; it panics on failure
// (see RWMutex).
func (m *RWMutex) RLock() {
	m.local.RLock()
	l, err := m.acquire(m.c.ReadLock)
	if err != nil {
		m.local.RUnlock()
		panic(err)
	}
	m.mu.Lock()
	m.readers = append(m.readers, l)
	m.mu.Unlock()
}

// RUnlock releases one read side (the holds of one RWMutex are all the
// same owner's, so any one); it panics if none is held or the release
// fails (see RWMutex).
func (m *RWMutex) RUnlock() {
	m.mu.Lock()
	n := len(m.readers)
	var l *Lock
	if n > 0 {
		l = m.readers[n-1]
		m.readers[n-1] = nil
		m.readers = m.readers[:n-1]
	}
	m.mu.Unlock()
	if l == nil {
		panic("dlm: RUnlock of unlocked RWMutex " + m.name)
	}
	err := l.Unlock(context.Background())
	m.local.RUnlock()
	if err != nil {
		panic(err)
	}
}

// RLocker returns a sync.Locker whose Lock and Unlock call RLock and
// RUnlock, as sync.RWMutex's does.
func (m *RWMutex) RLocker() sync.Locker { return (*rlocker)(m) }

// Token is the fencing token of the write side; call it only while the
// write side is held (it is 0 otherwise). Each read hold has a token of
// its own: take one with Client.ReadLock to pass it on.
func (m *RWMutex) Token() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.writer != nil {
		return m.writer.Token()
	}
	return 0
}

type rlocker RWMutex

func (r *rlocker) Lock()   { (*RWMutex)(r).RLock() }
func (r *rlocker) Unlock() { (*RWMutex)(r).RUnlock() }

var (
	_ sync.Locker = (*RWMutex)(nil)
	_ sync.Locker = (*rlocker)(nil)
)
