package dlm

// #include "shim.h"
import "C"

import (
	"context"
	"errors"
	"sync"
	"time"
)

// ErrSessionClosed: the Session was closed (Session.Err after Close).
var ErrSessionClosed = errors.New("dlm: session closed")

// MaxLockDelay is the longest lock-delay a server accepts.
const MaxLockDelay = time.Minute

// Session is a server session (PROTOCOL.md, "Sessions and lock-delay"):
// a connection of its own to the server (a cluster's leader), kept alive
// by a goroutine every third of its TTL. Locks taken through it are bound
// to it: when it ends — Close, its connection lost, or this process
// stopped or paused past the TTL — the server releases them at once, or,
// with LockDelay, keeps their names closed to everyone for that long
// first (the defence of Chubby and Consul against a holder that is only
// slow). There is no failover: a session lives and dies with its
// connection. Done is closed when it ends; its locks are then to be taken
// as gone (their Lost channels are closed too). Its methods are safe for
// concurrent use.
type Session struct {
	c   *Client
	ttl time.Duration
	p   *pipe

	stop     chan struct{} // closed by end: stops the keep-alive
	done     chan struct{} // closed once the session has ended
	mu       sync.Mutex
	err      error // why it ended
	ended    bool
	bound    map[*lockCore]struct{}
	stopOnce sync.Once
}

// Session opens a server session with ttl on a connection of its own.
// The server ends it, releasing its locks, when that connection closes or
// nothing reaches it for ttl; a goroutine sends a keep-alive every third
// of it, so a session ends by its TTL only when this process stops or is
// paused (or its network is) for that long. A server without sessions
// (JackrabbitDLM) fails with ErrBadRequest. Close the Session when done.
func (c *Client) Session(ctx context.Context, ttl time.Duration) (*Session, error) {
	const op = "session"
	if ttl <= 0 {
		e := newError(op, "", ErrInvalidArgument, nil)
		e.Message = "a session's TTL must be positive"
		return nil, e
	}
	if err := c.begin(ctx, op, ""); err != nil {
		return nil, err
	}
	defer c.mu.RUnlock()
	cl := call{kind: C.DLM_CALL_SESSION, ttl: millis(ttl)}
	fc, f := c.fo.start(c.w, &cl, c.t.ioTimeout)
	if f != nil {
		return nil, f.asError(op, "")
	}
	var last error
	p, _, err := c.t.connection(ctx, fc, true, &last)
	fc.free()
	if err != nil {
		return nil, c.transportError(ctx, op, "", err)
	}
	s := &Session{
		c: c, ttl: ttl, p: p,
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
		bound: map[*lockCore]struct{}{},
	}
	if err := s.keep(ctx, &cl); err != nil {
		s.end(err)
		return nil, err
	}
	// A connection that breaks ends the session at once, not at the
	// next keep-alive.
	p.notify(func(err error) {
		e := newError(op, "", ErrUnavailable, nil)
		e.Message = "the session's connection failed: " + netMessage(err)
		if errors.Is(err, errClosed) {
			e = newError(op, "", ErrClosed, nil)
		}
		s.end(e)
	})
	c.onClose(s, func() {
		e := newError(op, "", ErrClosed, nil)
		e.Message = "the Client was closed"
		s.end(e)
	})
	go s.keepAlive()
	return s, nil
}

// keep sends the Session request cl on the session's connection.
func (s *Session) keep(ctx context.Context, cl *call) error {
	const op = "session"
	o := getOp()
	if err := s.roundTrip(ctx, op, cl, o); err != nil {
		s.c.recycle(o, err)
		return err
	}
	f := s.c.w.read(cl, o)
	putOp(o)
	if f != nil {
		return f.asError(op, "")
	}
	return nil
}

// keepAlive sends Session every third of the TTL until the session ends;
// a failed keep-alive ends it.
func (s *Session) keepAlive() {
	period := max(s.ttl/3, time.Millisecond)
	timer := time.NewTimer(period)
	defer timer.Stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-s.stop
		cancel()
	}()
	// A keep-alive (DLM_LOCK_SESSION): refused, not reopened, if the
	// server ended the session meanwhile.
	cl := call{kind: C.DLM_CALL_SESSION, flags: C.DLM_LOCK_SESSION, ttl: millis(s.ttl)}
	for {
		select {
		case <-timer.C:
		case <-s.stop:
			return
		}
		if err := s.c.begin(ctx, "session", ""); err != nil {
			s.end(err)
			return
		}
		err := s.keep(ctx, &cl)
		s.c.mu.RUnlock()
		if err != nil {
			s.end(err)
			return
		}
		timer.Reset(period)
	}
}

// roundTrip sends cl's request on the session's connection and waits for
// its answer into o. A connection that fails ends the session.
func (s *Session) roundTrip(ctx context.Context, op string, cl *call, o *op) error {
	s.mu.Lock()
	ended := s.ended
	s.mu.Unlock()
	if ended {
		e := newError(op, cl.name, ErrLockLost, nil)
		e.Message = "the session has ended"
		return e
	}
	if f := s.c.w.write(cl, o); f != nil {
		return f.asError(op, cl.name)
	}
	o.limit = s.c.t.ioTimeout + time.Duration(cl.wait)*time.Millisecond
	s.p.send(o)
	if err := o.await(ctx); err != nil {
		var ab *abandoned
		if !errors.As(err, &ab) {
			// The server may or may not have seen it: the connection is
			// no longer trusted, and with it goes the session.
			e := s.c.transportError(ctx, op, cl.name, err)
			s.end(e)
			return e
		}
		return s.c.transportError(ctx, op, cl.name, err)
	}
	return nil
}

// end ends the session (once): its connection closes, which ends it on
// the server, and its locks are told they are lost.
func (s *Session) end(why error) {
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return
	}
	s.ended, s.err = true, why
	bound := s.bound
	s.bound = nil
	s.mu.Unlock()
	s.stopOnce.Do(func() { close(s.stop) })
	s.c.forget(s)
	s.c.t.done(s.p, true, false)
	for l := range bound {
		l.lost.fire()
	}
	close(s.done)
}

// bind ties a lock taken through the session to it: lost when it ends.
func (s *Session) bind(l *lockCore) {
	s.mu.Lock()
	if !s.ended {
		s.bound[l] = struct{}{}
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	l.lost.fire()
}

// Done is closed when the session has ended: closed, or lost (its
// connection failed or a keep-alive was refused). Its locks are then
// released by the server, or closed for their lock-delay.
func (s *Session) Done() <-chan struct{} { return s.done }

// Err is nil while the session lives; after Done, why it ended:
// ErrSessionClosed after Close, else the *Error of the failure.
func (s *Session) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Close ends the session now: its connection closes, and the server
// releases every lock bound to it (or closes each for its lock-delay).
// Idempotent; it returns nil.
func (s *Session) Close() error {
	s.end(ErrSessionClosed)
	return nil
}

// Lock acquires name bound to the session, with the options of
// Client.Lock and LockDelay. The lock ends at the first of its TTL and
// the session's end: ask a TTL as long as you need it, or AutoRenew (its
// extensions go through the Client, and keep the binding). Keep a Wait
// shorter than the session's TTL: the keep-alive waits behind it on the
// session's connection. Cancelling ctx during a wait gives up waiting; a
// grant that comes after that is released. On a session that has ended
// it fails with ErrLockLost.
func (s *Session) Lock(ctx context.Context, name string, opts ...LockOption) (*Lock, error) {
	cfg := lockConfig{ttl: DefaultTTL}
	for _, o := range opts {
		o(&cfg)
	}
	cfg.session = s
	return s.c.lock(ctx, "lock", name, cfg)
}

// Locker returns a sync.Locker for name whose locks are bound to the
// session (see Client.Locker; opts are as for Session.Lock). Unless a
// Wait option says otherwise, each of its waits lasts at most half the
// session's TTL (it queues again after each), so that the keep-alive is
// never held back long. Its Lock panics
// with ErrLockLost once the session has ended.
func (s *Session) Locker(name string, opts ...LockOption) *Locker {
	k := s.c.Locker(name, append([]LockOption{Wait(min(LockerWait, s.ttl/2))}, opts...)...)
	k.take = s.Lock
	return k
}

// LockDelay binds a Session.Lock's name to stay closed for d after the
// session ends (at most MaxLockDelay): nobody may take it meanwhile, the
// same client included. Client.Lock refuses it (ErrInvalidArgument): it
// has no session to end.
func LockDelay(d time.Duration) LockOption {
	return func(c *lockConfig) { c.lockDelay = d }
}
