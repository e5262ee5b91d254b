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
// knows nothing of what the lines say. Where to connect, when to pause,
// what to send again and when to give up are libdlm's failover machine
// (failover.go): do drives it, one attempt at a time, and every
// connection belongs to the failover's epoch it was made at (those of an
// older epoch are to a member no longer in use, and are not reused).
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
	fo     *failover
	w      *wire
	dialer net.Dialer
	// tls: connections speak TLS with this configuration (nil: plaintext);
	// without a server name of its own, each connection checks the host
	// of the address it dials.
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

func newTransport(fo *failover, w *wire, cfg *dialConfig) *transport {
	return &transport{
		fo:          fo,
		w:           w,
		dialer:      net.Dialer{Timeout: cfg.connectTimeout},
		ioTimeout:   cfg.ioTimeout,
		legacy:      cfg.legacy,
		sharedConns: cfg.sharedConns,
		maxIdle:     cfg.maxIdle,
		busy:        map[*pipe]struct{}{},
	}
}

// open dials addr for the failover's epoch and starts the connection's
// reader.
func (t *transport) open(ctx context.Context, addr string, epoch uint64) (*pipe, error) {
	conn, err := t.dial(ctx, addr)
	if err != nil {
		return nil, err
	}
	p := &pipe{t: t, conn: conn, epoch: epoch}
	go p.readLoop()
	return p, nil
}

// dial connects to addr, with TLS if the client speaks it (a refused
// handshake is a *tlsFailure).
func (t *transport) dial(ctx context.Context, addr string) (net.Conn, error) {
	conn, err := t.dialer.DialContext(ctx, "tcp", addr)
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
		cfg := t.tls
		if cfg.ServerName == "" {
			cfg = cfg.Clone()
			cfg.ServerName, _, _ = net.SplitHostPort(addr)
		}
		// The handshake within the connect timeout (and ctx).
		hctx, cancel := context.WithTimeout(ctx, t.dialer.Timeout)
		tc := tls.Client(conn, cfg)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			_ = conn.Close()
			return nil, &tlsFailure{err: err}
		}
		conn = tc
	}
	return conn, nil
}

// tlsFailure: a refused handshake, which trying again will not fix.
type tlsFailure struct{ err error }

func (e *tlsFailure) Error() string { return e.err.Error() }
func (e *tlsFailure) Unwrap() error { return e.err }

// gaveUp: the failover gave the call up (no member answered in time, or
// the request may have been applied and cannot be sent again); last is
// the last connection failure seen, if any.
type gaveUp struct {
	f    *failure
	last error
}

func (e *gaveUp) Error() string { return e.f.message }

// do sends the request of fc (written into o.req for each attempt) and
// waits for its answer (into o.line), or for ctx, through the failover:
// it connects where the failover says, pauses when it says, sends again
// what it allows, and gives up when it says (a *gaveUp). exclusive is for
// a lock that waits in the server's queue: it gets a connection of its
// own, and cancelling ctx closes that connection so the server drops the
// waiter. Other requests share the pipelined connections.
func (t *transport) do(ctx context.Context, o *op, exclusive bool, fc *fcall) error {
	exclusive = exclusive || t.legacy
	var last error
	for {
		p, epoch, err := t.connection(ctx, fc, exclusive, &last)
		if err != nil {
			return err
		}
		left, f := fc.write(t.w, o)
		if f != nil {
			t.done(p, exclusive, false)
			return f.asError("", "")
		}
		o.limit = max(left, time.Millisecond)
		p.send(o)
		err = o.await(ctx)
		var outcome uint32
		var ab *abandoned
		var ce *connError
		var te *ioTimeoutError
		switch {
		case err == nil:
			outcome = outcomeAnswered
		case errors.As(err, &ab):
			if exclusive {
				// The server may still hold the request (a waiter in
				// its queue): closing the connection withdraws it.
				p.fail(errClosed)
				t.done(p, exclusive, false)
			}
			return err
		case errors.Is(err, errClosed):
			t.done(p, exclusive, false)
			return err
		case errors.As(err, &ce) && ce.unsent:
			outcome, last = outcomeNotSent, ce.err
		case errors.As(err, &ce):
			outcome, last = outcomeClosed, ce.err
		case errors.As(err, &te):
			outcome, last = outcomeTimedOut, err
		default:
			outcome, last = outcomeClosed, err
		}
		var line []byte
		if outcome == outcomeAnswered {
			line = o.line
		}
		retry, f := t.fo.handle(fc, epoch, outcome, line)
		t.done(p, exclusive, err == nil && !retry)
		switch {
		case f != nil:
			return &gaveUp{f: f, last: last}
		case !retry:
			return nil
		}
		o.rearm()
	}
}

// done is the end of an attempt on p: an exclusive connection is given
// back (kept for reuse if reuse), a shared one stays where it is.
func (t *transport) done(p *pipe, exclusive, reuse bool) {
	if exclusive {
		t.giveBack(p, reuse && !t.legacy)
	}
}

// connection finds a connection for fc: a pooled one of the failover's
// current epoch, or a new one where the failover says (after the pause it
// says), asked who leads first if the failover wants to know. last keeps
// the last connection failure, for the error of a call given up.
func (t *transport) connection(ctx context.Context, fc *fcall, exclusive bool, last *error) (*pipe, uint64, error) {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		if err := ctx.Err(); err != nil {
			return nil, 0, &abandoned{cause: err}
		}
		epoch := t.fo.epoch()
		p, dial, err := t.pooled(epoch, exclusive)
		if err != nil {
			return nil, 0, err
		}
		if p != nil {
			return p, epoch, nil
		}
		st, f := t.fo.pollConnect(fc)
		if f != nil {
			t.undial(dial)
			return nil, 0, &gaveUp{f: f, last: *last}
		}
		if st.wait {
			t.undial(dial)
			// The backoff: a Go timer, and ctx may end it.
			d := time.Until(st.until)
			if timer == nil {
				timer = time.NewTimer(d)
			} else {
				timer.Reset(d)
			}
			select {
			case <-timer.C:
			case <-ctx.Done():
				return nil, 0, &abandoned{cause: ctx.Err()}
			}
			continue
		}
		dctx, cancel := context.WithTimeout(ctx, max(st.within, time.Millisecond))
		p, err = t.open(dctx, st.addr, st.epoch)
		cancel()
		if err == nil && t.fo.connected(st.epoch) {
			var stay bool
			stay, err = t.discover(ctx, p, fc, st.epoch)
			if err == nil && !stay {
				p.fail(errClosed)
				t.undial(dial)
				continue
			}
		}
		if err != nil {
			t.undial(dial)
			var ab *abandoned
			var gu *gaveUp
			var tf *tlsFailure
			switch {
			case errors.As(err, &gu):
				return nil, 0, err
			case ctx.Err() != nil || errors.As(err, &ab):
				return nil, 0, &abandoned{cause: ctx.Err()}
			case errors.As(err, &tf):
				// A refused certificate stays refused: say why at once.
				return nil, 0, &connError{err: err}
			case tlsAlert(err):
				// In TLS 1.3 the server checks our certificate after our
				// side of the handshake is done: its refusal comes as an
				// alert on the first read, and stays a refusal.
				if ce := (*connError)(nil); errors.As(err, &ce) {
					return nil, 0, err
				}
				return nil, 0, &connError{err: err}
			}
			*last = err
			outcome := uint32(outcomeConnectFailed)
			var ce *connError
			if errors.As(err, &ce) {
				// Discovery failed on a connection that was up.
				outcome, *last = outcomeNotSent, ce.err
			}
			if _, f := t.fo.handle(fc, st.epoch, outcome, nil); f != nil {
				return nil, 0, &gaveUp{f: f, last: *last}
			}
			continue
		}
		if q, err := t.adopt(p, st.epoch, exclusive, dial); err != nil || q != nil {
			return q, st.epoch, err
		}
	}
}

// discover asks the new connection p who leads, and hands the answer to
// the failover: whether to use p (false: the leader is elsewhere, or the
// member could not say). An I/O failure is a *connError (p is failed), a
// give-up a *gaveUp.
func (t *transport) discover(ctx context.Context, p *pipe, fc *fcall, epoch uint64) (bool, error) {
	o := getOp()
	if f := discoveryLine(t.w, o); f != nil {
		putOp(o)
		p.fail(errClosed)
		return false, f.asError("dial", "")
	}
	o.limit = t.ioTimeout
	p.send(o)
	if err := o.await(ctx); err != nil {
		var ab *abandoned
		if !errors.As(err, &ab) {
			putOp(o)
		}
		p.fail(errClosed)
		if ce := (*connError)(nil); errors.As(err, &ce) || ab != nil {
			return false, err
		}
		return false, &connError{err: err}
	}
	stay, f := t.fo.discovered(fc, epoch, o.line)
	putOp(o)
	if f != nil {
		p.fail(errClosed)
		return false, &gaveUp{f: f}
	}
	return stay, nil
}

// pooled takes a connection of epoch for a call: for an exclusive one, an
// idle connection; for a shared one, the least busy, unless all are busy
// and there is room for another (then dial is true: the caller opens one,
// counted as being dialled until adopt or undial). Connections of other
// epochs are closed once idle.
func (t *transport) pooled(epoch uint64, exclusive bool) (p *pipe, dial bool, err error) {
	var stale []*pipe
	defer func() {
		for _, q := range stale {
			q.fail(errClosed)
		}
	}()
	t.mu.Lock()
	defer t.mu.Unlock()
	if exclusive {
		if t.closing || t.closed {
			return nil, false, errClosed
		}
		for len(t.idle) > 0 {
			q := t.idle[len(t.idle)-1]
			t.idle = t.idle[:len(t.idle)-1]
			if q.epoch != epoch {
				stale = append(stale, q)
				continue
			}
			t.busy[q] = struct{}{}
			return q, false, nil
		}
		return nil, false, nil
	}
	if t.closed {
		return nil, false, errClosed
	}
	var best *pipe
	current, old := 0, 0
	for _, q := range t.shared {
		if q.epoch != epoch {
			old++
			continue
		}
		current++
		if best == nil || q.load.Load() < best.load.Load() {
			best = q
		}
	}
	if old > 0 {
		// Connections to a member no longer in use: closed once idle.
		kept := t.shared[:0]
		for _, q := range t.shared {
			if q.epoch != epoch && q.load.Load() == 0 {
				stale = append(stale, q)
				continue
			}
			kept = append(kept, q)
		}
		clear(t.shared[len(kept):])
		t.shared = kept
	}
	full := current+t.dialing >= t.sharedConns
	if best != nil && (best.load.Load() == 0 || full) {
		return best, false, nil
	}
	t.dialing++
	return nil, true, nil
}

// undial: a connection counted by pooled as being dialled will not be.
func (t *transport) undial(dial bool) {
	if dial {
		t.mu.Lock()
		t.dialing--
		t.mu.Unlock()
	}
}

// adopt puts the new connection p of epoch in use: busy for an exclusive
// call, among the shared ones otherwise. It returns the connection to use
// (nil: look again, others opened enough meanwhile).
func (t *transport) adopt(p *pipe, epoch uint64, exclusive, dial bool) (*pipe, error) {
	t.mu.Lock()
	if dial {
		t.dialing--
	}
	if t.closed || (exclusive && t.closing) {
		t.mu.Unlock()
		p.fail(errClosed)
		return nil, errClosed
	}
	if exclusive {
		t.busy[p] = struct{}{}
		t.mu.Unlock()
		return p, nil
	}
	current := 0
	for _, q := range t.shared {
		if q.epoch == epoch {
			current++
		}
	}
	if current >= t.sharedConns {
		t.mu.Unlock()
		p.fail(errClosed)
		return nil, nil
	}
	t.shared = append(t.shared, p)
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
	t     *transport
	conn  net.Conn
	epoch uint64       // the failover's epoch it was made at
	load  atomic.Int32 // requests sent and not yet answered

	mu       sync.Mutex
	out      []byte // request bytes not yet taken by a write
	spare    []byte // the other send buffer
	flushing bool   // a caller is writing
	queue    []*op  // waiting for answers, oldest first, from head
	head     int
	queued   uint64      // requests ever queued
	taken    uint64      // requests whose bytes a write has taken
	err      error       // why the connection is closed, once it is
	onFail   func(error) // told once when it closes (a session's)
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
	onFail := p.onFail
	p.mu.Unlock()
	if onFail != nil {
		defer onFail(err)
	}
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

// notify has f called once when the connection closes (by the goroutine
// that closes it), or at once if it already has.
func (p *pipe) notify(f func(error)) {
	p.mu.Lock()
	err := p.err
	if err == nil {
		p.onFail = f
	}
	p.mu.Unlock()
	if err != nil {
		f(err)
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
