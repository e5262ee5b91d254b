package dlm_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"dlm.example/dlm"
)

func TestLibraryVersionMatchesTheHeader(t *testing.T) {
	header, err := os.ReadFile(filepath.Join(repoRoot, "ffi", "libdlm", "include", "dlm.h"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`#define DLM_VERSION_STRING "([^"]+)"`).FindSubmatch(header)
	if m == nil {
		t.Fatal("no DLM_VERSION_STRING in dlm.h")
	}
	if got := dlm.LibraryVersion(); got != string(m[1]) {
		t.Fatalf("LibraryVersion() = %q, header says %q", got, m[1])
	}
}

func TestDialGivesRandomIDsOrTheOneAskedFor(t *testing.T) {
	a, b := dial(t), dial(t)
	if len(a.ID()) != 48 || a.ID() == b.ID() {
		t.Fatalf("IDs %q and %q: want two different 48-character IDs", a.ID(), b.ID())
	}
	for _, r := range a.ID() {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			t.Fatalf("ID %q is not URL-safe", a.ID())
		}
	}
	if got := dial(t, dlm.WithClientID("me")).ID(); got != "me" {
		t.Fatalf("ID() = %q, want me", got)
	}
}

func TestDialFailures(t *testing.T) {
	ctx := context.Background()
	// Nothing listens on port 1.
	start := time.Now()
	_, err := dlm.Dial(ctx, "127.0.0.1:1", dlm.WithConnectTimeout(200*time.Millisecond))
	mustIs(t, err, dlm.ErrUnavailable)
	if !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Errorf("%q does not name the address", err)
	}
	// libdlm says why (through dlm_options_last_error), once: its detail
	// never repeats the status.
	if !strings.Contains(err.Error(), "refused") {
		t.Errorf("%q does not say why", err)
	}
	if n := strings.Count(err.Error(), "server unavailable"); n != 1 {
		t.Errorf("%q says what failed %d times", err, n)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("refused connections took %v", time.Since(start))
	}

	for _, tc := range []struct {
		name string
		addr string
		opts []dlm.Option
	}{
		{"empty address", "", nil},
		{"address without a port", "localhost", nil},
		{"short sealed key", addr, []dlm.Option{dlm.WithSealedKey(make([]byte, 31))}},
		{"zero I/O timeout", addr, []dlm.Option{dlm.WithIOTimeout(-time.Second)}},
		{"zero connect timeout", addr, []dlm.Option{dlm.WithConnectTimeout(-1)}},
		{"empty credentials", addr, []dlm.Option{dlm.WithCredentials("", "")}},
		{"client ID not UTF-8", addr, []dlm.Option{dlm.WithClientID("\xff")}},
	} {
		_, err := dlm.Dial(ctx, tc.addr, tc.opts...)
		if !errors.Is(err, dlm.ErrInvalidArgument) {
			t.Errorf("%s: got %v, want ErrInvalidArgument", tc.name, err)
		}
	}

	done, cancel := context.WithCancel(ctx)
	cancel()
	_, err = dlm.Dial(done, addr)
	mustIs(t, err, dlm.ErrCancelled, context.Canceled)
}

// A Dial whose connection attempt hangs gives up when ctx is done.
func TestDialGivesUpWhenTheContextIsDone(t *testing.T) {
	hanging := hangingAddr(t)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := dlm.Dial(ctx, hanging, dlm.WithConnectTimeout(5*time.Second))
	mustIs(t, err, dlm.ErrCancelled, context.DeadlineExceeded)
	if took := time.Since(start); took > time.Second {
		t.Fatalf("Dial returned after %v", took)
	}
}

// hangingAddr is an address whose TCP handshake never completes: a socket
// that listens with a backlog of 0, never accepts, and is already full, so
// the kernel drops further SYNs.
func hangingAddr(t *testing.T) string {
	t.Helper()
	lc := net.ListenConfig{}
	l, err := lc.Listen(context.Background(), "tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	raw, err := l.(*net.TCPListener).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var listenErr error
	if err := raw.Control(func(fd uintptr) { listenErr = syscall.Listen(int(fd), 0) }); err != nil || listenErr != nil {
		t.Skip("cannot shrink the listen backlog:", err, listenErr)
	}
	at := l.Addr().String()
	for i := 0; i < 4; i++ {
		c, err := net.DialTimeout("tcp", at, 50*time.Millisecond)
		if err != nil {
			return at
		}
		t.Cleanup(func() { c.Close() })
	}
	t.Skip("could not fill the listen backlog")
	return ""
}

func TestValuesRoundTripWithRevisionsAndCAS(t *testing.T) {
	ctx := context.Background()
	c := dial(t)
	key := unique(t, "k")
	_, err := c.Get(ctx, key)
	mustIs(t, err, dlm.ErrNotFound)

	value := []byte("\x00\xffbinary\n\"quoted\" ünïcode")
	rev, err := c.Put(ctx, key, value, 10*time.Second)
	if err != nil || rev != 1 {
		t.Fatalf("Put = %d, %v; want revision 1", rev, err)
	}
	v, err := c.Get(ctx, key)
	if err != nil || !bytes.Equal(v.Data, value) || v.Revision != 1 {
		t.Fatalf("Get = %+v, %v", v, err)
	}
	if rev, err = c.Put(ctx, key, nil, 10*time.Second); err != nil || rev != 2 {
		t.Fatalf("Put(empty) = %d, %v; want revision 2", rev, err)
	}
	if v, err = c.Get(ctx, key); err != nil || len(v.Data) != 0 || v.Revision != 2 {
		t.Fatalf("Get(empty) = %+v, %v", v, err)
	}

	// Compare-and-set: a stale revision conflicts and reports the current one.
	rev, err = c.PutIf(ctx, key, []byte("x"), 10*time.Second, 7)
	mustIs(t, err, dlm.ErrConflict)
	if rev != 2 {
		t.Fatalf("PutIf conflict reported revision %d, want 2", rev)
	}
	if rev, err = c.PutIf(ctx, key, []byte("y"), 10*time.Second, 2); err != nil || rev != 3 {
		t.Fatalf("PutIf = %d, %v; want 3", rev, err)
	}
	// Revision 0: only if absent.
	rev, err = c.PutIf(ctx, key, []byte("z"), 10*time.Second, 0)
	mustIs(t, err, dlm.ErrConflict)
	if rev != 3 {
		t.Fatalf("PutIf(0) conflict reported revision %d, want 3", rev)
	}
	fresh := unique(t, "fresh")
	if rev, err = c.PutIf(ctx, fresh, []byte("new"), 10*time.Second, 0); err != nil || rev != 1 {
		t.Fatalf("PutIf(absent, 0) = %d, %v", rev, err)
	}
	rev, err = c.PutIf(ctx, unique(t, "absent"), []byte("x"), 10*time.Second, 5)
	mustIs(t, err, dlm.ErrConflict)
	if rev != 0 {
		t.Fatalf("PutIf(absent, 5) conflict reported revision %d, want 0", rev)
	}

	if err := c.Erase(ctx, key); err != nil {
		t.Fatal(err)
	}
	mustIs(t, c.Erase(ctx, key), dlm.ErrNotFound)
	_, err = c.Get(ctx, key)
	mustIs(t, err, dlm.ErrNotFound)
}

func TestValuesExpire(t *testing.T) {
	ctx := context.Background()
	c := dial(t)
	key := unique(t, "k")
	put := time.Now()
	if _, err := c.Put(ctx, key, []byte("v"), 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() bool {
		_, err := c.Get(ctx, key)
		return errors.Is(err, dlm.ErrNotFound)
	})
	if time.Since(put) < 90*time.Millisecond { // whole milliseconds on the server
		t.Error("gone before its TTL")
	}
}

func TestValuesBelongToTheirOwner(t *testing.T) {
	ctx := context.Background()
	a, b := dial(t), dial(t)
	key := unique(t, "k")
	if _, err := a.Put(ctx, key, []byte("a's"), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	_, err := b.Get(ctx, key)
	mustIs(t, err, dlm.ErrNotOwner)
	_, err = b.Put(ctx, key, []byte("b's"), 10*time.Second)
	mustIs(t, err, dlm.ErrNotOwner)
	mustIs(t, b.Erase(ctx, key), dlm.ErrNotOwner)
	// The same owner ID is the same owner, whichever client sends it.
	same := dial(t, dlm.WithClientID(a.ID()))
	if v, err := same.Get(ctx, key); err != nil || string(v.Data) != "a's" {
		t.Fatalf("Get by the same ID = %q, %v", v.Data, err)
	}
}

// A value larger than Get's first buffer (64 KiB) takes the second round
// trip; an identity allows values that large.
func TestLargeValuesWithAnIdentity(t *testing.T) {
	ctx := context.Background()
	c := dial(t, dlm.WithCredentials(identityName, identitySecret))
	key := unique(t, "big")
	big := bytes.Repeat([]byte("0123456789abcdef"), 100<<10/16)
	if _, err := c.Put(ctx, key, big, time.Minute); err != nil {
		t.Fatal(err)
	}
	v, err := c.Get(ctx, key)
	if err != nil || !bytes.Equal(v.Data, big) {
		t.Fatalf("Get: %d bytes, %v; want %d bytes back", len(v.Data), err, len(big))
	}
	// Anonymous clients are held to 16 KiB (stored, i.e. 8 KiB of table-
	// encoded bytes) by default.
	_, err = dial(t).Put(ctx, key+"-anon", big, time.Minute)
	mustIs(t, err, dlm.ErrBadRequest)
}

func TestCredentials(t *testing.T) {
	ctx := context.Background()
	id := "cred-" + unique(t, "id")
	authed := dial(t, dlm.WithClientID(id), dlm.WithCredentials(identityName, identitySecret))
	key := unique(t, "k")
	// Longer than the anonymous limit of 3543 s.
	if _, err := authed.Put(ctx, key, []byte("v"), 2*time.Hour); err != nil {
		t.Fatal(err)
	}
	l, err := authed.Lock(ctx, key, dlm.TTL(2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Unlock(ctx)

	// The same ID without the identity is another owner.
	anon := dial(t, dlm.WithClientID(id))
	_, err = anon.Get(ctx, key)
	mustIs(t, err, dlm.ErrNotOwner)
	_, err = anon.Lock(ctx, key)
	mustIs(t, err, dlm.ErrNotOwner)
	_, err = anon.Lock(ctx, unique(t, "long"), dlm.TTL(2*time.Hour))
	mustIs(t, err, dlm.ErrBadRequest)

	// A wrong secret is refused without saying whether the name exists.
	wrong := dial(t, dlm.WithCredentials(identityName, strings.Repeat("x", 1024)))
	_, err = wrong.Get(ctx, key)
	mustIs(t, err, dlm.ErrBadRequest)
	nobody := dial(t, dlm.WithCredentials("nobody", strings.Repeat("x", 1024)))
	_, err2 := nobody.Get(ctx, key)
	mustIs(t, err2, dlm.ErrBadRequest)
	if err.(*dlm.Error).Message != err2.(*dlm.Error).Message {
		t.Fatalf("messages differ: %q vs %q", err, err2)
	}
}

func TestLegacyFraming(t *testing.T) {
	ctx := context.Background()
	c := dial(t, dlm.WithLegacyFraming())
	key := unique(t, "k")
	if _, err := c.Put(ctx, key, []byte("old school"), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if v, err := c.Get(ctx, key); err != nil || string(v.Data) != "old school" {
		t.Fatalf("Get = %q, %v", v.Data, err)
	}
	l, err := c.Lock(ctx, key, dlm.TTL(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if v, err := c.ServerVersion(ctx); err != nil || !strings.Contains(v, "JackrabbitDLM") {
		t.Fatalf("ServerVersion = %q, %v", v, err)
	}
}

func TestServerVersionAndStats(t *testing.T) {
	ctx := context.Background()
	c := dial(t)
	v, err := c.ServerVersion(ctx)
	if err != nil || !strings.Contains(v, "JackrabbitDLM") {
		t.Fatalf("ServerVersion = %q, %v", v, err)
	}
	l, err := c.Lock(ctx, unique(t, "l"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Unlock(ctx)
	stats, err := c.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if stats["ALock"] < 1 || stats["Lock"] < 1 {
		t.Fatalf("Stats = %v; want ALock and Lock >= 1", stats)
	}
}

// fakeServer listens on a loopback port until the test ends and runs serve
// on each connection it accepts, closing the connection after. It returns
// the address.
func fakeServer(t *testing.T, serve func(net.Conn)) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				serve(conn)
			}()
		}
	}()
	return l.Addr().String()
}

// silent answers a client's first request, asking who leads, as a single
// server does, and then reads and never answers, until the client goes.
func silent(conn net.Conn) {
	r := bufio.NewReader(conn)
	if line, err := r.ReadString('\n'); err != nil || !strings.Contains(line, `"Cluster"`) {
		return
	}
	if _, err := conn.Write([]byte(`{"Status":"DONE","Cluster":{"Mode":"single"}}` + "\n")); err != nil {
		return
	}
	_, _ = io.Copy(io.Discard, r)
}

// A server that accepts and never answers: calls fail with ErrUnavailable
// once the I/O timeout passes.
func TestIOTimeout(t *testing.T) {
	addr := fakeServer(t, silent)
	c := dialAt(t, addr, dlm.WithIOTimeout(200*time.Millisecond))
	start := time.Now()
	_, err := c.Put(context.Background(), "k", []byte("v"), time.Second)
	took := time.Since(start)
	mustIs(t, err, dlm.ErrUnavailable)
	if took < 150*time.Millisecond || took > 3*time.Second {
		t.Fatalf("the call failed after %v; want about 200ms", took)
	}
}

// A server that answers nonsense: ErrProtocol.
func TestProtocolError(t *testing.T) {
	addr := fakeServer(t, func(conn net.Conn) {
		r := bufio.NewReader(conn)
		for {
			if _, err := r.ReadString('\n'); err != nil {
				return
			}
			fmt.Fprintln(conn, `{"Status":"Bananas"}`)
		}
	})
	c := dialAt(t, addr)
	_, err := c.Put(context.Background(), "k", []byte("v"), time.Second)
	mustIs(t, err, dlm.ErrProtocol)
	if e := err.(*dlm.Error); e.Op != "put" || e.Name != "k" || e.Message == "" {
		t.Fatalf("error %#v lacks its details", e)
	}
}

func TestNoMemory(t *testing.T) {
	srv := startServer(t, "--memory-budget", "4KiB")
	c := dialAt(t, srv.addr)
	ctx := context.Background()
	var err error
	for i := 0; i < 1000 && err == nil; i++ {
		_, err = c.Put(ctx, fmt.Sprintf("k%d", i), bytes.Repeat([]byte("x"), 100), time.Minute)
	}
	mustIs(t, err, dlm.ErrNoMemory)
}

func TestInvalidArguments(t *testing.T) {
	ctx := context.Background()
	c := dial(t)
	check := func(what string, err error) {
		t.Helper()
		mustIs(t, err, dlm.ErrInvalidArgument)
		if err.(*dlm.Error).Message == "" {
			t.Errorf("%s: no message in %v", what, err)
		}
	}
	_, err := c.Lock(ctx, "")
	check("Lock", err)
	_, _, err = c.TryLock(ctx, "")
	check("TryLock", err)
	_, err = c.Lock(ctx, "x", dlm.TTL(0))
	check("Lock TTL 0", err)
	_, err = c.Put(ctx, "", []byte("v"), time.Second)
	check("Put", err)
	_, err = c.Put(ctx, "x", []byte("v"), 0)
	check("Put TTL 0", err)
	_, err = c.PutIf(ctx, "", []byte("v"), time.Second, 0)
	check("PutIf", err)
	_, err = c.Get(ctx, "")
	check("Get", err)
	check("Erase", c.Erase(ctx, ""))
	_, err = c.TestLock(ctx, "")
	check("TestLock", err)
	check("UnlockByName", c.UnlockByName(ctx, "", 0))
	_, err = c.Lock(ctx, "not\xffutf8")
	check("Lock bad UTF-8", err)
	l, err := c.Lock(ctx, unique(t, "l"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Unlock(ctx)
	check("Extend 0", l.Extend(ctx, 0))
}

// Calls with a context that is already done do nothing.
func TestDoneContexts(t *testing.T) {
	c := dial(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	key := unique(t, "k")
	_, err := c.Put(ctx, key, []byte("v"), time.Second)
	mustIs(t, err, dlm.ErrCancelled, context.Canceled)
	if _, err := c.Get(context.Background(), key); !errors.Is(err, dlm.ErrNotFound) {
		t.Fatalf("the cancelled Put stored something: %v", err)
	}
	for name, err := range map[string]error{
		"Get":          second(c.Get(ctx, key)),
		"PutIf":        second(c.PutIf(ctx, key, nil, time.Second, 0)),
		"Erase":        c.Erase(ctx, key),
		"Lock":         second(c.Lock(ctx, key)),
		"TestLock":     second(c.TestLock(ctx, key)),
		"UnlockByName": c.UnlockByName(ctx, key, 0),
		"Stats":        second(c.Stats(ctx)),
		"Version":      second(c.ServerVersion(ctx)),
	} {
		if !errors.Is(err, dlm.ErrCancelled) || !errors.Is(err, context.Canceled) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func second[T any](_ T, err error) error { return err }

func TestClose(t *testing.T) {
	ctx := context.Background()
	holder := dial(t)
	c, err := dlm.Dial(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	held := unique(t, "held")
	l, err := c.Lock(ctx, held, dlm.TTL(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	// A lock waiting when the client closes is cancelled.
	busy := unique(t, "busy")
	other, err := holder.Lock(ctx, busy)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Unlock(ctx)
	waited := make(chan error, 1)
	go func() {
		_, err := c.Lock(ctx, busy, dlm.Wait(time.Minute))
		waited <- err
	}()
	waitForWaiters(t, holder, 1)

	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal("a second Close:", err)
	}
	select {
	case err := <-waited:
		mustIs(t, err, dlm.ErrCancelled, dlm.ErrClosed)
	case <-time.After(2 * time.Second):
		t.Fatal("Close did not cancel the waiting lock")
	}
	// The held lock was released.
	if st, err := holder.TestLock(ctx, held); err != nil || st.Status != dlm.LockFree {
		t.Fatalf("after Close, TestLock = %+v, %v", st, err)
	}
	mustIs(t, l.Unlock(ctx), dlm.ErrClosed)
	mustIs(t, l.Extend(ctx, time.Second), dlm.ErrClosed)
	if l.Remaining() != 0 {
		t.Fatal("a lock of a closed client has time left")
	}

	for name, err := range map[string]error{
		"Lock":         second(c.Lock(ctx, "x")),
		"Put":          second(c.Put(ctx, "x", nil, time.Second)),
		"PutIf":        second(c.PutIf(ctx, "x", nil, time.Second, 0)),
		"Get":          second(c.Get(ctx, "x")),
		"Erase":        c.Erase(ctx, "x"),
		"TestLock":     second(c.TestLock(ctx, "x")),
		"UnlockByName": c.UnlockByName(ctx, "x", 0),
		"Stats":        second(c.Stats(ctx)),
		"Version":      second(c.ServerVersion(ctx)),
	} {
		if !errors.Is(err, dlm.ErrClosed) {
			t.Errorf("%s after Close: %v", name, err)
		}
	}
	if c.ID() == "" {
		t.Error("ID() is empty after Close")
	}
}

// One Client shared by many goroutines (run with -race).
func TestOneClientManyGoroutines(t *testing.T) {
	ctx := context.Background()
	c := dial(t)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := 0; g < 64; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := fmt.Sprintf("%s/%d", unique(t, "k"), g)
			for i := 0; i < 20; i++ {
				want := []byte(fmt.Sprintf("%d-%d", g, i))
				if _, err := c.Put(ctx, key, want, 10*time.Second); err != nil {
					errs <- err
					return
				}
				got, err := c.Get(ctx, key)
				if err != nil || !bytes.Equal(got.Data, want) || got.Revision != uint64(i+1) {
					errs <- fmt.Errorf("Get = %+v, %v; want %q revision %d", got, err, want, i+1)
					return
				}
			}
			if err := c.Erase(ctx, key); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// eventually polls cond every 5 ms until it holds, failing the test after
// 5 s: how the tests wait for something to happen, rather than sleeping.
func eventually(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitForWaiters waits until the server's AWait gauge is n.
func waitForWaiters(t *testing.T, c *dlm.Client, n uint64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		stats, err := c.Stats(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if stats["AWait"] == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("AWait = %d, want %d", stats["AWait"], n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
