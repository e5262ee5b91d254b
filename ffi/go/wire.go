package dlm

// #include "shim.h"
import "C"

import (
	"runtime"
	"time"
	"unsafe"
)

// The package's only calls into libdlm are here: dlm-core's sans-I/O
// client behind libdlm's dlm_wire (request lines out, typed answers in)
// and dlm_lease (a held lock's lease). Each is a short computation on the
// calling goroutine's thread — no socket, no sleep, no lock held across
// it — so a goroutine never waits inside cgo; the waiting happens in Go
// (transport.go), on the netpoller.

// call is one request's fields, as libdlm's dlm_request has them.
type call struct {
	kind     uint32 // C.DLM_CALL_*
	flags    uint32 // C.DLM_PUT_IF, C.DLM_VALUE_STORED, C.DLM_LOCK_AUTO_RENEW
	name     string
	value    []byte
	ttl      uint64 // milliseconds
	wait     uint64 // milliseconds
	token    uint64
	revision uint64
	permits  uint32   // a C.DLM_CALL_SEMAPHORE's size
	delay    uint64   // a C.DLM_LOCK_SESSION lock's lock-delay, milliseconds
	names    []string // a C.DLM_CALL_LOCK_ALL's lock names
	readers  []string // a C.DLM_PUT_READERS put's reader identities
}

// lists is a call's lists as the shim takes them: each list's texts one
// after the other in one buffer, and their lengths (nil when empty).
type lists struct {
	names, readers       *C.char
	nameLens, readerLens *C.size_t
	nNames, nReaders     C.size_t
}

// lists packs c's names and readers for a call into libdlm.
func (c *call) lists() lists {
	var l lists
	l.names, l.nameLens, l.nNames = packList(c.names)
	l.readers, l.readerLens, l.nReaders = packList(c.readers)
	return l
}

// packList lays items out for the shim; nothing is allocated for none.
func packList(items []string) (*C.char, *C.size_t, C.size_t) {
	if len(items) == 0 {
		return nil, nil, 0
	}
	size := 0
	for _, s := range items {
		size += len(s)
	}
	buf := make([]byte, 0, size)
	lens := make([]C.size_t, len(items))
	for i, s := range items {
		buf = append(buf, s...)
		lens[i] = C.size_t(len(s))
	}
	var p *C.char
	if len(buf) > 0 {
		p = (*C.char)(unsafe.Pointer(unsafe.SliceData(buf)))
	}
	return p, unsafe.SliceData(lens), C.size_t(len(items))
}

// wire is libdlm's dlm_wire: the owner ID, framing, credentials and (if
// not a Go Encoder) the value encoder of one Client. It is immutable and
// thread-safe; the Client frees it in Close, after every call and lease
// that uses it is done.
type wire struct {
	ptr *C.dlm_wire
}

// wptr returns the C pointer for a call; under the debug build tag it
// forces a garbage collection first (see maybe_gc_debug.go).
func (w *wire) wptr() *C.dlm_wire {
	p := w.ptr
	maybeGC()
	return p
}

func (w *wire) free() {
	C.dlm_wire_free(w.ptr)
	w.ptr = nil
}

// id is the wire's owner ID.
func (w *wire) id() string {
	buf := make([]byte, 256)
	for {
		var n C.size_t
		s := C.gdlm_wire_id(w.wptr(), (*C.char)(unsafe.Pointer(unsafe.SliceData(buf))), C.size_t(len(buf)), &n)
		runtime.KeepAlive(w)
		switch s {
		case C.DLM_OK:
			return string(buf[:n])
		case C.DLM_ERR_BUFFER_TOO_SMALL:
			buf = make([]byte, int(n)+1)
		default:
			return ""
		}
	}
}

// failure is what a failed libdlm call left: its status and detail. It
// is turned into an *Error by the caller, which knows the call's Op and
// name.
type failure struct {
	status  C.dlm_status
	message string
}

// takeFailure reads (and frees) the shim's report of a failed call.
func takeFailure(s C.dlm_status, report *C.gdlm_err) *failure {
	f := &failure{status: s}
	if report.msg != nil {
		f.message = C.GoString(report.msg)
		C.free(unsafe.Pointer(report.msg))
		report.msg = nil
	}
	return f
}

// asError turns a failure into the *Error of call op on name.
func (f *failure) asError(op, name string) *Error {
	e := statusError(op, name, f.status)
	if f.message != "" {
		if e.Message != "" {
			e.Message = f.message + " (" + e.Message + ")"
		} else {
			e.Message = f.message
		}
	}
	return e
}

// bytesPtr points C at a slice's bytes for the duration of a call.
func bytesPtr(b []byte) unsafe.Pointer {
	return unsafe.Pointer(unsafe.SliceData(b))
}

// textOf points C at a string's text for the duration of a call (libdlm
// takes pointer and length, never a NUL-terminated string, and copies
// what it keeps).
func textOf(s string) *C.char {
	return (*C.char)(unsafe.Pointer(unsafe.StringData(s)))
}

// write encodes c's request line into o.req (growing it if libdlm says it
// is too small). A put's value is encoded here by libdlm's encoder, unless
// c says it already is (C.DLM_VALUE_STORED).
func (w *wire) write(c *call, o *op) *failure {
	l := c.lists()
	for attempt := 0; ; attempt++ {
		buf := o.req[:cap(o.req)]
		s := C.gdlm_wire_write(w.wptr(),
			C.uint32_t(c.kind), C.uint32_t(c.flags), textOf(c.name), C.size_t(len(c.name)),
			bytesPtr(c.value), C.size_t(len(c.value)), C.uint64_t(c.ttl), C.uint64_t(c.wait),
			C.uint64_t(c.token), C.uint64_t(c.revision), C.uint32_t(c.permits), C.uint64_t(c.delay),
			l.names, l.nameLens, l.nNames, l.readers, l.readerLens, l.nReaders,
			(*C.char)(bytesPtr(buf)), C.size_t(len(buf)), &o.n, &o.report)
		runtime.KeepAlive(w)
		switch {
		case s == C.DLM_OK:
			o.req = buf[:o.n]
			return nil
		case s == C.DLM_ERR_BUFFER_TOO_SMALL && attempt == 0:
			o.req = make([]byte, 0, int(o.n))
		default:
			return takeFailure(s, &o.report)
		}
	}
}

// read reads o.line, the answer to c, into o.ans, and a get's value, a
// version or statistics into o.data[:o.ans.data_len]. On a compare-and-set
// conflict, o.ans.revision is the current revision.
func (w *wire) read(c *call, o *op) *failure {
	l := c.lists()
	// With libdlm's own encoders, and for the stored text, as many bytes
	// as the line are enough; a second try is for a larger report.
	if cap(o.data) < len(o.line) {
		o.data = make([]byte, 0, len(o.line))
	}
	for attempt := 0; ; attempt++ {
		data := o.data[:cap(o.data)]
		s := C.gdlm_wire_read(w.wptr(),
			C.uint32_t(c.kind), C.uint32_t(c.flags), textOf(c.name), C.size_t(len(c.name)),
			bytesPtr(c.value), C.size_t(len(c.value)), C.uint64_t(c.ttl), C.uint64_t(c.wait),
			C.uint64_t(c.token), C.uint64_t(c.revision), C.uint32_t(c.permits), C.uint64_t(c.delay),
			l.names, l.nameLens, l.nNames, l.readers, l.readerLens, l.nReaders,
			(*C.char)(bytesPtr(o.line)), C.size_t(len(o.line)),
			bytesPtr(data), C.size_t(len(data)), &o.ans, &o.report)
		runtime.KeepAlive(w)
		switch {
		case s == C.DLM_OK:
			o.data = data[:o.ans.data_len]
			return nil
		case s == C.DLM_ERR_BUFFER_TOO_SMALL && attempt == 0:
			o.data = make([]byte, 0, int(o.ans.data_len))
		default:
			return takeFailure(s, &o.report)
		}
	}
}

// epoch is where the leases' clock starts: they count milliseconds on
// Go's monotonic clock from here.
var epoch = time.Now()

// nowMs is the leases' clock, rounded down (so a request's send time is
// never later than it was, and a deadline counted from it never later
// than the server's).
func nowMs() uint64 {
	return uint64(time.Since(epoch) / time.Millisecond)
}

// msTime is the time.Time of a lease instant.
func msTime(ms uint64) time.Time {
	return epoch.Add(time.Duration(ms) * time.Millisecond)
}

// newLease reads o.line, the answer to the lock request c sent at sent,
// into a lease (the caller frees it with C.dlm_lease_free).
func (w *wire) newLease(c *call, o *op, sent uint64) (*C.dlm_lease, *failure) {
	l := c.lists()
	s := C.gdlm_lease_new(w.wptr(),
		C.uint32_t(c.kind), C.uint32_t(c.flags), textOf(c.name), C.size_t(len(c.name)),
		nil, 0, C.uint64_t(c.ttl), C.uint64_t(c.wait), 0, 0, C.uint32_t(c.permits), C.uint64_t(c.delay),
		l.names, l.nameLens, l.nNames, l.readers, l.readerLens, l.nReaders,
		C.uint64_t(sent), C.uint64_t(nowMs()),
		(*C.char)(bytesPtr(o.line)), C.size_t(len(o.line)), &o.lease, &o.report)
	runtime.KeepAlive(w)
	if s != C.DLM_OK {
		return nil, takeFailure(s, &o.report)
	}
	out := o.lease
	o.lease = nil
	return out, nil
}

// newLeases reads o.line, the answer to the multi-lock request c sent at
// sent, into one lease per name, in order (the caller frees each with
// C.dlm_lease_free).
func (w *wire) newLeases(c *call, o *op, sent uint64) ([]*C.dlm_lease, *failure) {
	l := c.lists()
	// C memory: libdlm writes pointers into it.
	out := (**C.dlm_lease)(C.calloc(C.size_t(len(c.names)+1), C.size_t(unsafe.Sizeof((*C.dlm_lease)(nil)))))
	if out == nil {
		return nil, &failure{status: C.DLM_ERR_NO_MEMORY}
	}
	defer C.free(unsafe.Pointer(out))
	s := C.gdlm_lease_new_all(w.wptr(),
		C.uint32_t(c.kind), C.uint32_t(c.flags), textOf(c.name), C.size_t(len(c.name)),
		nil, 0, C.uint64_t(c.ttl), C.uint64_t(c.wait), 0, 0, C.uint32_t(c.permits), C.uint64_t(c.delay),
		l.names, l.nameLens, l.nNames, l.readers, l.readerLens, l.nReaders,
		C.uint64_t(sent), C.uint64_t(nowMs()),
		(*C.char)(bytesPtr(o.line)), C.size_t(len(o.line)), out, C.size_t(len(c.names)), &o.report)
	runtime.KeepAlive(w)
	if s != C.DLM_OK {
		return nil, takeFailure(s, &o.report)
	}
	leases := make([]*C.dlm_lease, len(c.names))
	copy(leases, unsafe.Slice(out, len(c.names)))
	return leases, nil
}

// owner reads whose value o.line, the answer to the get c, carries ("" if
// the server did not say). Called after read succeeded on the same line.
func (w *wire) owner(c *call, o *op) string {
	l := c.lists()
	buf := make([]byte, 64)
	for attempt := 0; attempt < 2; attempt++ {
		var n C.size_t
		s := C.gdlm_wire_owner(w.wptr(),
			C.uint32_t(c.kind), C.uint32_t(c.flags), textOf(c.name), C.size_t(len(c.name)),
			nil, 0, 0, 0, 0, 0, 0, 0,
			l.names, l.nameLens, l.nNames, l.readers, l.readerLens, l.nReaders,
			(*C.char)(bytesPtr(o.line)), C.size_t(len(o.line)),
			(*C.char)(bytesPtr(buf)), C.size_t(len(buf)), &n, nil)
		runtime.KeepAlive(w)
		switch s {
		case C.DLM_OK:
			return string(buf[:n])
		case C.DLM_ERR_BUFFER_TOO_SMALL:
			buf = make([]byte, int(n)+1)
		default:
			return ""
		}
	}
	return ""
}
