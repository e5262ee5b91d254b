package dlm_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"dlm.example/dlm"
)

// statAt is one statistic of the server c talks to.
func statAt(t *testing.T, c *dlm.Client, name string) uint64 {
	t.Helper()
	stats, err := c.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return stats[name]
}

// A lock bound to a session is released when the session's connection
// dies, long before its TTL: a waiter elsewhere gets it with a greater
// token, and the session says it has ended (Done, Err, the lock's Lost).
func TestSessionLockIsReleasedWhenItsConnectionDies(t *testing.T) {
	ctx := context.Background()
	a, b := dial(t), dial(t)
	name := unique(t, "ephemeral")
	s, err := a.Session(ctx, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	l, err := s.Lock(ctx, name, dlm.TTL(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if l.Token() == 0 {
		t.Fatal("no fencing token")
	}
	if _, ok, err := b.TryLock(ctx, name); ok || err != nil {
		t.Fatalf("TryLock of a held session lock: ok=%v err=%v", ok, err)
	}
	type result struct {
		l   *dlm.Lock
		err error
	}
	got := make(chan result, 1)
	go func() {
		l, err := b.Lock(ctx, name, dlm.Wait(30*time.Second))
		got <- result{l, err}
	}()
	waitForWaiters(t, b, 1)
	select {
	case <-s.Done():
		t.Fatal("the session ended by itself")
	default:
	}
	dlm.BreakSession(s)
	r := <-got
	if r.err != nil {
		t.Fatalf("the waiter: %v", r.err)
	}
	defer r.l.Unlock(ctx)
	if r.l.Token() <= l.Token() {
		t.Fatalf("token %d after %d", r.l.Token(), l.Token())
	}
	<-s.Done()
	if s.Err() == nil {
		t.Fatal("Err is nil after Done")
	}
	<-l.Lost()
	// Nothing more goes through a session that has ended.
	_, err = s.Lock(ctx, unique(t, "after"))
	mustIs(t, err, dlm.ErrLockLost)
}

// Closing a session releases its plain locks at once; a lock with a
// lock-delay stays closed to everyone (TestLock says taken, TryLock
// fails) until the delay has passed, then a waiter gets it.
func TestSessionLockDelayKeepsOthersOut(t *testing.T) {
	ctx := context.Background()
	a, b := dial(t), dial(t)
	plain, delayed := unique(t, "plain"), unique(t, "delayed")
	s, err := a.Session(ctx, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	pl, err := s.Lock(ctx, plain, dlm.TTL(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	const delay = 1500 * time.Millisecond
	dl, err := s.Lock(ctx, delayed, dlm.TTL(time.Minute), dlm.LockDelay(delay))
	if err != nil {
		t.Fatal(err)
	}
	closed := statAt(t, b, "SessionClosed")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	<-s.Done()
	if !errors.Is(s.Err(), dlm.ErrSessionClosed) {
		t.Fatalf("Err = %v", s.Err())
	}
	<-pl.Lost()
	<-dl.Lost()
	eventually(t, func() bool { return statAt(t, b, "SessionClosed") > closed })
	// Released at once.
	l, err := b.Lock(ctx, plain)
	if err != nil {
		t.Fatalf("the plain lock after its session: %v", err)
	}
	if l.Token() <= dl.Token() {
		t.Fatalf("token %d, the session's last %d", l.Token(), dl.Token())
	}
	_ = l.Unlock(ctx)
	// Closed for its delay: held by nobody, taken by nobody.
	st, err := b.TestLock(ctx, delayed)
	if err != nil {
		t.Fatal(err)
	}
	if st.Status != dlm.LockTaken || st.Remaining <= 0 || st.Remaining > delay {
		t.Fatalf("TestLock during the delay: %+v", st)
	}
	if _, ok, err := b.TryLock(ctx, delayed); ok || err != nil {
		t.Fatalf("TryLock during the delay: ok=%v err=%v", ok, err)
	}
	start := time.Now()
	l, err = b.Lock(ctx, delayed, dlm.Wait(30*time.Second))
	if err != nil {
		t.Fatalf("after the delay: %v", err)
	}
	defer l.Unlock(ctx)
	if l.Token() <= dl.Token() {
		t.Fatalf("token %d after %d", l.Token(), dl.Token())
	}
	// The wait lasted what was left of the delay (less an allowance for
	// the two clocks).
	if waited := time.Since(start); waited+200*time.Millisecond < st.Remaining {
		t.Fatalf("granted after %v, with %v of the delay left", waited, st.Remaining)
	}
}

// A session's Locker is a sync.Locker bound to it; unlocking releases.
func TestSessionLockerAndUnlock(t *testing.T) {
	ctx := context.Background()
	a, b := dial(t), dial(t)
	name := unique(t, "locker")
	s, err := a.Session(ctx, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var mu sync.Locker = s.Locker(name)
	mu.Lock()
	if _, ok, _ := b.TryLock(ctx, name); ok {
		t.Fatal("taken while the Locker holds it")
	}
	mu.Unlock()
	l, ok, err := b.TryLock(ctx, name)
	if !ok || err != nil {
		t.Fatalf("after Unlock: ok=%v err=%v", ok, err)
	}
	_ = l.Unlock(ctx)
	// A lock by the session, released by Unlock, then taken elsewhere.
	sl, err := s.Lock(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if err := sl.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if l, ok, err := b.TryLock(ctx, name); !ok || err != nil {
		t.Fatalf("after the session lock's Unlock: ok=%v err=%v", ok, err)
	} else {
		_ = l.Unlock(ctx)
	}
	// Closing the Client ends its sessions.
	a.Close()
	<-s.Done()
	mustIs(t, s.Err(), dlm.ErrClosed)
}

func TestSessionArguments(t *testing.T) {
	ctx := context.Background()
	c := dial(t)
	_, err := c.Session(ctx, 0)
	mustIs(t, err, dlm.ErrInvalidArgument)
	_, err = c.Lock(ctx, unique(t, "x"), dlm.LockDelay(time.Second))
	mustIs(t, err, dlm.ErrInvalidArgument)
	s, err := c.Session(ctx, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = s.Lock(ctx, unique(t, "x"), dlm.LockDelay(dlm.MaxLockDelay+time.Millisecond))
	mustIs(t, err, dlm.ErrInvalidArgument)
	_, err = s.Lock(ctx, "")
	mustIs(t, err, dlm.ErrInvalidArgument)
	// The session survives refused calls.
	l, err := s.Lock(ctx, unique(t, "ok"), dlm.LockDelay(dlm.MaxLockDelay))
	if err != nil {
		t.Fatal(err)
	}
	_ = l.Unlock(ctx)
}
