package dlm

// #include "shim.h"
import "C"

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// op is one request on its way: the line to send, the answer line that
// came back, and the scratch space of the libdlm calls that write and read
// them (kept here, on the heap already, so passing their addresses to C
// allocates nothing). Ops are pooled.
type op struct {
	req  []byte // the request line
	line []byte // the answer line, once in
	data []byte // what libdlm read out of the answer (a value, a version)

	n      C.size_t
	ans    C.dlm_answer
	report C.gdlm_err
	lease  *C.dlm_lease

	// What the transport keeps per request.
	done  chan struct{} // receives once the answer (or a failure) is in
	state atomic.Uint32 // opWaiting, opAnswered or opAbandoned
	err   error         // why no answer came; set before done
	seq   uint64        // position in its connection's queue
	sent  time.Time     // when it was queued
	limit time.Duration // how long its answer may take
	// orphan, if set, gets an answer that arrives after the caller gave up
	// waiting (on its own goroutine): a lock granted too late is released.
	orphan func(line []byte)
}

const (
	opWaiting uint32 = iota
	opAnswered
	opAbandoned
)

var ops = sync.Pool{New: func() any {
	return &op{
		req:  make([]byte, 0, 512),
		line: make([]byte, 0, 512),
		data: make([]byte, 0, 512),
		done: make(chan struct{}, 1),
	}
}}

// getOp takes a fresh op from the pool.
func getOp() *op {
	o := ops.Get().(*op)
	o.state.Store(opWaiting)
	return o
}

// putOp gives o back to the pool. Only an op whose answer was received
// (or that was never sent) may go back: an abandoned one may still be
// written to.
func putOp(o *op) {
	const keep = 64 << 10
	if cap(o.req) > keep || cap(o.line) > keep || cap(o.data) > keep {
		return // let a large value's buffers go
	}
	o.err, o.orphan = nil, nil
	o.req, o.line, o.data = o.req[:0], o.line[:0], o.data[:0]
	ops.Put(o)
}

// deliver hands o its answer line (copied) or the failure err. Called
// once per send, by the connection's reader.
func (o *op) deliver(line []byte, err error) {
	if o.state.CompareAndSwap(opWaiting, opAnswered) {
		if err == nil {
			o.line = append(o.line[:0], line...)
		}
		o.err = err
		o.done <- struct{}{}
		return
	}
	// The caller gave up waiting.
	if err == nil && o.orphan != nil {
		orphan, answer := o.orphan, append([]byte(nil), line...)
		go orphan(answer)
	}
}

// await waits for o's answer, or for ctx to be done: then it gives up
// (errAbandoned), unless the answer is already on its way.
func (o *op) await(ctx context.Context) error {
	done := ctx.Done()
	if done == nil {
		<-o.done
		return o.err
	}
	select {
	case <-o.done:
		return o.err
	case <-done:
		if o.state.CompareAndSwap(opWaiting, opAbandoned) {
			return &abandoned{cause: ctx.Err()}
		}
		<-o.done
		return o.err
	}
}

// rearm makes o ready to be sent again after a failure.
func (o *op) rearm() {
	o.err = nil
	o.state.Store(opWaiting)
}

// abandoned: the caller's context ended before the answer came.
type abandoned struct{ cause error }

func (a *abandoned) Error() string { return "abandoned: " + a.cause.Error() }
