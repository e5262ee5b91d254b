package dlm_test

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"dlm.example/dlm"
)

func TestSemaphoreCountsPermits(t *testing.T) {
	ctx := context.Background()
	a, b := dial(t), dial(t)
	name := unique(t, "pool")

	// The same owner may hold several permits, each a hold of its own.
	one, err := a.Semaphore(ctx, name, 2, dlm.TTL(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	two, err := a.Semaphore(ctx, name, 2, dlm.TTL(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if one.Token() == 0 || two.Token() <= one.Token() {
		t.Fatalf("tokens %d then %d, want increasing", one.Token(), two.Token())
	}

	// Full: one attempt is refused at once.
	_, err = b.Semaphore(ctx, name, 2)
	mustIs(t, err, dlm.ErrNotOwner)
	// Another size while in use, or another kind: a conflict saying what
	// the name is.
	_, err = b.Semaphore(ctx, name, 3)
	mustIs(t, err, dlm.ErrConflict)
	if !strings.Contains(err.Error(), "semaphore of 2 permits") {
		t.Fatalf("conflict says %q", err)
	}
	_, err = b.WriteLock(ctx, name)
	mustIs(t, err, dlm.ErrConflict)
	// A plain lock (as JackrabbitDLM's clients send) finds it held.
	_, err = b.Lock(ctx, name)
	mustIs(t, err, dlm.ErrNotOwner)

	// Extending one hold keeps its token; releasing it frees one permit,
	// which a waiter gets.
	if err := one.Extend(ctx, 8*time.Second); err != nil {
		t.Fatal(err)
	}
	granted := make(chan *dlm.Lock, 1)
	failed := make(chan error, 1)
	go func() {
		l, err := b.Semaphore(ctx, name, 2, dlm.Wait(10*time.Second))
		if err != nil {
			failed <- err
			return
		}
		granted <- l
	}()
	waitForWaiters(t, a, 1)
	if err := one.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	var third *dlm.Lock
	select {
	case third = <-granted:
	case err := <-failed:
		t.Fatal("the waiter:", err)
	}
	if third.Token() <= two.Token() {
		t.Fatalf("the waiter's token %d is not above %d", third.Token(), two.Token())
	}
	mustIs(t, one.Extend(ctx, time.Second), dlm.ErrLockLost)
	// The other hold is untouched.
	if err := two.Extend(ctx, 5*time.Second); err != nil {
		t.Fatal(err)
	}

	// Unlock by name releases every hold of the caller.
	if err := a.UnlockByName(ctx, name, 0); err != nil {
		t.Fatal("UnlockByName:", err)
	}
	mustIs(t, two.Extend(ctx, time.Second), dlm.ErrLockLost)
	if err := third.Unlock(ctx); err != nil {
		t.Fatal(err)
	}

	// Nobody holds or waits: the name is forgotten, any size may use it.
	l, err := a.Semaphore(ctx, name, 5)
	if err != nil {
		t.Fatal(err)
	}
	_ = l.Unlock(ctx)

	_, err = a.Semaphore(ctx, name, 0)
	mustIs(t, err, dlm.ErrInvalidArgument)
}

// Many goroutines on several clients share a semaphore: never more
// holders than permits, and everyone gets a turn.
func TestSemaphoreNeverAdmitsMoreThanItsPermits(t *testing.T) {
	const permits, clients, perClient, rounds = 3, 3, 3, 4
	name := unique(t, "bounded")
	var inside, most, total atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < clients; i++ {
		c := dial(t)
		for g := 0; g < perClient; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for r := 0; r < rounds; r++ {
					l, err := c.Semaphore(context.Background(), name, permits,
						dlm.TTL(10*time.Second), dlm.Wait(30*time.Second))
					if err != nil {
						t.Error(err)
						return
					}
					n := inside.Add(1)
					for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
					}
					time.Sleep(time.Millisecond)
					inside.Add(-1)
					total.Add(1)
					if err := l.Unlock(context.Background()); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	if m := most.Load(); m > permits {
		t.Fatalf("%d holders at once, the semaphore has %d permits", m, permits)
	}
	if total.Load() != clients*perClient*rounds {
		t.Fatalf("%d critical sections, want %d", total.Load(), clients*perClient*rounds)
	}
}

// A writer that waits holds back the readers that come after it: it is
// granted as soon as the earlier readers leave, and the later reader only
// after it (its token is greater).
func TestReadWriteLockWritersAreNotStarved(t *testing.T) {
	ctx := context.Background()
	r1, r2, r3, w := dial(t), dial(t), dial(t), dial(t)
	name := unique(t, "table")

	first, err := r1.ReadLock(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	second, err := r2.ReadLock(ctx, name) // readers share
	if err != nil {
		t.Fatal(err)
	}
	_, err = w.WriteLock(ctx, name)
	mustIs(t, err, dlm.ErrNotOwner)
	_, err = w.Semaphore(ctx, name, 2)
	mustIs(t, err, dlm.ErrConflict)

	type result struct {
		l   *dlm.Lock
		err error
	}
	writer := make(chan result, 1)
	go func() {
		l, err := w.WriteLock(ctx, name, dlm.Wait(20*time.Second))
		writer <- result{l, err}
	}()
	waitForWaiters(t, r1, 1)
	// A new reader is refused while the writer waits, though readers hold.
	_, err = r3.ReadLock(ctx, name)
	mustIs(t, err, dlm.ErrNotOwner)
	reader := make(chan result, 1)
	go func() {
		l, err := r3.ReadLock(ctx, name, dlm.Wait(20*time.Second))
		reader <- result{l, err}
	}()
	waitForWaiters(t, r1, 2)

	if err := first.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := second.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	wr := <-writer
	if wr.err != nil {
		t.Fatal("the writer:", wr.err)
	}
	waitForWaiters(t, r1, 1) // the reader still waits behind it
	select {
	case rd := <-reader:
		t.Fatalf("a reader was granted beside a writer: %v, %v", rd.l, rd.err)
	default:
	}
	if err := wr.l.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	rd := <-reader
	if rd.err != nil {
		t.Fatal("the reader:", rd.err)
	}
	if rd.l.Token() <= wr.l.Token() || wr.l.Token() <= second.Token() {
		t.Fatalf("grant order by token: readers %d, %d; writer %d; reader %d",
			first.Token(), second.Token(), wr.l.Token(), rd.l.Token())
	}
	_ = rd.l.Unlock(ctx)
}

// RWMutex: many readers at once across clients (and goroutines of one),
// never a reader beside a writer; RLocker is a sync.Locker.
func TestRWMutex(t *testing.T) {
	const goroutines, rounds = 3, 4
	name := unique(t, "rwmutex")
	var readers, writers, reads, writes atomic.Int32
	var wg sync.WaitGroup
	check := func() {
		if writers.Load() > 1 || (writers.Load() == 1 && readers.Load() > 0) {
			t.Errorf("%d writers beside %d readers", writers.Load(), readers.Load())
		}
	}
	for _, c := range []*dlm.Client{dial(t), dial(t)} {
		m := c.RWMutex(name, dlm.TTL(5*time.Second))
		var rl sync.Locker = m.RLocker()
		for g := 0; g < goroutines; g++ {
			wg.Add(2)
			go func() {
				defer wg.Done()
				for r := 0; r < rounds; r++ {
					m.Lock()
					writers.Add(1)
					if m.Token() == 0 {
						t.Error("a write-locked RWMutex has no token")
					}
					check()
					time.Sleep(time.Millisecond)
					writers.Add(-1)
					writes.Add(1)
					m.Unlock()
				}
			}()
			go func() {
				defer wg.Done()
				for r := 0; r < rounds; r++ {
					rl.Lock()
					readers.Add(1)
					check()
					time.Sleep(2 * time.Millisecond)
					readers.Add(-1)
					reads.Add(1)
					rl.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	if reads.Load() != 2*goroutines*rounds || writes.Load() != 2*goroutines*rounds {
		t.Fatalf("%d reads and %d writes, want %d each", reads.Load(), writes.Load(), 2*goroutines*rounds)
	}

	// Readers share for real: two clients hold read sides at once.
	a, b := dial(t), dial(t)
	ma, mb := a.RWMutex(name), b.RWMutex(name)
	ma.RLock()
	done := make(chan struct{})
	go func() { mb.RLock(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("a second reader was not granted beside the first")
	}
	mb.RUnlock()
	ma.RUnlock()
	if r := catch(ma.RUnlock); r == nil || !strings.Contains(r.(string), "RUnlock of unlocked") {
		t.Fatalf("RUnlock of an unlocked RWMutex: %v", r)
	}
	if r := catch(ma.Unlock); r == nil {
		t.Fatal("Unlock of an unlocked RWMutex did not panic")
	}
}
