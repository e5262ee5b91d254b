package dlm_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"dlm.example/dlm"
)

// names returns n names no other test uses.
func names(t *testing.T, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = unique(t, fmt.Sprint("m", i))
	}
	return out
}

func mustState(t *testing.T, c *dlm.Client, name string, want dlm.LockStatus) {
	t.Helper()
	st, err := c.TestLock(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	if st.Status != want {
		t.Fatalf("%s is %v, want %v", name, st.Status, want)
	}
}

// LockAll takes every name or none: one held by another refuses the set
// and takes nothing; once free, all are taken with distinct increasing
// tokens, extended together, and released together.
func TestLockAllIsAllOrNone(t *testing.T) {
	ctx := context.Background()
	a, b := dial(t), dial(t)
	ns := names(t, 3)
	held, err := b.Lock(ctx, ns[1])
	if err != nil {
		t.Fatal(err)
	}
	_, err = a.LockAll(ctx, ns)
	mustIs(t, err, dlm.ErrNotOwner)
	mustState(t, b, ns[0], dlm.LockFree)
	mustState(t, b, ns[2], dlm.LockFree)
	if err := held.Unlock(ctx); err != nil {
		t.Fatal(err)
	}

	m, err := a.LockAll(ctx, ns, dlm.TTL(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	tokens := m.Tokens()
	if len(tokens) != 3 || tokens[0] <= held.Token() || tokens[1] <= tokens[0] || tokens[2] <= tokens[1] {
		t.Fatalf("tokens %v after %d", tokens, held.Token())
	}
	for i, n := range ns {
		st, err := a.TestLock(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		if st.Status != dlm.LockMine || st.Token != tokens[i] {
			t.Fatalf("%s: %+v, want mine with token %d", n, st, tokens[i])
		}
		mustState(t, b, n, dlm.LockTaken)
		if tok, ok := m.Token(n); !ok || tok != tokens[i] {
			t.Fatalf("Token(%s) = %d, %v", n, tok, ok)
		}
	}
	if _, ok := m.Token("not-in-the-set"); ok {
		t.Fatal("Token of a name outside the set")
	}
	if got := m.Names(); len(got) != 3 || got[0] != ns[0] || got[2] != ns[2] {
		t.Fatalf("Names() = %v", got)
	}

	if err := m.Extend(ctx, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	if left := m.Remaining(); left <= 5*time.Second || left > 20*time.Second {
		t.Fatalf("Remaining() = %v after extending to 20 s", left)
	}
	for i, n := range ns {
		st, _ := a.TestLock(ctx, n)
		if st.Token != tokens[i] || st.Remaining <= 5*time.Second {
			t.Fatalf("%s after Extend: %+v", n, st)
		}
	}

	if err := m.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m.Unlock(ctx); err != nil {
		t.Fatalf("second Unlock: %v", err)
	}
	for _, n := range ns {
		mustState(t, b, n, dlm.LockFree)
	}
	mustIs(t, m.Extend(ctx, time.Second), dlm.ErrLockLost)
	select {
	case <-m.Lost():
		t.Fatal("Lost closed by a successful Unlock")
	default:
	}
}

// A waiting LockAll holds nothing while it waits, reserves its free
// names, and is granted whole once the last name is free; two sets that
// name the same locks in opposite orders do not deadlock.
func TestLockAllWaitsForEveryName(t *testing.T) {
	ctx := context.Background()
	a, b := dial(t), dial(t)
	ns := names(t, 3)
	hb, err := b.Lock(ctx, ns[1])
	if err != nil {
		t.Fatal(err)
	}
	hc, err := b.Lock(ctx, ns[2])
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *dlm.MultiLock, 1)
	go func() {
		m, err := a.LockAll(ctx, ns, dlm.Wait(10*time.Second))
		if err != nil {
			t.Error(err)
		}
		got <- m
	}()
	waitForWaiters(t, b, 1)
	mustState(t, b, ns[0], dlm.LockFree)
	_, err = b.Lock(ctx, ns[0])
	mustIs(t, err, dlm.ErrNotOwner) // reserved for the waiting set
	if err := hb.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	waitForWaiters(t, b, 1) // still waiting for the last one
	if err := hc.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	m := <-got
	if m == nil {
		return
	}
	for _, n := range ns {
		mustState(t, b, n, dlm.LockTaken)
	}
	if err := m.Unlock(ctx); err != nil {
		t.Fatal(err)
	}

	// Opposite orders, many rounds: every set is granted in turn.
	x, y := dial(t), dial(t)
	fwd, rev := []string{ns[0], ns[1]}, []string{ns[1], ns[0]}
	var wg sync.WaitGroup
	for _, side := range []struct {
		c  *dlm.Client
		ns []string
	}{{x, fwd}, {y, rev}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				m, err := side.c.LockAll(ctx, side.ns, dlm.Wait(10*time.Second), dlm.TTL(5*time.Second))
				if err != nil {
					t.Error(err)
					return
				}
				if err := m.Unlock(ctx); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// Cancelling a waiting LockAll returns at once, takes nothing and leaves
// no waiter behind.
func TestLockAllCancel(t *testing.T) {
	a, b := dial(t), dial(t)
	ns := names(t, 2)
	held, err := b.Lock(context.Background(), ns[1])
	if err != nil {
		t.Fatal(err)
	}
	defer held.Unlock(context.Background())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := a.LockAll(ctx, ns, dlm.Wait(time.Minute))
		done <- err
	}()
	waitForWaiters(t, b, 1)
	cancel()
	select {
	case err := <-done:
		mustIs(t, err, dlm.ErrCancelled)
	case <-time.After(5 * time.Second):
		t.Fatal("a cancelled LockAll did not return")
	}
	waitForWaiters(t, b, 0)
	mustState(t, b, ns[0], dlm.LockFree)
}

// AutoRenew keeps every lock of the set past its TTL; Close releases them.
func TestLockAllAutoRenewAndClose(t *testing.T) {
	ctx := context.Background()
	a, b := dial(t), dial(t)
	ns := names(t, 2)
	m, err := a.LockAll(ctx, ns, dlm.TTL(300*time.Millisecond), dlm.AutoRenew())
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(900 * time.Millisecond)
	for time.Now().Before(deadline) {
		for _, n := range ns {
			mustState(t, b, n, dlm.LockTaken)
		}
		time.Sleep(50 * time.Millisecond)
	}
	select {
	case <-m.Lost():
		t.Fatal("an auto-renewed set was lost")
	default:
	}
	a.Close()
	for _, n := range ns {
		mustState(t, b, n, dlm.LockFree)
	}
	mustIs(t, m.Unlock(ctx), dlm.ErrClosed)
}

func TestLockAllArguments(t *testing.T) {
	ctx := context.Background()
	a := dial(t)
	n := unique(t, "x")
	for _, c := range []struct {
		what  string
		names []string
	}{
		{"none", nil},
		{"twice", []string{n, n}},
		{"empty", []string{n, ""}},
		{"too many", make17(t)},
	} {
		_, err := a.LockAll(ctx, c.names)
		if !errors.Is(err, dlm.ErrInvalidArgument) {
			t.Errorf("%s: %v, want ErrInvalidArgument", c.what, err)
		}
	}
	m, err := a.LockAll(ctx, names(t, dlm.MaxLockAll))
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Tokens()) != dlm.MaxLockAll {
		t.Fatalf("%d tokens", len(m.Tokens()))
	}
	if err := m.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	// A name that is a semaphore: a conflict, nothing taken.
	sem := unique(t, "sem")
	p, err := a.Semaphore(ctx, sem, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Unlock(ctx)
	other := unique(t, "other")
	_, err = a.LockAll(ctx, []string{other, sem})
	mustIs(t, err, dlm.ErrConflict)
	mustState(t, a, other, dlm.LockFree)
}

func make17(t *testing.T) []string { return names(t, dlm.MaxLockAll+1) }
