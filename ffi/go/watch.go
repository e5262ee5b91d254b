package dlm

// #include "shim.h"
import "C"

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// EventType is what happened, in an Event.
type EventType int

// The kinds of change a watch is told.
const (
	// EventGranted: a lock, a semaphore permit or a read/write hold was
	// granted (at once or to a waiter).
	EventGranted EventType = iota + 1
	// EventReleased: it was released (by its holder, an administrator,
	// or taken back from a client that had gone).
	EventReleased
	// EventExpired: its TTL (or lock-delay) ran out.
	EventExpired
	// EventPut: a value was stored (created or replaced).
	EventPut
	// EventErased: a value was erased by its owner.
	EventErased
)

func (t EventType) String() string {
	switch t {
	case EventGranted:
		return "Granted"
	case EventReleased:
		return "Released"
	case EventExpired:
		return "Expired"
	case EventPut:
		return "Put"
	case EventErased:
		return "Erased"
	}
	return fmt.Sprintf("EventType(%d)", int(t))
}

// Subject is the kind of name an Event is about.
type Subject int

// The kinds of name.
const (
	// SubjectLock: an exclusive lock.
	SubjectLock Subject = iota + 1
	// SubjectSemaphore: a permit of a semaphore (of Event.Permits).
	SubjectSemaphore
	// SubjectRead: the shared side of a read/write lock.
	SubjectRead
	// SubjectWrite: the exclusive side of a read/write lock.
	SubjectWrite
	// SubjectData: a value.
	SubjectData
)

func (s Subject) String() string {
	switch s {
	case SubjectLock:
		return "Lock"
	case SubjectSemaphore:
		return "Semaphore"
	case SubjectRead:
		return "Read"
	case SubjectWrite:
		return "Write"
	case SubjectData:
		return "Data"
	}
	return fmt.Sprintf("Subject(%d)", int(s))
}

// Event is one change, as a watch is told it.
type Event struct {
	// Revision is the change's revision: the same on every member of a
	// cluster, greater than every one before it. Resume after it.
	Revision uint64
	// Type is what happened.
	Type EventType
	// Subject is the kind of name.
	Subject Subject
	// Permits is a semaphore's size (SubjectSemaphore; else 0).
	Permits uint32
	// Name is the lock name or data key.
	Name string
	// Owner is the holder or writer, if this client may read it (its own
	// entries); else "".
	Owner string
	// Token is the grant's fencing token (locks and holds; else 0).
	Token uint64
	// Value is the value stored (EventPut), decoded, if this client may
	// read it; else nil.
	Value []byte
	// DataRevision is the value's own revision (EventPut; else 0).
	DataRevision uint64
}

// Watch is a subscription to changes (PROTOCOL.md, "Watches"), over a
// connection of its own, from Client.Watch or Client.WatchName. Its
// events come, in order and each once, on Events, which is closed when
// the watch ends: then Err says why.
//
// When its connection fails, or the server cuts it off because its
// events were not read fast enough, the watch reconnects (to any of the
// Client's servers: a cluster's followers serve watches too) and resumes
// after the last revision it delivered, missing nothing. If the server no
// longer keeps those events, the watch ends with an error that
// errors.Is(err, ErrConflict) and whose Revision is the current revision:
// the state must be read again, then watched from there.
type Watch struct {
	c      *Client
	scope  string
	prefix bool
	events chan Event
	cancel context.CancelFunc

	rev atomic.Uint64 // the last revision delivered (or started after)
	mu  sync.Mutex
	err error
}

// watchRounds is how many rounds over every server a reconnect tries.
const watchRounds = 8

// Watch subscribes to every change of the names (locks and values) that
// start with prefix ("" for every name): from now if since is 0, else
// every change after revision since first (a resume). It returns once the
// server took the watch: a revision it no longer keeps fails with
// ErrConflict (Revision on the *Error is the current one). The watch ends
// when ctx is done (Err is then ErrCancelled with ctx's error) or the
// Client is closed.
func (c *Client) Watch(ctx context.Context, prefix string, since uint64) (*Watch, error) {
	return c.watch(ctx, prefix, true, since)
}

// WatchName is Watch for one name: its lock (or semaphore, or read/write
// lock) and its value.
func (c *Client) WatchName(ctx context.Context, name string, since uint64) (*Watch, error) {
	return c.watch(ctx, name, false, since)
}

func (c *Client) watch(ctx context.Context, scope string, prefix bool, since uint64) (*Watch, error) {
	if err := ctx.Err(); err != nil {
		return nil, newError("watch", scope, ErrCancelled, err)
	}
	wctx, cancel := context.WithCancel(ctx)
	w := &Watch{c: c, scope: scope, prefix: prefix, events: make(chan Event, 16), cancel: cancel}
	w.rev.Store(since)
	conn, r, err := w.subscribe(wctx)
	if err != nil {
		cancel()
		return nil, err
	}
	c.onClose(w, func() {
		w.fail(newError("watch", scope, ErrClosed, nil))
		cancel()
	})
	go w.run(wctx, conn, r)
	return w, nil
}

// Events delivers the watch's events, and is closed when it ends.
func (w *Watch) Events() <-chan Event { return w.events }

// Err says why the watch ended, once Events is closed (nil before).
func (w *Watch) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// Revision is the last revision delivered (or, before the first event,
// the one the watch started after): resume from it with since.
func (w *Watch) Revision() uint64 { return w.rev.Load() }

// Close ends the watch (Err is then ErrCancelled with context.Canceled).
func (w *Watch) Close() { w.cancel() }

// fail records why the watch ends (the first reason only).
func (w *Watch) fail(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err == nil {
		w.err = err
	}
}

// run delivers events until ctx is done or the watch fails for good.
func (w *Watch) run(ctx context.Context, conn net.Conn, r *bufio.Reader) {
	defer close(w.events)
	defer w.c.forget(w)
	for {
		err := w.stream(ctx, conn, r)
		_ = conn.Close()
		if ctx.Err() != nil {
			w.fail(newError("watch", w.scope, ErrCancelled, context.Cause(ctx)))
			return
		}
		if err != nil {
			w.fail(err)
			return
		}
		conn, r, err = w.subscribe(ctx)
		if err != nil {
			if ctx.Err() != nil {
				err = newError("watch", w.scope, ErrCancelled, context.Cause(ctx))
			}
			w.fail(err)
			return
		}
	}
}

// stream reads event lines from conn and delivers them, until the
// connection ends (nil: reconnect) or something is wrong for good.
func (w *Watch) stream(ctx context.Context, conn net.Conn, r *bufio.Reader) error {
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	var line []byte
	for {
		var err error
		line, err = readLine(r, line[:0])
		if err != nil {
			return nil // the connection ended: resume elsewhere
		}
		ev, end, err := w.event(line)
		switch {
		case err != nil:
			return err
		case end:
			return nil // cut off or stopping: resume
		}
		select {
		case w.events <- ev:
			w.rev.Store(ev.Revision)
		case <-ctx.Done():
			return nil
		}
	}
}

// readLine reads one line (with its '\n') into buf, up to maxAnswer.
func readLine(r *bufio.Reader, buf []byte) ([]byte, error) {
	for {
		part, err := r.ReadSlice('\n')
		buf = append(buf, part...)
		switch {
		case err == nil:
			return buf, nil
		case errors.Is(err, bufio.ErrBufferFull) && len(buf) < maxAnswer:
			continue
		case errors.Is(err, bufio.ErrBufferFull):
			return nil, fmt.Errorf("a line longer than %d bytes", maxAnswer)
		default:
			return nil, err
		}
	}
}

// event reads one line of a watching connection: an event, or end if it
// is the server's last word on the watch.
func (w *Watch) event(line []byte) (ev Event, end bool, err error) {
	const op = "watch"
	if err := w.c.begin(context.Background(), op, w.scope); err != nil {
		return ev, false, err
	}
	defer w.c.mu.RUnlock()
	var flags uint32
	if w.c.enc != nil {
		flags = C.DLM_VALUE_STORED
	}
	data := make([]byte, len(line))
	var out C.gdlm_event
	var needed C.size_t
	var report C.gdlm_err
	for attempt := 0; ; attempt++ {
		s := C.gdlm_wire_event(w.c.w.wptr(), C.uint32_t(flags),
			(*C.char)(bytesPtr(line)), C.size_t(len(line)),
			bytesPtr(data), C.size_t(len(data)), &out, &needed, &report)
		runtime.KeepAlive(w.c.w)
		switch {
		case s == C.DLM_OK:
		case s == C.DLM_ERR_BUFFER_TOO_SMALL && attempt == 0:
			data = make([]byte, int(needed))
			continue
		case s == C.DLM_ERR_UNAVAILABLE:
			_ = takeFailure(s, &report)
			return ev, true, nil
		default:
			return ev, false, takeFailure(s, &report).asError(op, w.scope)
		}
		break
	}
	// libdlm checked the offsets and lengths against data's size.
	text := func(off, n C.size_t) []byte {
		return data[int(off) : int(off)+int(n) : int(off)+int(n)]
	}
	ev = Event{
		Revision:     uint64(out.revision),
		Type:         EventType(out.what),
		Subject:      Subject(out.kind),
		Permits:      uint32(out.permits),
		Name:         string(text(out.name_off, out.name_len)),
		Owner:        string(text(out.owner_off, out.owner_len)),
		Token:        uint64(out.token),
		DataRevision: uint64(out.data_revision),
	}
	if out.has&C.DLM_EVENT_HAS_VALUE != 0 {
		v := append([]byte{}, text(out.value_off, out.value_len)...)
		if w.c.enc != nil {
			plain, err := w.c.decode(ev.Name, string(v))
			if err != nil {
				return ev, false, err
			}
			v = plain
		}
		ev.Value = v
	}
	return ev, false, nil
}

// subscribe connects to one of the Client's servers and subscribes, after the last revision delivered if any. A
// lost history is final (ErrConflict with the current revision); a
// server that cannot serve a watch now, or cannot be reached, makes it
// try the next, for a few rounds with pauses in between.
func (w *Watch) subscribe(ctx context.Context) (net.Conn, *bufio.Reader, error) {
	// The addresses given first (any member serves a watch), then the
	// one the Client talks to now.
	servers := append(append([]string{}, w.c.servers...), w.c.fo.server())
	backoff := 50 * time.Millisecond
	var last error
	for round := 0; round < watchRounds; round++ {
		for _, addr := range servers {
			conn, r, err := w.try(ctx, addr)
			if err == nil {
				return conn, r, nil
			}
			var e *Error
			if !errors.As(err, &e) || !errors.Is(err, ErrUnavailable) {
				return nil, nil, err
			}
			last = err
		}
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, nil, newError("watch", w.scope, ErrCancelled, context.Cause(ctx))
		}
		backoff = min(2*backoff, 2*time.Second)
	}
	return nil, nil, last
}

// try subscribes on a new connection to addr. A failure to connect or a
// member that cannot serve a watch now is ErrUnavailable.
func (w *Watch) try(ctx context.Context, addr string) (net.Conn, *bufio.Reader, error) {
	const op = "watch"
	c := w.c
	unavailable := func(err error) error {
		e := newError(op, w.scope, ErrUnavailable, nil)
		e.Message = fmt.Sprintf("%s (%s)", netMessage(err), addr)
		return e
	}
	dctx, cancel := context.WithTimeout(ctx, c.t.dialer.Timeout)
	conn, err := c.t.dial(dctx, addr)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return nil, nil, newError(op, w.scope, ErrCancelled, context.Cause(ctx))
		}
		var tf *tlsFailure
		if errors.As(err, &tf) {
			e := newError(op, w.scope, ErrUnavailable, tf)
			return nil, nil, e
		}
		return nil, nil, unavailable(err)
	}
	cl := call{kind: C.DLM_CALL_WATCH, name: w.scope}
	if w.prefix {
		cl.flags |= C.DLM_WATCH_PREFIX
	}
	if rev := w.rev.Load(); rev > 0 {
		cl.flags |= C.DLM_WATCH_SINCE
		cl.revision = rev
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	fail := func(err error) (net.Conn, *bufio.Reader, error) {
		_ = conn.Close()
		if ctx.Err() != nil {
			return nil, nil, newError(op, w.scope, ErrCancelled, context.Cause(ctx))
		}
		return nil, nil, err
	}
	if err := c.begin(ctx, op, w.scope); err != nil {
		return fail(err)
	}
	o := getOp()
	defer putOp(o)
	f := c.w.write(&cl, o)
	c.mu.RUnlock()
	if f != nil {
		return fail(f.asError(op, w.scope))
	}
	_ = conn.SetDeadline(time.Now().Add(c.t.ioTimeout))
	if _, err := conn.Write(o.req); err != nil {
		return fail(unavailable(err))
	}
	r := bufio.NewReaderSize(conn, 64<<10)
	line, err := readLine(r, nil)
	if err != nil {
		return fail(unavailable(err))
	}
	_ = conn.SetDeadline(time.Time{})
	o.line = append(o.line[:0], line...)
	if err := c.begin(ctx, op, w.scope); err != nil {
		return fail(err)
	}
	f = c.w.read(&cl, o)
	c.mu.RUnlock()
	if f != nil {
		e := f.asError(op, w.scope)
		if f.status == C.DLM_ERR_CONFLICT {
			e.revision = uint64(o.ans.revision)
		}
		return fail(e)
	}
	if w.rev.Load() == 0 {
		w.rev.Store(uint64(o.ans.revision))
	}
	return conn, r, nil
}
