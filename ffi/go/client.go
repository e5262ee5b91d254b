package dlm

// #include "shim.h"
import "C"

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"runtime/cgo"
	"sync"
	"time"
	"unsafe"
)

// Client is a connection to one dlm server: libdlm's dlm_client, which
// keeps a small pool of persistent connections.
//
// A Client is safe for concurrent use by many goroutines: libdlm's
// dlm_client is thread-safe, and calls from several goroutines run side by
// side on its pool (a lock waiting in the server's queue occupies only its
// own connection). Share one Client rather than dialling per goroutine —
// but remember that a Client is one owner: every lock it takes belongs to
// its owner ID, so two goroutines locking the same name through the same
// Client do not exclude each other (the second Lock re-locks and returns
// at once). Give each party that must exclude the others its own Client.
//
// Close the Client when done; a Client that becomes unreachable is closed
// by a finalizer, but when that happens is up to the garbage collector.
type Client struct {
	ptr *C.dlm_client
	id  string

	// mu is held shared by every call on ptr and exclusively by Close,
	// because libdlm must not free a client while a call on it runs.
	mu     sync.RWMutex
	closed bool

	reg *registry

	// The Go encoder (if any) and its handle, libdlm's userdata for as
	// long as ptr lives.
	enc       *goEncoder
	encHandle cgo.Handle
}

// registry tracks what Close must stop or free first: the cancel handles
// of waiting locks and the locks still held. It is separate from Client
// so that the locks can point at it without making a cycle through the
// Client's finalizer.
type registry struct {
	mu      sync.Mutex
	closing bool
	cancels map[*C.dlm_cancel]struct{}
	locks   map[*lockCore]struct{}
}

func (r *registry) addCancel(c *C.dlm_cancel) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closing {
		return false
	}
	r.cancels[c] = struct{}{}
	return true
}

func (r *registry) removeCancel(c *C.dlm_cancel) {
	r.mu.Lock()
	delete(r.cancels, c)
	r.mu.Unlock()
}

func (r *registry) addLock(l *lockCore) {
	r.mu.Lock()
	r.locks[l] = struct{}{}
	r.mu.Unlock()
}

func (r *registry) removeLock(l *lockCore) {
	r.mu.Lock()
	delete(r.locks, l)
	r.mu.Unlock()
}

// Dial connects to a dlm server at addr ("host:port"). One connection is
// opened now, so an unreachable server is reported here (ErrUnavailable).
// ctx bounds the dial: if it is done first, Dial returns ErrCancelled at
// once and the connection being made is closed in the background.
func Dial(ctx context.Context, addr string, opts ...Option) (*Client, error) {
	var cfg dialConfig
	for _, o := range opts {
		o(&cfg)
	}
	if err := ctx.Err(); err != nil {
		return nil, newError("dial", "", ErrCancelled, err)
	}
	o, err := cfg.options()
	if err != nil {
		return nil, err
	}
	var enc *goEncoder
	var encHandle cgo.Handle
	if cfg.encoder != nil {
		enc = &goEncoder{enc: cfg.encoder}
		encHandle = cgo.NewHandle(enc)
		if s := C.gdlm_options_set_go_encoder(o, C.uintptr_t(encHandle)); s != C.DLM_OK {
			C.dlm_options_free(o)
			encHandle.Delete()
			return nil, statusError("dial", "", s, nil)
		}
	}

	type result struct {
		ptr *C.dlm_client
		s   C.dlm_status
		err C.gdlm_err
	}
	connect := func() result {
		var r result
		r.s = C.gdlm_client_new(textOf(addr), C.size_t(len(addr)), o, &r.ptr, &r.err)
		C.dlm_options_free(o)
		return r
	}
	var r result
	if ctx.Done() == nil {
		r = connect()
	} else {
		done := make(chan result, 1)
		go func() { done <- connect() }()
		select {
		case r = <-done:
		case <-ctx.Done():
			go func() {
				if r := <-done; r.s == C.DLM_OK {
					C.dlm_client_free(r.ptr)
				} else if r.err.msg != nil {
					C.free(unsafe.Pointer(r.err.msg))
				}
				if encHandle != 0 {
					encHandle.Delete()
				}
			}()
			return nil, newError("dial", "", ErrCancelled, ctx.Err())
		}
	}
	if r.s != C.DLM_OK {
		if encHandle != 0 {
			encHandle.Delete()
		}
		e := statusError("dial", "", r.s, &r.err)
		if e.Message == "" {
			e.Message = addr
		} else {
			e.Message = fmt.Sprintf("%s (%s)", e.Message, addr)
		}
		return nil, e
	}
	c := &Client{
		ptr:       r.ptr,
		enc:       enc,
		encHandle: encHandle,
		reg: &registry{
			cancels: map[*C.dlm_cancel]struct{}{},
			locks:   map[*lockCore]struct{}{},
		},
	}
	runtime.SetFinalizer(c, (*Client).Close)
	c.id, err = readText(64, func(buf *C.char, n C.size_t, out *C.size_t, _ *C.gdlm_err) C.dlm_status {
		s := C.dlm_client_id(c.cptr(), buf, n, out)
		runtime.KeepAlive(c)
		return s
	})
	if err != nil {
		c.Close()
		return nil, newError("dial", "", ErrInternal, err)
	}
	return c, nil
}

// options builds libdlm's dlm_options from the configuration.
func (cfg *dialConfig) options() (*C.dlm_options, error) {
	var o *C.dlm_options
	if s := C.dlm_options_new(&o); s != C.DLM_OK {
		return nil, statusError("dial", "", s, nil)
	}
	fail := func(s C.dlm_status, what string) error {
		C.dlm_options_free(o)
		e := statusError("dial", "", s, nil)
		e.Message = what
		return e
	}
	if cfg.clientID != "" {
		if s := C.dlm_options_set_client_id(o, textOf(cfg.clientID), C.size_t(len(cfg.clientID))); s != C.DLM_OK {
			return nil, fail(s, "the client ID must be valid UTF-8")
		}
	}
	if cfg.connectTimeout != 0 {
		if s := C.dlm_options_set_connect_timeout_ms(o, C.uint64_t(millis(cfg.connectTimeout))); s != C.DLM_OK {
			return nil, fail(s, "the connect timeout must be positive")
		}
	}
	if cfg.ioTimeout != 0 {
		if s := C.dlm_options_set_io_timeout_ms(o, C.uint64_t(millis(cfg.ioTimeout))); s != C.DLM_OK {
			return nil, fail(s, "the I/O timeout must be positive")
		}
	}
	if cfg.legacy {
		if s := C.dlm_options_set_legacy_framing(o, true); s != C.DLM_OK {
			return nil, fail(s, "cannot set legacy framing")
		}
	}
	if cfg.hasCreds {
		if s := C.dlm_options_set_credentials(o,
			textOf(cfg.credName), C.size_t(len(cfg.credName)),
			textOf(cfg.credSecret), C.size_t(len(cfg.credSecret))); s != C.DLM_OK {
			return nil, fail(s, "credentials need a non-empty UTF-8 name and secret")
		}
	}
	if cfg.sealedKey != nil {
		key := cfg.sealedKey
		if s := C.dlm_options_set_sealed_key(o, unsafe.Pointer(unsafe.SliceData(key)), C.size_t(len(key))); s != C.DLM_OK {
			return nil, fail(s, fmt.Sprintf("a sealed key is %d bytes, not %d", SealedKeySize, len(key)))
		}
	}
	return o, nil
}

// Close closes the client: waiting locks are cancelled (they return
// ErrCancelled), calls in flight are waited for, locks still held are
// released (best effort, as by Unlock), and the connections are closed.
// Later calls fail with ErrClosed. Close is idempotent and always returns
// nil; it is safe to call from several goroutines.
func (c *Client) Close() error {
	c.reg.mu.Lock()
	c.reg.closing = true
	for cancel := range c.reg.cancels {
		C.dlm_cancel_trigger(cancel)
	}
	c.reg.mu.Unlock()

	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	runtime.SetFinalizer(c, nil)

	// libdlm wants a client's locks freed before the client.
	c.reg.mu.Lock()
	locks := make([]*lockCore, 0, len(c.reg.locks))
	for l := range c.reg.locks {
		locks = append(locks, l)
	}
	c.reg.mu.Unlock()
	for _, l := range locks {
		l.free(true)
	}

	C.dlm_client_free(c.cptr())
	c.ptr = nil
	if c.encHandle != 0 {
		c.encHandle.Delete()
		c.encHandle = 0
	}
	return nil
}

// cptr returns the C pointer for a call. Under the debug build tag it
// forces a garbage collection first, so a missing runtime.KeepAlive after
// the call shows up as a use after free instead of hiding.
func (c *Client) cptr() *C.dlm_client {
	p := c.ptr
	maybeGC()
	return p
}

// begin starts a call: it holds c.mu shared (release with c.mu.RUnlock)
// and fails if the client is closed or ctx is done.
func (c *Client) begin(ctx context.Context, op, name string) error {
	c.mu.RLock()
	if c.closed {
		c.mu.RUnlock()
		return newError(op, name, ErrClosed, nil)
	}
	if err := ctx.Err(); err != nil {
		c.mu.RUnlock()
		return newError(op, name, ErrCancelled, err)
	}
	return nil
}

// fail turns a failed status of a client call into an error, picking up
// a Go encoder's error if that is what failed.
func (c *Client) fail(op, name string, s C.dlm_status, report *C.gdlm_err) error {
	e := statusError(op, name, s, report)
	if s == C.DLM_ERR_ENCODING {
		e.cause = c.enc.takeErr(report.thread)
	}
	return e
}

// ID is the owner ID this client sends with every request.
func (c *Client) ID() string { return c.id }

// LockStatus says who holds a lock, as TestLock found it.
type LockStatus int

const (
	// LockFree: nobody holds the lock.
	LockFree LockStatus = iota
	// LockMine: this client (its owner ID) holds it.
	LockMine
	// LockTaken: another owner holds it.
	LockTaken
)

// String is "free", "mine" or "taken".
func (s LockStatus) String() string {
	switch s {
	case LockFree:
		return "free"
	case LockMine:
		return "mine"
	case LockTaken:
		return "taken"
	}
	return fmt.Sprintf("LockStatus(%d)", int(s))
}

// LockState is what TestLock found.
type LockState struct {
	Status LockStatus
	// Token is the fencing token of the grant when Status is LockMine.
	Token uint64
	// Remaining is the lock's time left when the server answered (0 if
	// free, or if the server did not say).
	Remaining time.Duration
}

// TestLock reports whether name is locked and by whom, without acquiring
// it.
func (c *Client) TestLock(ctx context.Context, name string) (LockState, error) {
	if err := c.begin(ctx, "testlock", name); err != nil {
		return LockState{}, err
	}
	defer c.mu.RUnlock()
	var state C.dlm_lock_state
	var token, left C.uint64_t
	var report C.gdlm_err
	s := C.gdlm_client_test_lock(c.cptr(), textOf(name), C.size_t(len(name)), &state, &token, &left, &report)
	runtime.KeepAlive(c)
	if s != C.DLM_OK {
		return LockState{}, c.fail("testlock", name, s, &report)
	}
	st := LockState{Status: LockStatus(state), Remaining: time.Duration(left) * time.Millisecond}
	if st.Status == LockMine {
		st.Token = uint64(token)
	}
	return st, nil
}

// UnlockByName releases name if this client's owner ID holds it; with a
// non-zero token, only the grant with that token. It fails with
// ErrNotFound if no lock was live and ErrNotOwner if another owner (or a
// newer grant) holds it. Prefer Lock.Unlock; this is for recovering a lock
// by name and token, e.g. after a restart with the same client ID.
func (c *Client) UnlockByName(ctx context.Context, name string, token uint64) error {
	if err := c.begin(ctx, "unlock", name); err != nil {
		return err
	}
	defer c.mu.RUnlock()
	var report C.gdlm_err
	s := C.gdlm_client_unlock(c.cptr(), textOf(name), C.size_t(len(name)), C.uint64_t(token), &report)
	runtime.KeepAlive(c)
	if s != C.DLM_OK {
		return c.fail("unlock", name, s, &report)
	}
	return nil
}

// Put stores value under name for ttl, encoded by the client's encoder,
// and returns the entry's new revision (1 when created, +1 on each Put).
// It fails with ErrNotOwner if another owner's entry lives under name.
func (c *Client) Put(ctx context.Context, name string, value []byte, ttl time.Duration) (uint64, error) {
	if err := c.begin(ctx, "put", name); err != nil {
		return 0, err
	}
	defer c.mu.RUnlock()
	var rev C.uint64_t
	var report C.gdlm_err
	s := C.gdlm_client_put(c.cptr(), textOf(name), C.size_t(len(name)),
		unsafe.Pointer(unsafe.SliceData(value)), C.size_t(len(value)), C.uint64_t(millis(ttl)), &rev, &report)
	runtime.KeepAlive(c)
	if s != C.DLM_OK {
		return 0, c.fail("put", name, s, &report)
	}
	return uint64(rev), nil
}

// PutIf is a compare-and-set Put: it stores value only if the entry's
// revision is expected (0: only if there is no entry), and returns the new
// revision. On ErrConflict it returns the entry's current revision (0 if
// there is none) with the error, so a retry loop can go on from there.
func (c *Client) PutIf(ctx context.Context, name string, value []byte, ttl time.Duration, expected uint64) (uint64, error) {
	if err := c.begin(ctx, "putif", name); err != nil {
		return 0, err
	}
	defer c.mu.RUnlock()
	var rev C.uint64_t
	var report C.gdlm_err
	s := C.gdlm_client_put_if(c.cptr(), textOf(name), C.size_t(len(name)),
		unsafe.Pointer(unsafe.SliceData(value)), C.size_t(len(value)), C.uint64_t(millis(ttl)),
		C.uint64_t(expected), &rev, &report)
	runtime.KeepAlive(c)
	if s == C.DLM_ERR_CONFLICT {
		return uint64(rev), c.fail("putif", name, s, &report)
	}
	if s != C.DLM_OK {
		return 0, c.fail("putif", name, s, &report)
	}
	return uint64(rev), nil
}

// Value is what Get read.
type Value struct {
	// Data is the decoded value.
	Data []byte
	// Revision is the entry's revision.
	Revision uint64
}

// getBuffers holds the buffers Get reads into, so a Get costs one
// allocation of the value's own size.
var getBuffers = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

// Get reads name, decoded by the client's encoder. It fails with
// ErrNotFound if there is no entry, ErrNotOwner if it is another owner's,
// and ErrEncoding if the stored value does not decode.
func (c *Client) Get(ctx context.Context, name string) (Value, error) {
	if err := c.begin(ctx, "get", name); err != nil {
		return Value{}, err
	}
	defer c.mu.RUnlock()
	pooled := getBuffers.Get().(*[]byte)
	defer getBuffers.Put(pooled)
	buf := *pooled
	// A value larger than the buffer costs a second round trip (libdlm
	// reports the size it needs); it may have grown again meanwhile.
	for attempt := 0; ; attempt++ {
		var n C.size_t
		var rev C.uint64_t
		var report C.gdlm_err
		s := C.gdlm_client_get(c.cptr(), textOf(name), C.size_t(len(name)),
			unsafe.Pointer(unsafe.SliceData(buf)), C.size_t(len(buf)), &n, &rev, &report)
		runtime.KeepAlive(c)
		switch {
		case s == C.DLM_OK:
			return Value{Data: append([]byte{}, buf[:n]...), Revision: uint64(rev)}, nil
		case s == C.DLM_ERR_BUFFER_TOO_SMALL && attempt < 3:
			buf = make([]byte, int(n))
		default:
			return Value{}, c.fail("get", name, s, &report)
		}
	}
}

// Erase deletes name; ErrNotFound if there was no entry.
func (c *Client) Erase(ctx context.Context, name string) error {
	if err := c.begin(ctx, "erase", name); err != nil {
		return err
	}
	defer c.mu.RUnlock()
	var report C.gdlm_err
	s := C.gdlm_client_erase(c.cptr(), textOf(name), C.size_t(len(name)), &report)
	runtime.KeepAlive(c)
	if s != C.DLM_OK {
		return c.fail("erase", name, s, &report)
	}
	return nil
}

// ServerVersion returns the server's version string (it contains
// "JackrabbitDLM", which JackrabbitDLM's clients look for).
func (c *Client) ServerVersion(ctx context.Context) (string, error) {
	if err := c.begin(ctx, "version", ""); err != nil {
		return "", err
	}
	defer c.mu.RUnlock()
	v, err := readText(256, func(buf *C.char, n C.size_t, out *C.size_t, report *C.gdlm_err) C.dlm_status {
		s := C.gdlm_client_server_version(c.cptr(), buf, n, out, report)
		runtime.KeepAlive(c)
		return s
	})
	if err != nil {
		return "", c.failText("version", err)
	}
	return v, nil
}

// Stats returns the server's statistics: counters since the last
// statistics line and gauges such as "ALock" (live locks) and "AWait"
// (queued waiters). PROTOCOL.md section 7 lists them.
func (c *Client) Stats(ctx context.Context) (map[string]uint64, error) {
	if err := c.begin(ctx, "stats", ""); err != nil {
		return nil, err
	}
	defer c.mu.RUnlock()
	text, err := readText(4096, func(buf *C.char, n C.size_t, out *C.size_t, report *C.gdlm_err) C.dlm_status {
		s := C.gdlm_client_stats_json(c.cptr(), buf, n, out, report)
		runtime.KeepAlive(c)
		return s
	})
	if err != nil {
		return nil, c.failText("stats", err)
	}
	stats := map[string]uint64{}
	if err := json.Unmarshal([]byte(text), &stats); err != nil {
		return nil, &Error{Op: "stats", Message: err.Error(), kind: ErrProtocol}
	}
	return stats, nil
}

// textError is readText's failure: a status and the shim's report.
type textError struct {
	s      C.dlm_status
	report C.gdlm_err
}

func (e *textError) Error() string { return fmt.Sprintf("libdlm status %d", uint32(e.s)) }

func (c *Client) failText(op string, err error) error {
	if te, ok := err.(*textError); ok {
		return c.fail(op, "", te.s, &te.report)
	}
	return err
}

// readText runs a libdlm call that copies text into a caller's buffer,
// growing the buffer while libdlm says it is too small.
func readText(size int, call func(buf *C.char, n C.size_t, out *C.size_t, report *C.gdlm_err) C.dlm_status) (string, error) {
	for attempt := 0; attempt < 4; attempt++ {
		buf := make([]byte, size)
		var n C.size_t
		var report C.gdlm_err
		s := call((*C.char)(unsafe.Pointer(unsafe.SliceData(buf))), C.size_t(len(buf)), &n, &report)
		switch s {
		case C.DLM_OK:
			return string(buf[:n]), nil
		case C.DLM_ERR_BUFFER_TOO_SMALL:
			size = int(n) + 1
		default:
			return "", &textError{s: s, report: report}
		}
	}
	return "", &textError{s: C.DLM_ERR_BUFFER_TOO_SMALL}
}

// LibraryVersion is the version of the libdlm this package is linked with
// ("MAJOR.MINOR.PATCH").
func LibraryVersion() string {
	return C.GoString(C.dlm_version())
}

// textOf points C at a string's text for the duration of a call (libdlm
// takes pointer and length, never a NUL-terminated string, and copies what
// it keeps).
func textOf(s string) *C.char {
	return (*C.char)(unsafe.Pointer(unsafe.StringData(s)))
}
