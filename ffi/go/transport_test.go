package dlm_test

import (
	"context"

	"io"
	"net"
	"sync"
	"testing"
	"time"

	"dlm.example/dlm"
)

// slowProxy forwards connections to the test server, holding every chunk
// of the server's answers back for delay before passing it on.
func slowProxy(t *testing.T, delay time.Duration) string {
	t.Helper()
	return fakeServer(t, func(client net.Conn) {
		server, err := net.Dial("tcp", addr)
		if err != nil {
			return
		}
		defer server.Close()
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = io.Copy(server, client)
			server.Close()
		}()
		buf := make([]byte, 64<<10)
		for {
			n, err := server.Read(buf)
			if n > 0 {
				time.Sleep(delay)
				if _, werr := client.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		client.Close()
		wg.Wait()
	})
}

// A call whose context ends while its answer is on its way returns at
// once with ErrCancelled; the connection stays in step, so the next calls
// on it get their own answers.
func TestACallInFlightHonoursItsContext(t *testing.T) {
	// Answers take a second; the context, 50 ms.
	c := dialAt(t, slowProxy(t, time.Second))
	key := unique(t, "k")
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Put(ctx, key, []byte("first"), time.Minute)
	mustIs(t, err, dlm.ErrCancelled, context.DeadlineExceeded)
	if took := time.Since(start); took > 900*time.Millisecond {
		t.Fatalf("the cancelled Put returned after %v, as late as its answer", took)
	}
	bg := context.Background()
	rev, err := c.Put(bg, key, []byte("second"), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	v, err := c.Get(bg, key)
	if err != nil {
		t.Fatal(err)
	}
	if string(v.Data) != "second" || v.Revision != rev || rev != 2 {
		t.Fatalf("got %q at revision %d after revision %d; want \"second\" at 2 (the abandoned put was applied first)", v.Data, v.Revision, rev)
	}
}

// A silent server: a call with a context shorter than the I/O timeout
// gives up with the context, not the timeout.
func TestASilentServerAndAShortContext(t *testing.T) {
	c := dialAt(t, fakeServer(t, silent), dlm.WithIOTimeout(10*time.Second))
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.TestLock(ctx, "k")
	mustIs(t, err, dlm.ErrCancelled, context.DeadlineExceeded)
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("TestLock returned after %v", took)
	}
}

// A lock (without Wait) granted after its caller gave up is released, not
// left held until its TTL.
func TestALockGrantedAfterItsCallerGaveUpIsReleased(t *testing.T) {
	slow := dialAt(t, slowProxy(t, time.Second))
	other := dial(t)
	name := unique(t, "lock")
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := slow.Lock(ctx, name, dlm.TTL(time.Minute))
	mustIs(t, err, dlm.ErrCancelled, context.DeadlineExceeded)
	// The grant happened on the server; its answer comes a second later
	// and the client releases it then. Without that, it would stay taken
	// for the minute of its TTL.
	deadline := time.Now().Add(15 * time.Second)
	for {
		l, ok, err := other.TryLock(context.Background(), name)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			_ = l.Unlock(context.Background())
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the lock granted after its caller gave up is still held")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Many goroutines on one Client share a few connections: the server sees
// no more than WithSharedConns of them (plus none for waits: none wait).
func TestCallsArePipelinedOnTheSharedConnections(t *testing.T) {
	var mu sync.Mutex
	conns := 0
	counting := fakeServer(t, func(client net.Conn) {
		mu.Lock()
		conns++
		mu.Unlock()
		server, err := net.Dial("tcp", addr)
		if err != nil {
			return
		}
		defer server.Close()
		go func() {
			_, _ = io.Copy(server, client)
			server.Close()
		}()
		_, _ = io.Copy(client, server)
	})
	c := dialAt(t, counting, dlm.WithSharedConns(2))
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := 0; g < 64; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := unique(t, "k")
			for i := 0; i < 20; i++ {
				if _, err := c.Put(context.Background(), key, []byte("v"), time.Minute); err != nil {
					errs <- err
					return
				}
				if _, err := c.Get(context.Background(), key); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if conns < 1 || conns > 2 {
		t.Fatalf("64 goroutines opened %d connections; want 1 or 2", conns)
	}
}
