package dlm_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log"
	"sync"
	"time"

	"dlm.example/dlm"
)

// In these examples, addr is the server's address, such as
// "127.0.0.1:37373" (the tests point it at a server of their own), and
// readerName and readerSecret the name and secret of one of its
// identities (dlm-server identity new).

// Take a lock, waiting for it in the server's fair queue, renewed in the
// background while held.
func Example() {
	ctx := context.Background()
	c, err := dlm.Dial(ctx, addr)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	l, err := c.Lock(ctx, "nightly-report",
		dlm.TTL(30*time.Second), dlm.Wait(10*time.Second), dlm.AutoRenew())
	if err != nil {
		log.Fatal(err)
	}
	defer l.Unlock(ctx)

	// Hand the fencing token to whatever the lock protects, so it can
	// refuse a holder whose lock expired.
	fmt.Println("holding", l.Name(), "with a token:", l.Token() > 0)
	// Output: holding nightly-report with a token: true
}

// Cancelling the context aborts a waiting Lock at once.
func ExampleClient_Lock_cancel() {
	ctx := context.Background()
	holder, _ := dlm.Dial(ctx, addr)
	defer holder.Close()
	waiter, _ := dlm.Dial(ctx, addr)
	defer waiter.Close()

	held, err := holder.Lock(ctx, "printer")
	if err != nil {
		log.Fatal(err)
	}
	defer held.Unlock(ctx)

	ctx2, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	_, err = waiter.Lock(ctx2, "printer", dlm.Wait(time.Minute))
	fmt.Println(errors.Is(err, dlm.ErrCancelled), errors.Is(err, context.DeadlineExceeded))
	// Output: true true
}

func ExampleClient_TryLock() {
	ctx := context.Background()
	a, _ := dlm.Dial(ctx, addr)
	defer a.Close()
	b, _ := dlm.Dial(ctx, addr)
	defer b.Close()

	l, ok, err := a.TryLock(ctx, "migration")
	if err != nil {
		log.Fatal(err)
	}
	if ok {
		defer l.Unlock(ctx)
	}
	fmt.Println("a got it:", ok)

	_, ok, err = b.TryLock(ctx, "migration")
	fmt.Println("b got it:", ok, err)
	// Output:
	// a got it: true
	// b got it: false <nil>
}

// A compare-and-set loop: each writer reads the revision and writes only if
// nobody wrote in between.
func ExampleClient_PutIf() {
	ctx := context.Background()
	c, _ := dlm.Dial(ctx, addr)
	defer c.Close()
	defer c.Erase(ctx, "counter")

	increment := func() {
		for {
			var n int
			var rev uint64
			if v, err := c.Get(ctx, "counter"); err == nil {
				fmt.Sscan(string(v.Data), &n)
				rev = v.Revision
			} else if !errors.Is(err, dlm.ErrNotFound) {
				log.Fatal(err)
			}
			_, err := c.PutIf(ctx, "counter", []byte(fmt.Sprint(n+1)), time.Minute, rev)
			if errors.Is(err, dlm.ErrConflict) {
				continue // someone else wrote first: read again
			}
			if err != nil {
				log.Fatal(err)
			}
			return
		}
	}
	var wg sync.WaitGroup
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); increment() }()
	}
	wg.Wait()

	v, _ := c.Get(ctx, "counter")
	fmt.Printf("counter = %s (revision %d)\n", v.Data, v.Revision)
	// Output: counter = 3 (revision 3)
}

// A sync.Locker over a dlm lock, for code that wants one.
func ExampleClient_Locker() {
	ctx := context.Background()
	c, _ := dlm.Dial(ctx, addr)
	defer c.Close()

	var mu sync.Locker = c.Locker("config-file", dlm.TTL(10*time.Second))
	mu.Lock()
	fmt.Println("editing the config file")
	mu.Unlock()
	// Output: editing the config file
}

// Sealed values: the server only ever stores ciphertext.
func ExampleWithSealedKey() {
	ctx := context.Background()
	key, err := dlm.NewSealedKey() // keep it somewhere safe: it reads the values
	if err != nil {
		log.Fatal(err)
	}
	c, _ := dlm.Dial(ctx, addr, dlm.WithSealedKey(key))
	defer c.Close()

	if _, err := c.Put(ctx, "db-password", []byte("hunter2"), time.Minute); err != nil {
		log.Fatal(err)
	}
	v, _ := c.Get(ctx, "db-password")
	fmt.Println(string(v.Data))
	c.Erase(ctx, "db-password")
	// Output: hunter2
}

// base64Encoder is a custom encoder written in Go.
type base64Encoder struct{}

func (base64Encoder) Encode(name string, plain []byte) (string, error) {
	return base64.StdEncoding.EncodeToString(plain), nil
}

func (base64Encoder) Decode(name, stored string) ([]byte, error) {
	return base64.StdEncoding.DecodeString(stored)
}

// rawEncoder stores values verbatim (they must be UTF-8): a client with it
// sees the exact string another client's encoder stored.
type rawEncoder struct{}

func (rawEncoder) Encode(_ string, b []byte) (string, error) { return string(b), nil }
func (rawEncoder) Decode(_, s string) ([]byte, error)        { return []byte(s), nil }

func ExampleWithEncoder() {
	ctx := context.Background()
	c, _ := dlm.Dial(ctx, addr, dlm.WithClientID("example-encoder"), dlm.WithEncoder(base64Encoder{}))
	defer c.Close()

	c.Put(ctx, "greeting", []byte("hello"), time.Minute)
	v, _ := c.Get(ctx, "greeting")
	fmt.Println(string(v.Data))

	// What the server holds, read by the same owner through rawEncoder
	// (which stores and reads strings verbatim):
	raw, _ := dlm.Dial(ctx, addr, dlm.WithClientID("example-encoder"), dlm.WithEncoder(rawEncoder{}))
	defer raw.Close()
	stored, _ := raw.Get(ctx, "greeting")
	fmt.Println(string(stored.Data))
	c.Erase(ctx, "greeting")
	// Output:
	// hello
	// aGVsbG8=
}

// Watch for the loss of an auto-renewed lock, and stop the work it guards.
func ExampleLock_Lost() {
	ctx := context.Background()
	c, _ := dlm.Dial(ctx, addr)
	defer c.Close()

	l, err := c.Lock(ctx, "leader", dlm.TTL(10*time.Second), dlm.AutoRenew())
	if err != nil {
		log.Fatal(err)
	}
	defer l.Unlock(ctx)

	work, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		select {
		case <-l.Lost():
			stop() // another node may be leader now
		case <-work.Done():
		}
	}()
	fmt.Println("leading:", work.Err() == nil)
	// Output: leading: true
}

// Lock two accounts for a transfer, both or neither: transfers naming
// them in the other order wait in the same queues, so none deadlocks.
func ExampleClient_LockAll() {
	ctx := context.Background()
	c, _ := dlm.Dial(ctx, addr)
	defer c.Close()

	m, err := c.LockAll(ctx, []string{"acct/1", "acct/7"},
		dlm.TTL(10*time.Second), dlm.Wait(5*time.Second))
	if err != nil {
		log.Fatal(err)
	}
	defer m.Unlock(ctx)
	tokens := m.Tokens() // hand tokens[i] to what account i's lock protects
	fmt.Println(len(tokens), "tokens, increasing:", tokens[1] > tokens[0])
	// Output: 2 tokens, increasing: true
}

// Share a value with another identity: it reads the value and whose it
// is, but only the owner may change it.
func ExampleReaders() {
	ctx := context.Background()
	owner, _ := dlm.Dial(ctx, addr, dlm.WithClientID("config-service"))
	defer owner.Close()
	reader, _ := dlm.Dial(ctx, addr, dlm.WithCredentials(readerName, readerSecret))
	defer reader.Close()

	if _, err := owner.Put(ctx, "feature-x", []byte("on"), time.Minute, dlm.Readers(readerName)); err != nil {
		log.Fatal(err)
	}
	defer owner.Erase(ctx, "feature-x")
	v, err := reader.Get(ctx, "feature-x")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s, from %s\n", v.Data, v.Owner)
	_, err = reader.Put(ctx, "feature-x", []byte("off"), time.Minute)
	fmt.Println(errors.Is(err, dlm.ErrNotOwner))
	// Output:
	// on, from config-service
	// true
}
