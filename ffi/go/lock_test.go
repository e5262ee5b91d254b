package dlm_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"dlm.example/dlm"
)

func TestLockExtendUnlockAndFencing(t *testing.T) {
	ctx := context.Background()
	a, b := dial(t), dial(t)
	name := unique(t, "res")

	st, err := a.TestLock(ctx, name)
	if err != nil || st != (dlm.LockState{Status: dlm.LockFree}) {
		t.Fatalf("TestLock(free) = %+v, %v", st, err)
	}
	l, err := a.Lock(ctx, name, dlm.TTL(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if l.Name() != name || l.Token() == 0 || l.String() != "dlm.Lock("+name+")" {
		t.Fatalf("lock %v: name %q token %d", l, l.Name(), l.Token())
	}
	if r := l.Remaining(); r <= 4*time.Second || r > 5*time.Second {
		t.Fatalf("Remaining() = %v, want just under 5s", r)
	}
	select {
	case <-l.Lost():
		t.Fatal("Lost is closed on a held lock")
	default:
	}

	// Others see it taken; one attempt fails at once.
	_, err = b.Lock(ctx, name)
	mustIs(t, err, dlm.ErrNotOwner)
	if got, ok, err := b.TryLock(ctx, name, dlm.Wait(time.Hour)); got != nil || ok || err != nil {
		t.Fatalf("TryLock on a taken lock = %v, %v, %v", got, ok, err)
	}
	st, err = b.TestLock(ctx, name)
	if err != nil || st.Status != dlm.LockTaken || st.Token != 0 || st.Remaining <= 0 || st.Remaining > 5*time.Second {
		t.Fatalf("TestLock(taken) = %+v, %v", st, err)
	}
	st, err = a.TestLock(ctx, name)
	if err != nil || st.Status != dlm.LockMine || st.Token != l.Token() {
		t.Fatalf("TestLock(mine) = %+v, %v", st, err)
	}
	if fmt.Sprint(dlm.LockFree, dlm.LockMine, dlm.LockTaken, dlm.LockStatus(9)) != "free mine taken LockStatus(9)" {
		t.Fatal("LockStatus.String")
	}

	// Extending keeps the token.
	if err := l.Extend(ctx, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	if r := l.Remaining(); r <= 19*time.Second {
		t.Fatalf("after Extend, Remaining() = %v", r)
	}
	st, _ = a.TestLock(ctx, name)
	if st.Token != l.Token() || st.Remaining <= 19*time.Second {
		t.Fatalf("after Extend, TestLock = %+v", st)
	}

	// Unlock is idempotent and never resurrects.
	if err := l.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.Unlock(ctx); err != nil {
		t.Fatal("second Unlock:", err)
	}
	mustIs(t, l.Extend(ctx, time.Second), dlm.ErrLockLost)
	if l.Remaining() != 0 {
		t.Fatal("an unlocked lock has time left")
	}
	select {
	case <-l.Lost():
		t.Fatal("Unlock closed Lost")
	default:
	}

	// The next grant's token is greater.
	again, ok, err := b.TryLock(ctx, name)
	if err != nil || !ok {
		t.Fatalf("TryLock after Unlock = %v, %v", ok, err)
	}
	defer again.Unlock(ctx)
	if again.Token() <= l.Token() {
		t.Fatalf("token %d after %d", again.Token(), l.Token())
	}
}

// Locks belong to the owner ID: the same client locking again re-locks.
func TestTheSameOwnerRelocks(t *testing.T) {
	ctx := context.Background()
	c := dial(t)
	name := unique(t, "l")
	first, err := c.Lock(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	second, err := c.Lock(ctx, name, dlm.Wait(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if first.Token() != second.Token() {
		t.Fatalf("re-lock changed the token: %d, %d", first.Token(), second.Token())
	}
	if err := second.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	// The grant is gone for both handles. A release carries its grant's
	// request ID (u.TOKEN, dlm-core's failover rule, so that a release
	// sent again after a failover is applied once): the second release of
	// the same grant reads as the first did, and nothing is held.
	if err := first.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := c.TestLock(ctx, name)
	if err != nil || st.Status != dlm.LockFree {
		t.Fatalf("TestLock = %+v, %v; want free", st, err)
	}
}

// A name holding NUL is locked, renewed and released like any other: the
// renewal thread was once named after the lock, which panicked after the
// grant (ErrInternal, and the lock held until its TTL).
func TestANameWithNULIsAnOrdinaryName(t *testing.T) {
	ctx := context.Background()
	a, b := dial(t), dial(t)
	name := unique(t, "nul\x00name")
	l, err := a.Lock(ctx, name, dlm.TTL(300*time.Millisecond), dlm.AutoRenew())
	if err != nil {
		t.Fatal(err)
	}
	if l.Token() == 0 {
		t.Error("no token")
	}
	if st, err := b.TestLock(ctx, name); err != nil || st.Status != dlm.LockTaken {
		t.Fatalf("TestLock: %+v, %v", st, err)
	}
	if err := l.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if st, err := b.TestLock(ctx, name); err != nil || st.Status != dlm.LockFree {
		t.Fatalf("after Unlock: %+v, %v", st, err)
	}
}

func TestAnExpiredLockIsLostAndNeverResurrected(t *testing.T) {
	ctx := context.Background()
	c := dial(t)
	name := unique(t, "x")
	l, err := c.Lock(ctx, name, dlm.TTL(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	// Until the server has let it expire.
	eventually(t, func() bool {
		st, err := c.TestLock(ctx, name)
		return err == nil && st.Status == dlm.LockFree
	})
	err = l.Extend(ctx, 10*time.Second)
	mustIs(t, err, dlm.ErrLockLost)
	if !strings.Contains(err.Error(), `extend "`+name+`"`) {
		t.Errorf("error %q does not say what failed", err)
	}
	select {
	case <-l.Lost():
	default:
		t.Fatal("Lost is open after Extend found the lock lost")
	}
	if st, err := c.TestLock(ctx, name); err != nil || st.Status != dlm.LockFree {
		t.Fatalf("Extend re-acquired: %+v, %v", st, err)
	}
	mustIs(t, l.Unlock(ctx), dlm.ErrLockLost)
	if err := l.Unlock(ctx); err != nil {
		t.Fatal("second Unlock:", err)
	}
}

func TestUnlockByName(t *testing.T) {
	ctx := context.Background()
	c, other := dial(t), dial(t)
	name := unique(t, "l")
	l, err := c.Lock(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	mustIs(t, other.UnlockByName(ctx, name, 0), dlm.ErrNotOwner)
	mustIs(t, c.UnlockByName(ctx, name, l.Token()+1), dlm.ErrNotOwner)
	if err := c.UnlockByName(ctx, name, l.Token()); err != nil {
		t.Fatal(err)
	}
	mustIs(t, c.UnlockByName(ctx, name, 0), dlm.ErrNotFound)
	mustIs(t, l.Unlock(ctx), dlm.ErrLockLost)
}

func TestWaitingTimesOutOrIsGranted(t *testing.T) {
	ctx := context.Background()
	a, b := dial(t), dial(t)
	name := unique(t, "w")
	held, err := a.Lock(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = b.Lock(ctx, name, dlm.Wait(300*time.Millisecond))
	mustIs(t, err, dlm.ErrTimeout)
	if took := time.Since(start); took < 280*time.Millisecond {
		t.Fatalf("timed out after %v", took)
	}

	got := make(chan *dlm.Lock, 1)
	go func() {
		l, err := b.Lock(ctx, name, dlm.Wait(10*time.Second))
		if err != nil {
			t.Error(err)
		}
		got <- l
	}()
	waitForWaiters(t, a, 1)
	if err := held.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	l := <-got
	if l == nil {
		return
	}
	defer l.Unlock(ctx)
	if l.Token() <= held.Token() {
		t.Fatalf("waiter's token %d, first holder's %d", l.Token(), held.Token())
	}
}

// Cancelling the context of a waiting Lock returns within 50 ms, and the
// server drops the waiter.
func TestCancelAbortsAWaitingLockAtOnce(t *testing.T) {
	srv := startServer(t)
	ctx := context.Background()
	a, b := dialAt(t, srv.addr), dialAt(t, srv.addr)
	held, err := a.Lock(ctx, "c")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Unlock(ctx)

	const rounds = 5
	var worst time.Duration
	for i := 0; i < rounds; i++ {
		waitCtx, cancel := context.WithCancel(ctx)
		type result struct {
			err error
			at  time.Time
		}
		done := make(chan result, 1)
		go func() {
			_, err := b.Lock(waitCtx, "c", dlm.Wait(30*time.Second))
			done <- result{err, time.Now()}
		}()
		waitForWaiters(t, a, 1)
		cancelled := time.Now()
		cancel()
		var r result
		select {
		case r = <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("the waiting Lock did not return")
		}
		mustIs(t, r.err, dlm.ErrCancelled, context.Canceled)
		latency := r.at.Sub(cancelled)
		if latency > worst {
			worst = latency
		}
		waitForWaiters(t, a, 0)
	}
	t.Logf("cancel latency: worst of %d rounds %v", rounds, worst)
	if worst > 50*time.Millisecond {
		t.Fatalf("a cancelled wait returned after %v; want < 50ms", worst)
	}

	// A deadline works the same way.
	dctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = b.Lock(dctx, "c", dlm.Wait(30*time.Second))
	mustIs(t, err, dlm.ErrCancelled, context.DeadlineExceeded)
	if took := time.Since(start); took > 150*time.Millisecond {
		t.Fatalf("the deadline's Lock returned after %v", took)
	}
	waitForWaiters(t, a, 0)

	// The waiter's client still works, and gets the lock once it is free.
	if err := held.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	l, err := b.Lock(ctx, "c", dlm.Wait(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
}

// 32 clients contend for one lock; the tokens and the hold intervals show
// that no two ever held it at once.
func TestMutualExclusionUnderContention(t *testing.T) {
	const workers, rounds = 32, 5
	ctx := context.Background()
	name := unique(t, "contended")
	clients := make([]*dlm.Client, workers)
	for i := range clients {
		clients[i] = dial(t)
	}
	type hold struct {
		token      uint64
		start, end time.Time
	}
	var (
		mu     sync.Mutex
		holds  []hold
		inside atomic.Int32
		wg     sync.WaitGroup
	)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := 0; r < rounds; r++ {
				l, err := clients[w].Lock(ctx, name, dlm.TTL(10*time.Second), dlm.Wait(time.Minute))
				if err != nil {
					t.Error(err)
					return
				}
				start := time.Now()
				if n := inside.Add(1); n != 1 {
					t.Errorf("%d holders at once", n)
				}
				time.Sleep(200 * time.Microsecond)
				inside.Add(-1)
				end := time.Now()
				if err := l.Unlock(ctx); err != nil {
					t.Error(err)
				}
				mu.Lock()
				holds = append(holds, hold{l.Token(), start, end})
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(holds) != workers*rounds {
		t.Fatalf("%d holds, want %d", len(holds), workers*rounds)
	}
	sort.Slice(holds, func(i, j int) bool { return holds[i].token < holds[j].token })
	for i := 1; i < len(holds); i++ {
		prev, cur := holds[i-1], holds[i]
		if cur.token == prev.token {
			t.Fatalf("token %d granted twice", cur.token)
		}
		if !prev.end.Before(cur.start) {
			t.Fatalf("token %d held from %v, before token %d let go at %v",
				cur.token, cur.start, prev.token, prev.end)
		}
	}
}

// An auto-renewed lock outlives its TTL; when the server goes away, Lost
// is closed.
func TestAutoRenewAndLost(t *testing.T) {
	srv := startServer(t)
	ctx := context.Background()
	a, b := dialAt(t, srv.addr), dialAt(t, srv.addr)
	l, err := a.Lock(ctx, "r", dlm.TTL(300*time.Millisecond), dlm.AutoRenew())
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	select {
	case <-l.Lost():
		t.Fatal("Lost closed while renewing")
	default:
	}
	if _, ok, err := b.TryLock(ctx, "r"); ok || err != nil {
		t.Fatalf("the renewed lock is not held: %v, %v", ok, err)
	}

	stopped := time.Now()
	srv.stop()
	select {
	case <-l.Lost():
		t.Logf("Lost closed %v after the server stopped", time.Since(stopped))
	case <-time.After(3 * time.Second):
		t.Fatal("Lost not closed 3s after the server stopped")
	}
	if l.Remaining() != 0 {
		t.Fatal("a lost lock has time left")
	}
	mustIs(t, l.Extend(ctx, time.Second), dlm.ErrLockLost)
	if err := l.Unlock(ctx); err == nil {
		t.Fatal("Unlock of a lost lock succeeded")
	}
}

// A Lock nobody references is released by its finalizer.
func TestAnUnreachableLockIsReleased(t *testing.T) {
	ctx := context.Background()
	a, b := dial(t), dial(t)
	name := unique(t, "forgotten")
	func() {
		if _, err := a.Lock(ctx, name, dlm.TTL(time.Minute)); err != nil {
			t.Fatal(err)
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		runtime.GC()
		st, err := b.TestLock(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if st.Status == dlm.LockFree {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the forgotten lock is still held")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A Client nobody references is closed by its finalizer (with the debug tag,
// a missing KeepAlive would crash here).
func TestAnUnreachableClientIsClosed(t *testing.T) {
	ctx := context.Background()
	for i := 0; i < 20; i++ {
		c, err := dlm.Dial(ctx, addr)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Put(ctx, unique(t, "k"), []byte("v"), time.Second); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	runtime.GC()
}

func TestLocker(t *testing.T) {
	const perLocker, rounds = 4, 5
	name := unique(t, "locker")
	var inside atomic.Int32
	var total atomic.Int32
	var wg sync.WaitGroup
	for _, c := range []*dlm.Client{dial(t), dial(t)} {
		var k sync.Locker = c.Locker(name, dlm.TTL(2*time.Second))
		for g := 0; g < perLocker; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for r := 0; r < rounds; r++ {
					k.Lock()
					if n := inside.Add(1); n != 1 {
						t.Errorf("%d holders at once", n)
					}
					if k.(*dlm.Locker).Token() == 0 {
						t.Error("a locked Locker has no token")
					}
					time.Sleep(100 * time.Microsecond)
					inside.Add(-1)
					total.Add(1)
					k.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	if total.Load() != 2*perLocker*rounds {
		t.Fatalf("%d critical sections, want %d", total.Load(), 2*perLocker*rounds)
	}
}

func TestLockerPanics(t *testing.T) {
	ctx := context.Background()
	c := dial(t)
	name := unique(t, "locker")
	k := c.Locker(name)
	if k.Token() != 0 {
		t.Fatal("an unlocked Locker has a token")
	}
	if r := catch(k.Unlock); r == nil || !strings.Contains(fmt.Sprint(r), "unlocked Locker") {
		t.Fatalf("Unlock of an unlocked Locker: %v", r)
	}

	// The lock is yanked from under the Locker: Unlock panics with
	// ErrLockLost.
	k.Lock()
	if err := c.UnlockByName(ctx, name, k.Token()); err != nil {
		t.Fatal(err)
	}
	r := catch(k.Unlock)
	if err, ok := r.(error); !ok || !errors.Is(err, dlm.ErrLockLost) {
		t.Fatalf("Unlock of a lost lock panicked with %v", r)
	}
	// The Locker is usable again.
	k.Lock()
	k.Unlock()

	// Any failure but a timeout panics in Lock.
	c.Close()
	r = catch(k.Lock)
	if err, ok := r.(error); !ok || !errors.Is(err, dlm.ErrClosed) {
		t.Fatalf("Lock on a closed client panicked with %v", r)
	}
}

func catch(f func()) (r any) {
	defer func() { r = recover() }()
	f()
	return nil
}
