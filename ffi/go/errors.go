package dlm

// #include "shim.h"
import "C"

import (
	"errors"
	"fmt"
	"strings"
)

// The sentinel errors of each kind of failure (ErrNotOwner, ErrTimeout,
// ...) are generated from dlm-core's error kinds into errors_gen.go. Every
// error this package returns is an *Error whose Unwrap yields one of them,
// or one of the two below, so callers branch with errors.Is:
//
//	if errors.Is(err, dlm.ErrNotOwner) { ... }
//
// Notes per sentinel: ErrCancelled also wraps the context's own error
// (context.Canceled or context.DeadlineExceeded) when the context was the
// cause, or means the Client was closed under a waiting call; ErrEncoding
// wraps a custom Encoder's error; ErrUnavailable covers no answer within
// the I/O timeout.
var (
	// ErrClosed: the Client was closed.
	ErrClosed = errors.New("dlm: client closed")
	// ErrInternal: a bug inside libdlm or this package (libdlm caught a
	// panic, or returned a status this package does not know).
	ErrInternal = errors.New("dlm: internal error in libdlm")
)

// Error is the error every call of this package returns. It says what
// failed (Op, Name), carries libdlm's message for the failure, and
// unwraps to a sentinel (ErrNotOwner, ...) and, where there is one, the
// underlying cause (a context error, or a custom Encoder's error).
type Error struct {
	// Op is the call that failed: "dial", "lock", "extend", "unlock",
	// "put", "get", ...
	Op string
	// Name is the lock or data key the call was about ("" if none).
	Name string
	// Message is what there is to say about this failure beyond its kind:
	// why the connection failed ("dial: connect: connection refused
	// (127.0.0.1:1)"), the server's reason for a bad request, what is wrong
	// with an answer, ... (libdlm's detail, for what libdlm read), or ""
	// if nothing.
	Message string

	kind  error
	cause error
	// revision is the current revision a compare-and-set conflict found.
	revision uint64
}

// Error says what failed and why, e.g.
// `dlm: lock "backup": held by another owner` or
// `dlm: dial: server unavailable: Connection refused (os error 111) (127.0.0.1:1)`.
func (e *Error) Error() string {
	what := e.Op
	if e.Name != "" {
		what = fmt.Sprintf("%s %q", e.Op, e.Name)
	}
	msg := strings.TrimPrefix(e.kind.Error(), "dlm: ")
	if e.Message != "" {
		msg += ": " + e.Message
	}
	if e.cause != nil {
		return fmt.Sprintf("dlm: %s: %s: %v", what, msg, e.cause)
	}
	return fmt.Sprintf("dlm: %s: %s", what, msg)
}

// Unwrap returns the sentinel and, if any, the cause, for errors.Is and
// errors.As.
func (e *Error) Unwrap() []error {
	if e.cause != nil {
		return []error{e.kind, e.cause}
	}
	return []error{e.kind}
}

// Revision is the current revision an ErrConflict found: a value's,
// after a compare-and-set Put (0: there is no entry), or the server's,
// when a watch asked to resume from a revision whose events the server no
// longer keeps (read the state again, then watch from it). 0 otherwise.
func (e *Error) Revision() uint64 { return e.revision }

// newError builds an *Error of the given kind.
func newError(op, name string, kind error, cause error) *Error {
	return &Error{Op: op, Name: name, kind: kind, cause: cause}
}

// statusError turns a failed libdlm status into an *Error (libdlm's
// detail, if any, is added by the caller: see failure.asError).
func statusError(op, name string, s C.dlm_status) *Error {
	e := newError(op, name, sentinel(s), nil)
	if e.kind == ErrInternal && s != C.DLM_ERR_PANIC {
		e.Message = fmt.Sprintf("libdlm status %d: %s", uint32(s), C.GoString(C.dlm_status_string(C.uint32_t(s))))
	}
	return e
}
