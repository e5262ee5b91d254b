package dlm

// #include "shim.h"
import "C"

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Client is a connection to one dlm server: a few pipelined connections
// for the calls the server answers at once, and a connection of its own
// for each lock that waits in the server's queue (kept for reuse once the
// wait is over, up to WithMaxIdle).
//
// A Client is safe for concurrent use by many goroutines, and meant to be
// shared: concurrent calls travel together (one write and one read carry
// many requests), and a goroutine waiting for an answer is parked by Go's
// scheduler like any network read. But remember that a Client is one
// owner: every lock it takes belongs to its owner ID, so two goroutines
// locking the same name through the same Client do not exclude each other
// (the second Lock re-locks and returns at once). Give each party that
// must exclude the others its own Client.
//
// Close the Client when done; a Client that becomes unreachable is closed
// by a finalizer, but when that happens is up to the garbage collector.
type Client struct {
	*clientCore
}

// clientCore is the Client's state. Locks point at it rather than at the
// Client, so the Client's finalizer can run while locks live.
type clientCore struct {
	id  string
	w   *wire
	t   *transport
	fo  *failover
	enc Encoder // nil: libdlm's encoder (the table codec or sealed)
	// servers are the addresses Dial was given, for watches (which any
	// member serves, and which reconnect by themselves).
	servers []string

	// mu is held shared by every call and exclusively by Close, which
	// frees the wire once no call uses it.
	mu     sync.RWMutex
	closed bool

	locks registry

	// closers end the sessions and watches still open when the Client
	// closes.
	closersMu sync.Mutex
	closers   map[any]func()
}

// onClose has Close run f (to end a session or watch known by key).
func (c *clientCore) onClose(key any, f func()) {
	c.closersMu.Lock()
	defer c.closersMu.Unlock()
	if c.closers == nil {
		c.closers = map[any]func(){}
	}
	c.closers[key] = f
}

// forget drops what onClose registered under key.
func (c *clientCore) forget(key any) {
	c.closersMu.Lock()
	defer c.closersMu.Unlock()
	delete(c.closers, key)
}

// closeAll runs (and drops) every closer.
func (c *clientCore) closeAll() {
	c.closersMu.Lock()
	all := c.closers
	c.closers = nil
	c.closersMu.Unlock()
	for _, f := range all {
		f()
	}
}

// registry is the set of locks still held, which Close releases.
type registry struct {
	mu    sync.Mutex
	locks map[*lockCore]struct{}
}

func (r *registry) add(l *lockCore) {
	r.mu.Lock()
	if r.locks == nil {
		r.locks = map[*lockCore]struct{}{}
	}
	r.locks[l] = struct{}{}
	r.mu.Unlock()
}

func (r *registry) remove(l *lockCore) {
	r.mu.Lock()
	delete(r.locks, l)
	r.mu.Unlock()
}

func (r *registry) all() []*lockCore {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*lockCore, 0, len(r.locks))
	for l := range r.locks {
		out = append(out, l)
	}
	return out
}

// Dial connects to a dlm server at addr ("host:port"), or to a cluster's
// members ("10.0.0.1:37373,10.0.0.2:37373,10.0.0.3:37373"; one is
// enough, the others are learned from it). An empty addr reads the
// DLM_SERVER environment variable, which has the same syntax.
//
// With a cluster, the client talks to the leader (a member says who
// leads) and follows it when it changes: calls in flight when a member
// fails are sent again to the next member, paused with backoff and
// jitter between rounds, as far as their deadlines allow. What is sent
// again is only what is safe to: reads, locks (a re-lock keeps its grant
// and token), and puts, erases and unlocks, which carry a request ID the
// server applies once. Held locks are extended by their token through
// the new leader, and a lock's wait is queued again there with what is
// left of it. A call fails with ErrUnavailable only when no member
// answered within its time. Server says which member the client talks
// to. Every rule of this is dlm-core's failover machine, through libdlm.
//
// One connection is opened now, so an unreachable server is reported here
// (ErrUnavailable). ctx bounds the dial: if it is done first, Dial
// returns ErrCancelled.
func Dial(ctx context.Context, addr string, opts ...Option) (*Client, error) {
	cfg := dialConfig{
		connectTimeout: DefaultConnectTimeout,
		ioTimeout:      DefaultIOTimeout,
		sharedConns:    DefaultSharedConns,
		maxIdle:        DefaultMaxIdle,
	}
	for _, o := range opts {
		o(&cfg)
	}
	if err := ctx.Err(); err != nil {
		return nil, newError("dial", "", ErrCancelled, err)
	}
	if addr == "" {
		addr = os.Getenv("DLM_SERVER")
	}
	if err := cfg.check(addr); err != nil {
		return nil, err
	}
	fo, f := newFailover(addr, cfg.legacy)
	if f != nil {
		return nil, f.asError("dial", "")
	}
	tlsConfig, err := cfg.tlsConfig()
	if err != nil {
		fo.free()
		e := newError("dial", "", ErrInvalidArgument, nil)
		e.Message = err.Error()
		return nil, e
	}
	w, err := cfg.wire()
	if err != nil {
		fo.free()
		return nil, err
	}
	t := newTransport(fo, w, &cfg)
	t.tls = tlsConfig
	core := &clientCore{w: w, t: t, fo: fo, enc: cfg.encoder, servers: splitServers(addr)}
	core.id = w.id()
	fc := fo.startConnect(cfg.ioTimeout)
	var last error
	_, _, err = t.connection(ctx, fc, false, &last)
	fc.free()
	if err != nil {
		e := core.transportError(ctx, "dial", "", err)
		core.t.close()
		w.free()
		fo.free()
		return nil, e
	}
	c := &Client{core}
	runtime.SetFinalizer(c, (*Client).Close)
	return c, nil
}

// splitServers lists the addresses of "host:port,host:port,...".
func splitServers(addr string) []string {
	var out []string
	for _, a := range strings.Split(addr, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// check refuses what no server could accept, before anything is opened
// (the failover checks the addresses).
func (cfg *dialConfig) check(addr string) error {
	invalid := func(why string) error {
		e := newError("dial", "", ErrInvalidArgument, nil)
		e.Message = why
		return e
	}
	if addr == "" {
		return invalid("the address is empty (and DLM_SERVER is not set)")
	}
	switch {
	case cfg.connectTimeout <= 0:
		return invalid("the connect timeout must be positive")
	case cfg.ioTimeout <= 0:
		return invalid("the I/O timeout must be positive")
	case cfg.sharedConns < 1:
		return invalid("at least one shared connection is needed")
	case cfg.maxIdle < 0:
		return invalid("the number of idle connections cannot be negative")
	}
	return nil
}

// wire builds libdlm's dlm_wire from the configuration: the owner ID,
// framing, credentials and libdlm's encoder (libdlm checks them all).
func (cfg *dialConfig) wire() (*wire, error) {
	var o *C.dlm_options
	if s := C.dlm_options_new(&o); s != C.DLM_OK {
		return nil, statusError("dial", "", s)
	}
	defer C.dlm_options_free(o)
	fail := func(s C.dlm_status, what string) error {
		e := statusError("dial", "", s)
		e.Message = what
		return e
	}
	if cfg.clientID != "" {
		if s := C.dlm_options_set_client_id(o, textOf(cfg.clientID), C.size_t(len(cfg.clientID))); s != C.DLM_OK {
			return nil, fail(s, "the client ID must be valid UTF-8")
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
		if s := C.dlm_options_set_sealed_key(o, bytesPtr(key), C.size_t(len(key))); s != C.DLM_OK {
			return nil, fail(s, fmt.Sprintf("a sealed key is %d bytes, not %d", SealedKeySize, len(key)))
		}
	}
	w := &wire{}
	if s := C.dlm_wire_new(o, &w.ptr); s != C.DLM_OK {
		return nil, fail(s, "cannot make the client's wire")
	}
	return w, nil
}

// Close closes the client: waiting locks are cancelled (they return
// ErrCancelled), calls in flight are waited for, locks still held are
// released (best effort, as by Unlock), and the connections are closed.
// Later calls fail with ErrClosed. Close is idempotent and always returns
// nil; it is safe to call from several goroutines.
func (c *Client) Close() error {
	c.closeAll()
	c.t.cancelWaits()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	runtime.SetFinalizer(c, nil)
	for _, l := range c.locks.all() {
		l.free(true)
	}
	c.t.close()
	c.w.free()
	c.fo.free()
	return nil
}

// Server is the server the client talks to now ("host:port"): with a
// cluster, its leader once a member said who leads. For logs: it changes
// when the client follows a new leader.
func (c *Client) Server() string { return c.fo.server() }

// begin starts a call: it holds c.mu shared (release with c.mu.RUnlock)
// and fails if the client is closed or ctx is done.
func (c *clientCore) begin(ctx context.Context, op, name string) error {
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

// transportError is the *Error of call op on name for a transport
// failure: a closed client, a context that ended, a connection that could
// not be made or broke, no answer in time.
func (c *clientCore) transportError(ctx context.Context, op, name string, err error) *Error {
	var ab *abandoned
	var gu *gaveUp
	var ce *connError
	var de *Error
	switch {
	case errors.Is(err, errClosed):
		return newError(op, name, ErrClosed, nil)
	case errors.As(err, &ab):
		return newError(op, name, ErrCancelled, ab.cause)
	case errors.As(err, &gu):
		// The failover gave up: no member answered in time.
		e := newError(op, name, ErrUnavailable, nil)
		e.Message = gu.f.message
		if gu.last != nil {
			e.Message += " (last: " + netMessage(gu.last) + ")"
		}
		e.Message += " (server " + c.fo.server() + ")"
		return e
	case errors.As(err, &de):
		de.Op, de.Name = op, name
		return de
	case errors.As(err, &ce):
		err = ce.err
	case ctx.Err() != nil:
		// The dial gave up because ctx ended.
		return newError(op, name, ErrCancelled, ctx.Err())
	}
	e := newError(op, name, ErrUnavailable, nil)
	e.Message = fmt.Sprintf("%s (%s)", netMessage(err), c.fo.server())
	return e
}

// netMessage says what went wrong with a connection, without repeating
// the address.
func netMessage(err error) string {
	if m, ok := tlsMessage(err); ok {
		return m
	}
	var oe *net.OpError
	switch {
	case errors.Is(err, io.EOF):
		return "the server closed the connection"
	case errors.As(err, &oe) && oe.Err != nil:
		return oe.Op + ": " + oe.Err.Error()
	}
	return err.Error()
}

// roundTrip sends c's request through the failover (exclusive: on a
// connection of its own, for a lock that waits) and reads the answer into
// o. The failure is the *Error of call op.
func (c *clientCore) roundTrip(ctx context.Context, op string, cl *call, o *op, exclusive bool) error {
	fc, f := c.fo.start(c.w, cl, c.t.ioTimeout)
	if f != nil {
		return f.asError(op, cl.name)
	}
	err := c.t.do(ctx, o, exclusive, fc)
	fc.free()
	if err != nil {
		return c.transportError(ctx, op, cl.name, err)
	}
	return nil
}

// simple makes one call the server answers at once and reads its answer
// into o (which the caller gives back with putOp unless it failed). The
// failure is the *Error of call op.
func (c *clientCore) simple(ctx context.Context, op string, cl *call) (*op, error) {
	if err := c.begin(ctx, op, cl.name); err != nil {
		return nil, err
	}
	defer c.mu.RUnlock()
	o := getOp()
	if err := c.roundTrip(ctx, op, cl, o, false); err != nil {
		c.recycle(o, err)
		return nil, err
	}
	if f := c.w.read(cl, o); f != nil {
		e := f.asError(op, cl.name)
		if f.status == C.DLM_ERR_CONFLICT {
			e.revision = uint64(o.ans.revision)
		}
		putOp(o)
		return nil, e
	}
	return o, nil
}

// recycle gives o back after a failed call, unless the transport may
// still write to it (a request abandoned in flight: ErrCancelled).
func (c *clientCore) recycle(o *op, err error) {
	if !errors.Is(err, ErrCancelled) {
		putOp(o)
	}
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
	o, err := c.simple(ctx, "testlock", &call{kind: C.DLM_CALL_TEST_LOCK, name: name})
	if err != nil {
		return LockState{}, err
	}
	defer putOp(o)
	st := LockState{
		Status:    LockStatus(o.ans.state),
		Remaining: time.Duration(o.ans.ttl_ms) * time.Millisecond,
	}
	if st.Status == LockMine {
		st.Token = uint64(o.ans.token)
	}
	return st, nil
}

// UnlockByName releases name if this client's owner ID holds it; with a
// non-zero token, only the grant with that token. It fails with
// ErrNotFound if no lock was live and ErrNotOwner if another owner (or a
// newer grant) holds it. Prefer Lock.Unlock; this is for recovering a lock
// by name and token, e.g. after a restart with the same client ID.
func (c *Client) UnlockByName(ctx context.Context, name string, token uint64) error {
	o, err := c.simple(ctx, "unlock", &call{kind: C.DLM_CALL_UNLOCK, name: name, token: token})
	if err != nil {
		return err
	}
	putOp(o)
	return nil
}

// Put stores value under name for ttl, encoded by the client's encoder,
// and returns the entry's new revision (1 when created, +1 on each Put).
// It fails with ErrNotOwner if another owner's entry lives under name.
//
// The value is its owner's alone unless a Readers or ReadersAny option
// shares it; each Put says its readers anew, so a Put without them makes
// the value private again.
func (c *Client) Put(ctx context.Context, name string, value []byte, ttl time.Duration, opts ...PutOption) (uint64, error) {
	return c.put(ctx, "put", name, value, ttl, 0, false, opts)
}

// PutIf is a compare-and-set Put: it stores value only if the entry's
// revision is expected (0: only if there is no entry), and returns the new
// revision. On ErrConflict it returns the entry's current revision (0 if
// there is none) with the error, so a retry loop can go on from there.
// The options of Put apply (a compare-and-set replaces value and readers
// together).
func (c *Client) PutIf(ctx context.Context, name string, value []byte, ttl time.Duration, expected uint64, opts ...PutOption) (uint64, error) {
	return c.put(ctx, "putif", name, value, ttl, expected, true, opts)
}

func (c *Client) put(ctx context.Context, op, name string, value []byte, ttl time.Duration, expected uint64, compare bool, opts []PutOption) (uint64, error) {
	var cfg putConfig
	for _, o := range opts {
		o(&cfg)
	}
	cl := call{kind: C.DLM_CALL_PUT, name: name, value: value, ttl: millis(ttl), revision: expected}
	if compare {
		cl.flags |= C.DLM_PUT_IF
	}
	if cfg.any {
		cl.flags |= C.DLM_PUT_READERS_ANY
	}
	if len(cfg.readers) > 0 {
		cl.flags |= C.DLM_PUT_READERS
		cl.readers = cfg.readers
	}
	if c.enc != nil && name != "" {
		stored, err := c.encode(name, value)
		if err != nil {
			return 0, newError(op, name, ErrEncoding, err)
		}
		cl.value = []byte(stored)
		cl.flags |= C.DLM_VALUE_STORED
	}
	o, err := c.simple(ctx, op, &cl)
	if err != nil {
		var e *Error
		if errors.As(err, &e) && e.kind == ErrConflict {
			return e.revision, err
		}
		return 0, err
	}
	defer putOp(o)
	return uint64(o.ans.revision), nil
}

// Value is what Get read.
type Value struct {
	// Data is the decoded value.
	Data []byte
	// Revision is the entry's revision.
	Revision uint64
	// Owner is whose value it is: this client's ID, or the ID of the
	// owner who shared it with this client ("" if the server did not
	// say, as JackrabbitDLM does not).
	Owner string
}

// Get reads name, decoded by the client's encoder: this client's own
// value, or another owner's shared with it (Readers, ReadersAny; Owner
// says whose). It fails with ErrNotFound if there is no entry, ErrNotOwner
// if it is another owner's not shared with this client, and ErrEncoding
// if the stored value does not decode.
func (c *Client) Get(ctx context.Context, name string) (Value, error) {
	cl := call{kind: C.DLM_CALL_GET, name: name}
	if c.enc != nil {
		cl.flags |= C.DLM_VALUE_STORED
	}
	o, err := c.simple(ctx, "get", &cl)
	if err != nil {
		return Value{}, err
	}
	defer putOp(o)
	v := Value{Revision: uint64(o.ans.revision), Owner: c.w.owner(&cl, o)}
	if c.enc != nil {
		if v.Data, err = c.decode(name, string(o.data)); err != nil {
			return Value{}, newError("get", name, ErrEncoding, err)
		}
		return v, nil
	}
	v.Data = append([]byte{}, o.data...)
	return v, nil
}

// Erase deletes name; ErrNotFound if there was no entry.
func (c *Client) Erase(ctx context.Context, name string) error {
	o, err := c.simple(ctx, "erase", &call{kind: C.DLM_CALL_ERASE, name: name})
	if err != nil {
		return err
	}
	putOp(o)
	return nil
}

// ServerVersion returns the server's version string (it contains
// "JackrabbitDLM", which JackrabbitDLM's clients look for).
func (c *Client) ServerVersion(ctx context.Context) (string, error) {
	o, err := c.simple(ctx, "version", &call{kind: C.DLM_CALL_VERSION})
	if err != nil {
		return "", err
	}
	defer putOp(o)
	return string(o.data), nil
}

// Stats returns the server's statistics: counters since the last
// statistics line and gauges such as "ALock" (live locks) and "AWait"
// (queued waiters). PROTOCOL.md section 7 lists them.
func (c *Client) Stats(ctx context.Context) (map[string]uint64, error) {
	o, err := c.simple(ctx, "stats", &call{kind: C.DLM_CALL_STATS})
	if err != nil {
		return nil, err
	}
	defer putOp(o)
	stats := map[string]uint64{}
	if err := json.Unmarshal(o.data, &stats); err != nil {
		return nil, &Error{Op: "stats", Message: err.Error(), kind: ErrProtocol}
	}
	return stats, nil
}

// encode runs the Go Encoder, turning a panic or output that is not UTF-8
// into an error.
func (c *clientCore) encode(name string, plain []byte) (stored string, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("encoder panicked: %v", r)
		}
	}()
	stored, err = c.enc.Encode(name, append([]byte(nil), plain...))
	if err == nil && !utf8.ValidString(stored) {
		err = errors.New("encoder output is not valid UTF-8")
	}
	return stored, err
}

// decode runs the Go Encoder's Decode, turning a panic into an error.
func (c *clientCore) decode(name, stored string) (plain []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("decoder panicked: %v", r)
		}
	}()
	return c.enc.Decode(name, stored)
}

// LibraryVersion is the version of the libdlm this package is linked with
// ("MAJOR.MINOR.PATCH").
func LibraryVersion() string {
	return C.GoString(C.dlm_version())
}
