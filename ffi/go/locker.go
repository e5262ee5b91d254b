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
	return &Locker{c: c, name: name, opts: all}
}

// Lock acquires the lock, blocking until it has it; it panics on failure
// (see Locker).
func (k *Locker) Lock() {
	k.local.Lock()
	for {
		l, err := k.c.Lock(context.Background(), k.name, k.opts...)
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
