package dlm_test

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"dlm.example/dlm"
)

// The Go client against a stand-in for the original JackrabbitDLM server
// (dlm-tests' jackrabbit-standin): legacy framing, one request per
// connection (closed after the answer), grants without tokens, no wait
// queue, no revisions, no TestLock or Stats.

// startJackrabbit starts the stand-in on a free port, stopped at the end of
// the test.
func startJackrabbit(t *testing.T) string {
	t.Helper()
	bin, err := cargoBinary("dlm-tests", "jackrabbit-standin")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "127.0.0.1:0")
	// It runs until its stdin closes: a pipe we hold.
	if _, err := cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	s, err := startProcess("jackrabbit-standin", cmd)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.stop)
	return s.addr
}

func TestJackrabbit(t *testing.T) {
	at := startJackrabbit(t)
	ctx := context.Background()
	legacy := func(id string) *dlm.Client {
		return dialAt(t, at, dlm.WithLegacyFraming(), dlm.WithClientID(id))
	}
	a, b := legacy("go-a"), legacy("go-b")

	t.Run("a lock without a token is held, extended by re-lock and released", func(t *testing.T) {
		if v, err := a.ServerVersion(ctx); err != nil || !strings.HasPrefix(v, "JackrabbitDLM/") {
			t.Fatalf("Version: %q, %v", v, err)
		}
		l, err := a.Lock(ctx, "job", dlm.TTL(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if l.Token() != 0 {
			t.Errorf("Token = %d, want 0: this server gives none", l.Token())
		}
		if _, ok, err := b.TryLock(ctx, "job"); ok || err != nil {
			t.Fatalf("TryLock of a held lock: %v, %v", ok, err)
		}
		if err := l.Extend(ctx, 20*time.Second); err != nil {
			t.Fatal(err)
		}
		if l.Remaining() < 19*time.Second {
			t.Errorf("Remaining = %v after Extend", l.Remaining())
		}
		if err := l.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
		theirs, ok, err := b.TryLock(ctx, "job")
		if !ok || err != nil {
			t.Fatalf("TryLock after Unlock: %v, %v", ok, err)
		}
		_ = theirs.Unlock(ctx)
	})

	t.Run("a wait is answered at once: not owner, not a timeout", func(t *testing.T) {
		held, err := a.Lock(ctx, "busy")
		if err != nil {
			t.Fatal(err)
		}
		defer held.Unlock(ctx)
		start := time.Now()
		_, err = b.Lock(ctx, "busy", dlm.Wait(30*time.Second))
		mustIs(t, err, dlm.ErrNotOwner)
		if time.Since(start) > 5*time.Second {
			t.Error("it waited")
		}
	})

	t.Run("auto-renewal keeps it by re-locking", func(t *testing.T) {
		l, err := a.Lock(ctx, "renewed", dlm.TTL(300*time.Millisecond), dlm.AutoRenew())
		if err != nil {
			t.Fatal(err)
		}
		for until := time.Now().Add(1200 * time.Millisecond); time.Now().Before(until); time.Sleep(50 * time.Millisecond) {
			if _, ok, err := b.TryLock(ctx, "renewed"); ok || err != nil {
				t.Fatalf("the renewed lock was not held: %v, %v", ok, err)
			}
		}
		select {
		case <-l.Lost():
			t.Fatal("lost while renewing")
		default:
		}
		if err := l.Unlock(ctx); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("an expired lock is never re-acquired by an extension", func(t *testing.T) {
		l, err := a.Lock(ctx, "brief", dlm.TTL(100*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		var theirs *dlm.Lock
		eventually(t, func() bool {
			var ok bool
			theirs, ok, err = b.TryLock(ctx, "brief", dlm.TTL(10*time.Second))
			return ok && err == nil
		})
		defer theirs.Unlock(ctx)
		mustIs(t, l.Extend(ctx, 10*time.Second), dlm.ErrLockLost)
		if _, ok, err := a.TryLock(ctx, "brief"); ok || err != nil {
			t.Fatalf("the extension took it back: %v, %v", ok, err)
		}
	})

	t.Run("values have no revisions; compare-and-set is refused, not faked", func(t *testing.T) {
		rev, err := a.Put(ctx, "k", []byte("v\x00"), 10*time.Second)
		if err != nil || rev != 0 {
			t.Fatalf("Put: %d, %v", rev, err)
		}
		v, err := a.Get(ctx, "k")
		if err != nil || string(v.Data) != "v\x00" || v.Revision != 0 {
			t.Fatalf("Get: %+v, %v", v, err)
		}
		_, err = a.PutIf(ctx, "k", []byte("x"), 10*time.Second, 7)
		mustIs(t, err, dlm.ErrProtocol)
		if !strings.Contains(err.Error(), "compare-and-set") {
			t.Errorf("%v does not say why", err)
		}
		_, err = b.Get(ctx, "k")
		mustIs(t, err, dlm.ErrNotOwner)
		if err := a.Erase(ctx, "k"); err != nil {
			t.Fatal(err)
		}
		mustIs(t, a.Erase(ctx, "k"), dlm.ErrNotFound)
	})

	t.Run("actions it does not know are bad requests that say so", func(t *testing.T) {
		_, err := a.TestLock(ctx, "x")
		mustIs(t, err, dlm.ErrBadRequest)
		_, err2 := a.Stats(ctx)
		mustIs(t, err2, dlm.ErrBadRequest)
		for _, err := range []error{err, err2} {
			var e *dlm.Error
			if !errors.As(err, &e) || !strings.Contains(e.Message, "does not know") {
				t.Errorf("%v does not say why", err)
			}
		}
	})
}
