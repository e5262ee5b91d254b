package dlm

// #include "shim.h"
import "C"

import (
	"crypto/rand"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// failover is libdlm's dlm_failover: dlm-core's failover machine, which
// decides which cluster member to talk to (the leader, once a member says
// who leads), when to try the next, how long to pause between rounds
// (backoff with jitter), what may be sent again and when to give up. The
// transport only carries out what it says: it dials, sleeps on Go timers
// and reports what happened. No rule of it is written again in Go.
//
// libdlm's failover is not thread-safe: mu is held around each C call,
// never across I/O.
type failover struct {
	mu  sync.Mutex
	ptr *C.dlm_failover // nil once freed
	// cur is the machine's epoch as last read (under mu, after every call
	// that can move it: a failure handled, a discovery), so that finding a
	// pooled connection takes no lock and no C call.
	cur atomic.Uint64
}

// fcall is one request's passage through the failover (libdlm's
// dlm_failover_call): its deadline, resend rule and request ID. Used by
// one goroutine at a time; freed with free.
type fcall struct {
	ptr *C.dlm_failover_call
}

// newFailover parses servers ("host:port" or "a:1,b:2,c:3") and makes the
// failover, seeded from the operating system's random source. legacy
// turns leader discovery off (JackrabbitDLM has no Cluster action).
func newFailover(servers string, legacy bool) (*failover, *failure) {
	var seed [16]byte
	if _, err := rand.Read(seed[:]); err != nil {
		return nil, &failure{status: C.DLM_ERR_SYSTEM, message: "no random bytes: " + err.Error()}
	}
	var noDiscovery C.uint32_t
	if legacy {
		noDiscovery = 1
	}
	f := &failover{}
	var report C.gdlm_err
	s := C.gdlm_failover_new(textOf(servers), C.size_t(len(servers)), noDiscovery,
		(*C.uint8_t)(unsafe.Pointer(&seed[0])), &f.ptr, &report)
	if s != C.DLM_OK {
		return nil, takeFailure(s, &report)
	}
	return f, nil
}

// free frees the failover (idempotent). No call may be in progress.
func (f *failover) free() {
	f.mu.Lock()
	defer f.mu.Unlock()
	C.dlm_failover_free(f.ptr)
	f.ptr = nil
}

// server is the member in use ("host:port").
func (f *failover) server() string {
	var buf [C.DLM_FAILOVER_ADDRESS_MAX + 1]C.char
	var n C.size_t
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ptr == nil {
		return ""
	}
	if C.dlm_failover_server(f.ptr, &buf[0], C.size_t(len(buf)), &n) != C.DLM_OK {
		return ""
	}
	return C.GoStringN(&buf[0], C.int(n))
}

// epoch is the current epoch: pooled connections of another are to a
// server no longer in use.
func (f *failover) epoch() uint64 { return f.cur.Load() }

// sync reads the machine's epoch into cur; the caller holds mu.
func (f *failover) sync() {
	var e C.uint64_t
	if f.ptr != nil && C.dlm_failover_epoch(f.ptr, &e) == C.DLM_OK {
		f.cur.Store(uint64(e))
	}
}

// start starts a call of c, to be over within timeout (plus a lock's
// wait). A put, erase or unlock gets its request ID here.
func (f *failover) start(w *wire, c *call, timeout time.Duration) (*fcall, *failure) {
	fc := &fcall{}
	var report C.gdlm_err
	l := c.lists()
	f.mu.Lock()
	s := C.gdlm_failover_start(f.ptr, w.wptr(),
		C.uint32_t(c.kind), C.uint32_t(c.flags), textOf(c.name), C.size_t(len(c.name)),
		bytesPtr(c.value), C.size_t(len(c.value)), C.uint64_t(c.ttl), C.uint64_t(c.wait),
		C.uint64_t(c.token), C.uint64_t(c.revision), C.uint32_t(c.permits), C.uint64_t(c.delay),
		l.names, l.nameLens, l.nNames, l.readers, l.readerLens, l.nReaders,
		C.uint64_t(nowMs()), C.uint64_t(millis(timeout)), &fc.ptr, &report)
	f.mu.Unlock()
	runtime.KeepAlive(w)
	if s != C.DLM_OK {
		return nil, takeFailure(s, &report)
	}
	return fc, nil
}

// startLease starts a call of what the lease wants sent (nil if nothing),
// to be over within timeout and, for an extension, by the lease's
// deadline. The caller holds the lease's lock.
func (f *failover) startLease(l *C.dlm_lease, w *wire, timeout time.Duration) (*fcall, C.dlm_lease_action, *failure) {
	fc := &fcall{}
	var action C.dlm_lease_action
	var report C.gdlm_err
	f.mu.Lock()
	s := C.gdlm_failover_start_lease(f.ptr, l, w.wptr(), C.uint64_t(nowMs()),
		C.uint64_t(millis(timeout)), &fc.ptr, &action, &report)
	f.mu.Unlock()
	runtime.KeepAlive(w)
	if s != C.DLM_OK {
		return nil, action, takeFailure(s, &report)
	}
	if fc.ptr == nil {
		return nil, action, nil
	}
	return fc, action, nil
}

// startConnect starts a call that only connects (and discovers).
func (f *failover) startConnect(timeout time.Duration) *fcall {
	fc := &fcall{}
	f.mu.Lock()
	C.dlm_failover_start_connect(f.ptr, C.uint64_t(nowMs()), C.uint64_t(millis(timeout)), &fc.ptr)
	f.mu.Unlock()
	return fc
}

// free frees the call (idempotent).
func (fc *fcall) free() {
	if fc != nil && fc.ptr != nil {
		C.dlm_failover_call_free(fc.ptr)
		fc.ptr = nil
	}
}

// step is what the failover says to do to get a connection.
type step struct {
	wait   bool      // sleep until `until`, then ask again
	until  time.Time // (wait)
	addr   string    // connect here (not wait)
	epoch  uint64    // the connection's epoch
	within time.Duration
}

// pollConnect asks what to do for fc now; a failure is giving up.
func (f *failover) pollConnect(fc *fcall) (step, *failure) {
	var addr [C.DLM_FAILOVER_ADDRESS_MAX + 1]C.char
	var out C.dlm_failover_step
	var report C.gdlm_err
	f.mu.Lock()
	s := C.gdlm_failover_poll_connect(f.ptr, fc.ptr, C.uint64_t(nowMs()),
		&addr[0], C.size_t(len(addr)), &out, &report)
	f.mu.Unlock()
	if s != C.DLM_OK {
		return step{}, takeFailure(s, &report)
	}
	if out.kind == C.DLM_FAILOVER_WAIT {
		return step{wait: true, until: msTime(uint64(out.until_ms))}, nil
	}
	return step{
		addr:   C.GoString(&addr[0]),
		epoch:  uint64(out.epoch),
		within: time.Duration(out.within_ms) * time.Millisecond,
	}, nil
}

// connected says whether to ask a new connection of epoch who leads.
func (f *failover) connected(epoch uint64) bool {
	var ask C.bool
	f.mu.Lock()
	C.dlm_failover_connected(f.ptr, C.uint64_t(epoch), &ask)
	f.mu.Unlock()
	return bool(ask)
}

// discovered hands the failover a member's answer to the discovery
// request; stay says whether to use this connection. A failure is
// giving up.
func (f *failover) discovered(fc *fcall, epoch uint64, line []byte) (bool, *failure) {
	var stay C.bool
	var report C.gdlm_err
	f.mu.Lock()
	s := C.gdlm_failover_discovered(f.ptr, fc.ptr, C.uint64_t(epoch),
		(*C.char)(bytesPtr(line)), C.size_t(len(line)), C.uint64_t(nowMs()), &stay, &report)
	f.sync()
	f.mu.Unlock()
	if s != C.DLM_OK {
		return false, takeFailure(s, &report)
	}
	return bool(stay), nil
}

// The outcomes of an attempt (dlm_failover_outcome).
const (
	outcomeConnectFailed = C.DLM_OUTCOME_CONNECT_FAILED
	outcomeNotSent       = C.DLM_OUTCOME_NOT_SENT
	outcomeClosed        = C.DLM_OUTCOME_CLOSED
	outcomeTimedOut      = C.DLM_OUTCOME_TIMED_OUT
	outcomeAnswered      = C.DLM_OUTCOME_ANSWERED
)

// handle reports what became of an attempt of fc on a connection of
// epoch (line: the answer, for outcomeAnswered); retry says whether to
// send it again (false: read the answer). A failure is giving up.
func (f *failover) handle(fc *fcall, epoch uint64, outcome uint32, line []byte) (bool, *failure) {
	var retry C.bool
	var report C.gdlm_err
	f.mu.Lock()
	s := C.gdlm_failover_handle(f.ptr, fc.ptr, C.uint64_t(epoch), C.uint32_t(outcome),
		(*C.char)(bytesPtr(line)), C.size_t(len(line)), C.uint64_t(nowMs()), &retry, &report)
	if s != C.DLM_OK || retry {
		// A failure may have moved the machine to another member (an
		// accepted answer never does).
		f.sync()
	}
	f.mu.Unlock()
	if s != C.DLM_OK {
		return false, takeFailure(s, &report)
	}
	return bool(retry), nil
}

// write writes this attempt's line of fc into o.req (its request ID, a
// lock's wait cut to what is left) and returns what is left of the call's
// time: the most the answer may take.
func (fc *fcall) write(w *wire, o *op) (time.Duration, *failure) {
	var left C.uint64_t
	for attempt := 0; ; attempt++ {
		buf := o.req[:cap(o.req)]
		s := C.dlm_failover_call_write(fc.ptr, w.wptr(), C.uint64_t(nowMs()),
			(*C.char)(bytesPtr(buf)), C.size_t(len(buf)), &o.n, &left)
		runtime.KeepAlive(w)
		switch {
		case s == C.DLM_OK:
			o.req = buf[:o.n]
			return time.Duration(left) * time.Millisecond, nil
		case s == C.DLM_ERR_BUFFER_TOO_SMALL && attempt == 0:
			o.req = make([]byte, 0, int(o.n))
		default:
			return 0, &failure{status: s}
		}
	}
}

// discoveryLine is the request that asks a member who leads.
func discoveryLine(w *wire, o *op) *failure {
	for attempt := 0; ; attempt++ {
		buf := o.req[:cap(o.req)]
		s := C.dlm_failover_discovery_line(w.wptr(), (*C.char)(bytesPtr(buf)), C.size_t(len(buf)), &o.n)
		runtime.KeepAlive(w)
		switch {
		case s == C.DLM_OK:
			o.req = buf[:o.n]
			return nil
		case s == C.DLM_ERR_BUFFER_TOO_SMALL && attempt == 0:
			o.req = make([]byte, 0, int(o.n))
		default:
			return &failure{status: s}
		}
	}
}
