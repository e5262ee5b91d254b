package dlm

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// The transport is the one place where connections live: dialling, the
// pool, pipelining, time limits and cancellation. The rest of the package
// hands it request lines and gets answer lines back (or why not); it
// knows nothing of what the lines say. A layer that follows a cluster's
// leader or tries several addresses belongs here, in open and in the
// retry of requests that never left (see do).
//
//	calls ──▶ do ──▶ shared pipes: requests the server answers at once,
//	                 pipelined on a few connections (one write for a
//	                 burst, one read for many answers)
//	           └──▶ exclusive pipes: a lock that waits in the server's
//	                queue, alone on its connection (taken from the idle
//	                ones, given back after), closed if the wait is
//	                cancelled so the server drops the waiter
//
// Every connection has a reader goroutine that parks on Go's netpoller:
// no goroutine ever waits inside cgo.

// maxAnswer is the longest answer line accepted from a server.
const maxAnswer = 64 << 20

// errClosed: the Client was closed under the request.
var errClosed = errors.New("client closed")

// connError: the connection failed before the request's answer came.
type connError struct {
	err error
	// unsent: the request never reached the kernel, so it cannot have
	// been applied; the transport may send it on another connection.
	unsent bool
}

func (e *connError) Error() string { return e.err.Error() }

// ioTimeoutError: no answer within the limit.
type ioTimeoutError struct{ limit time.Duration }

func (e *ioTimeoutError) Error() string {
	return fmt.Sprintf("no answer within %v", e.limit)
}

type transport struct {
	addr   string
	dialer net.Dialer
	// tls: connections speak TLS with this configuration (nil: plaintext).
	tls       *tls.Config
	ioTimeout time.Duration
	// legacy: a connection per request, closed after its answer (a
	// JackrabbitDLM server closes it anyway).
	legacy bool
	// sharedConns: how many pipelined connections the calls share.
	sharedConns int
	// maxIdle: how many idle connections for waits are kept.
	maxIdle int

	mu      sync.Mutex
	shared  []*pipe
	dialing int // shared connections being opened
	idle    []*pipe
	busy    map[*pipe]struct{} // exclusive connections in use
	closing bool               // no new waits (Close has begun)
	closed  bool
}

func newTransport(addr string, cfg *dialConfig) *transport {
	return &transport{
		addr:        addr,
		dialer:      net.Dialer{Timeout: cfg.connectTimeout},
		ioTimeout:   cfg.ioTimeout,
		legacy:      cfg.legacy,
		sharedConns: cfg.sharedConns,
		maxIdle:     cfg.maxIdle,
		busy:        map[*pipe]struct{}{},
	}
}

// open dials a new connection and starts its reader.
func (t *transport) open(ctx context.Context) (*pipe, error) {
	conn, err := t.dialer.DialContext(ctx, "tcp", t.addr)
	if err != nil {
		// The dialer stops at ctx's deadline by its own clock, which may
		// be a moment before ctx says it is done: wait for ctx then, so
		// the caller sees the context's end rather than an i/o timeout.
		if d, ok := ctx.Deadline(); ok && ctx.Err() == nil && !time.Now().Before(d) {
			<-ctx.Done()
		}
		return nil, err
	}
	if t.tls != nil {
		// The handshake within the connect timeout (and ctx).
		hctx, cancel := context.WithTimeout(ctx, t.dialer.Timeout)
		tc := tls.Client(conn, t.tls)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			_ = conn.Close()
			return nil, err
		}
		conn = tc
	}
	p := &pipe{t: t, conn: conn}
	go p.readLoop()
	return p, nil
}

// do sends o.req and waits for its answer (into o.line), or for ctx.
// exclusive is for a lock that waits in the server's queue up to wait:
// it gets a connection of its own, and cancelling ctx closes that
// connection so the server drops the waiter. Other requests share the
// pipelined connections; one that never left this process because its
// connection failed first is sent again on another.
func (t *transport) do(ctx context.Context, o *op, exclusive bool, wait time.Duration) error {
	o.limit = t.ioTimeout + wait
	if exclusive || t.legacy {
		return t.doExclusive(ctx, o)
	}
	for attempt := 0; ; attempt++ {
		p, err := t.sharedPipe(ctx)
		if err != nil {
			return err
		}
		p.send(o)
		err = o.await(ctx)
		var ce *connError
		if errors.As(err, &ce) && ce.unsent && attempt < 2 {
			o.rearm()
			continue
		}
		return err
	}
}

// doExclusive runs o alone on a connection.
func (t *transport) doExclusive(ctx context.Context, o *op) error {
	p, err := t.takeExclusive(ctx)
	if err != nil {
		return err
	}
	p.send(o)
	err = o.await(ctx)
	var gaveUp *abandoned
	if errors.As(err, &gaveUp) {
		// The server may still hold the request (a waiter in its queue):
		// closing the connection withdraws it.
		p.fail(errClosed)
	}
	t.giveBack(p, err == nil && !t.legacy)
	return err
}

// sharedPipe picks the least busy shared connection, opening another
// while all are busy and there are fewer than sharedConns.
func (t *transport) sharedPipe(ctx context.Context) (*pipe, error) {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil, errClosed
	}
	var best *pipe
	for _, p := range t.shared {
		if best == nil || p.load.Load() < best.load.Load() {
			best = p
		}
	}
	full := len(t.shared)+t.dialing >= t.sharedConns
	if best != nil && (best.load.Load() == 0 || full) {
		t.mu.Unlock()
		return best, nil
	}
	t.dialing++
	t.mu.Unlock()

	p, err := t.open(ctx)
	t.mu.Lock()
	t.dialing--
	switch {
	case err != nil:
		t.mu.Unlock()
		if best != nil {
			return best, nil
		}
		return nil, err
	case t.closed:
		t.mu.Unlock()
		p.fail(errClosed)
		return nil, errClosed
	case len(t.shared) >= t.sharedConns:
		// Others opened enough meanwhile.
		t.mu.Unlock()
		p.fail(errClosed)
		if best != nil {
			return best, nil
		}
		return t.sharedPipe(ctx)
	}
	t.shared = append(t.shared, p)
	t.mu.Unlock()
	return p, nil
}

// takeExclusive takes an idle connection, or opens one, for a request
// that must be alone on it.
func (t *transport) takeExclusive(ctx context.Context) (*pipe, error) {
	t.mu.Lock()
	if t.closing || t.closed {
		t.mu.Unlock()
		return nil, errClosed
	}
	if n := len(t.idle); n > 0 && !t.legacy {
		p := t.idle[n-1]
		t.idle = t.idle[:n-1]
		t.busy[p] = struct{}{}
		t.mu.Unlock()
		return p, nil
	}
	t.mu.Unlock()
	p, err := t.open(ctx)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	if t.closing || t.closed {
		t.mu.Unlock()
		p.fail(errClosed)
		return nil, errClosed
	}
	t.busy[p] = struct{}{}
	t.mu.Unlock()
	return p, nil
}

// giveBack returns an exclusive connection: kept idle if reuse and there
// is room, else closed.
func (t *transport) giveBack(p *pipe, reuse bool) {
	t.mu.Lock()
	delete(t.busy, p)
	if reuse && !t.closed && !p.broken() && len(t.idle) < t.maxIdle {
		t.idle = append(t.idle, p)
		t.mu.Unlock()
		return
	}
	t.mu.Unlock()
	p.fail(errClosed)
}

// drop forgets a failed connection.
func (t *transport) drop(p *pipe) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, list := range []*[]*pipe{&t.shared, &t.idle} {
		for i, q := range *list {
			if q == p {
				*list = append((*list)[:i], (*list)[i+1:]...)
				break
			}
		}
	}
}

// cancelWaits stops new waits and fails those in progress with errClosed
// (Close's first step: the shared connections stay, to release locks).
func (t *transport) cancelWaits() {
	t.mu.Lock()
	t.closing = true
	busy := make([]*pipe, 0, len(t.busy))
	for p := range t.busy {
		busy = append(busy, p)
	}
	t.mu.Unlock()
	for _, p := range busy {
		p.fail(errClosed)
	}
}

// close closes every connection; requests in flight fail with errClosed.
func (t *transport) close() {
	t.mu.Lock()
	t.closing, t.closed = true, true
	all := append(append([]*pipe{}, t.shared...), t.idle...)
	for p := range t.busy {
		all = append(all, p)
	}
	t.shared, t.idle = nil, nil
	t.mu.Unlock()
	for _, p := range all {
		p.fail(errClosed)
	}
}

// pipe is one connection: requests are appended to its send buffer and
// written by whichever caller finds no write in progress (so a burst from
// many goroutines is one write), and its reader goroutine hands each
// answer line to the oldest request waiting, as the server answers in
// order.
type pipe struct {
	t    *transport
	conn net.Conn
	load atomic.Int32 // requests sent and not yet answered

	mu       sync.Mutex
	out      []byte // request bytes not yet taken by a write
	spare    []byte // the other send buffer
	flushing bool   // a caller is writing
	queue    []*op  // waiting for answers, oldest first, from head
	head     int
	queued   uint64 // requests ever queued
	taken    uint64 // requests whose bytes a write has taken
	err      error  // why the connection is closed, once it is
	// progress is when answer bytes last came, on the leases' clock
	// (nanoseconds since epoch).
	progress atomic.Int64
}

// broken says whether the connection has failed.
func (p *pipe) broken() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err != nil
}

// send queues o and writes it (with whatever else has piled up) unless
// another caller is writing, who then writes it. The answer, or the
// failure, comes through o.
func (p *pipe) send(o *op) {
	now := time.Now()
	p.mu.Lock()
	if p.err != nil {
		err := p.err
		p.mu.Unlock()
		o.deliver(nil, &connError{err: err, unsent: true})
		return
	}
	if p.head == len(p.queue) {
		// Nothing was outstanding: no answer is due before this one's.
		_ = p.conn.SetReadDeadline(now.Add(o.limit))
	}
	o.seq = p.queued
	o.sent = now
	p.queued++
	p.queue = append(p.queue, o)
	p.load.Add(1)
	p.out = append(p.out, o.req...)
	if p.flushing {
		p.mu.Unlock()
		return
	}
	p.flushing = true
	for len(p.out) > 0 && p.err == nil {
		buf := p.out
		p.out, p.spare = p.spare[:0], nil
		p.taken = p.queued
		p.mu.Unlock()
		_, err := p.conn.Write(buf)
		p.mu.Lock()
		if cap(buf) <= 1<<20 {
			p.spare = buf[:0]
		}
		if err != nil {
			p.flushing = false
			p.mu.Unlock()
			p.fail(err)
			return
		}
	}
	p.flushing = false
	p.mu.Unlock()
}

// fail closes the connection (once) and fails every request waiting on
// it with err; those not yet written are marked unsent.
func (p *pipe) fail(err error) {
	p.mu.Lock()
	if p.err != nil {
		p.mu.Unlock()
		return
	}
	p.err = err
	waiting := p.queue[p.head:]
	p.queue, p.head = nil, 0
	taken := p.taken
	p.out = nil
	p.mu.Unlock()
	_ = p.conn.Close()
	p.t.drop(p)
	for _, o := range waiting {
		p.load.Add(-1)
		if err == errClosed {
			o.deliver(nil, errClosed)
		} else {
			o.deliver(nil, &connError{err: err, unsent: o.seq >= taken})
		}
	}
}

// timedOut decides, when a read deadline passes, whether the oldest
// request has waited past its limit (the connection is then given up), or
// the deadline was only a check: nothing outstanding (it is cleared) or
// answers still coming (it is moved on).
func (p *pipe) timedOut() error {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return p.err
	}
	if p.head == len(p.queue) {
		// Idle: the next request sets a deadline again.
		_ = p.conn.SetReadDeadline(time.Time{})
		return nil
	}
	oldest := p.queue[p.head]
	since := oldest.sent
	if progress := epoch.Add(time.Duration(p.progress.Load())); progress.After(since) {
		since = progress
	}
	if now.Sub(since) >= oldest.limit {
		return &ioTimeoutError{limit: oldest.limit}
	}
	_ = p.conn.SetReadDeadline(since.Add(oldest.limit))
	return nil
}

// readLoop reads answer lines and hands each to the oldest waiting
// request, until the connection fails or is closed.
func (p *pipe) readLoop() {
	buf := make([]byte, 16<<10)
	r, w, scanned := 0, 0, 0
	var batch []*op
	for {
		// Every complete line in buf[r:w], answered in one go.
		lines := 0
		for at := scanned; ; lines++ {
			i := bytes.IndexByte(buf[at:w], '\n')
			if i < 0 {
				scanned = w
				break
			}
			at += i + 1
		}
		if lines > 0 {
			p.mu.Lock()
			if p.head+lines > len(p.queue) {
				p.mu.Unlock()
				p.fail(errors.New("the server sent an answer to no request"))
				return
			}
			batch = append(batch[:0], p.queue[p.head:p.head+lines]...)
			clear(p.queue[p.head : p.head+lines])
			p.head += lines
			if p.head == len(p.queue) {
				p.queue, p.head = p.queue[:0], 0
			}
			p.mu.Unlock()
			for _, o := range batch {
				i := bytes.IndexByte(buf[r:w], '\n')
				p.load.Add(-1)
				o.deliver(buf[r:r+i+1], nil)
				r += i + 1
			}
			clear(batch)
			scanned = r
		}
		// Room for more: start over, move the partial line down, or grow.
		switch {
		case r == w:
			r, w, scanned = 0, 0, 0
			if len(buf) > 64<<10 {
				buf = make([]byte, 16<<10)
			}
		case w == len(buf) && r > 0:
			copy(buf, buf[r:w])
			w, scanned, r = w-r, scanned-r, 0
		case w == len(buf):
			if len(buf) >= maxAnswer {
				p.fail(fmt.Errorf("an answer longer than %d bytes", maxAnswer))
				return
			}
			bigger := make([]byte, min(2*len(buf), maxAnswer))
			copy(bigger, buf[:w])
			buf = bigger
		}
		n, err := p.conn.Read(buf[w:])
		w += n
		if n > 0 {
			p.progress.Store(int64(time.Since(epoch)))
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				if err := p.timedOut(); err != nil {
					p.fail(err)
					return
				}
				continue
			}
			p.fail(err)
			return
		}
	}
}
