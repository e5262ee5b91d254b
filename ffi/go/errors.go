package dlm

// #include "shim.h"
import "C"

import (
	"errors"
	"fmt"
	"strings"
	"unsafe"
)

// Sentinel errors. Every error this package returns is an *Error whose
// Unwrap yields one of these, so callers branch with errors.Is:
//
//	if errors.Is(err, dlm.ErrNotOwner) { ... }
//
// They mirror libdlm's dlm_status codes one to one.
var (
	// ErrNotOwner: another owner holds the lock or data entry.
	ErrNotOwner = errors.New("dlm: held by another owner")
	// ErrNotFound: no such data entry (or, for UnlockByName, no live lock).
	ErrNotFound = errors.New("dlm: no such entry")
	// ErrConflict: a compare-and-set PutIf found another revision.
	ErrConflict = errors.New("dlm: revision conflict")
	// ErrTimeout: a waiting lock's wait ran out.
	ErrTimeout = errors.New("dlm: timed out waiting for the lock")
	// ErrLockLost: the lock expired or was released; it is never brought
	// back.
	ErrLockLost = errors.New("dlm: the lock was lost")
	// ErrBadRequest: the server refused the request as malformed or over
	// a limit (an over-long TTL, a value over the size limit, failed
	// authentication).
	ErrBadRequest = errors.New("dlm: bad request")
	// ErrUnavailable: the server could not be reached, or the connection
	// failed or timed out.
	ErrUnavailable = errors.New("dlm: server unavailable")
	// ErrCancelled: the context was cancelled (or its deadline passed)
	// while the call waited, or the Client was closed under it. The error
	// also wraps the context's own error (context.Canceled or
	// context.DeadlineExceeded) when the context was the cause.
	ErrCancelled = errors.New("dlm: cancelled")
	// ErrNoMemory: the server's memory budget is spent.
	ErrNoMemory = errors.New("dlm: server out of memory")
	// ErrEncoding: a value could not be encoded or decoded (wrong
	// encoder or key, or a custom Encoder failed; its error is wrapped).
	ErrEncoding = errors.New("dlm: cannot encode or decode value")
	// ErrProtocol: the server answered something that makes no sense.
	ErrProtocol = errors.New("dlm: protocol error")
	// ErrInvalidArgument: an argument was invalid (empty name, a TTL that
	// is not positive, a sealed key that is not 32 bytes, ...).
	ErrInvalidArgument = errors.New("dlm: invalid argument")
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
	// Message is libdlm's description of this failure (what
	// dlm_client_last_error reported), or "" if it left none.
	Message string

	kind  error
	cause error
}

// Error says what failed and why, e.g.
// `dlm: lock "backup": held by another owner`.
func (e *Error) Error() string {
	what := e.Op
	if e.Name != "" {
		what = fmt.Sprintf("%s %q", e.Op, e.Name)
	}
	msg := e.Message
	if msg == "" {
		msg = strings.TrimPrefix(e.kind.Error(), "dlm: ")
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

// newError builds an *Error of the given kind.
func newError(op, name string, kind error, cause error) *Error {
	return &Error{Op: op, Name: name, kind: kind, cause: cause}
}

// sentinel maps a dlm_status to its sentinel error.
func sentinel(s C.dlm_status) error {
	switch s {
	case C.DLM_ERR_NULL_PARAMETER, C.DLM_ERR_INVALID_ARGUMENT:
		return ErrInvalidArgument
	case C.DLM_ERR_UNAVAILABLE:
		return ErrUnavailable
	case C.DLM_ERR_TIMEOUT:
		return ErrTimeout
	case C.DLM_ERR_CANCELLED:
		return ErrCancelled
	case C.DLM_ERR_NOT_OWNER:
		return ErrNotOwner
	case C.DLM_ERR_NOT_FOUND:
		return ErrNotFound
	case C.DLM_ERR_CONFLICT:
		return ErrConflict
	case C.DLM_ERR_BAD_REQUEST:
		return ErrBadRequest
	case C.DLM_ERR_NO_MEMORY:
		return ErrNoMemory
	case C.DLM_ERR_PROTOCOL:
		return ErrProtocol
	case C.DLM_ERR_LOCK_LOST:
		return ErrLockLost
	case C.DLM_ERR_ENCODING:
		return ErrEncoding
	default:
		// DLM_ERR_PANIC, DLM_ERR_BUFFER_TOO_SMALL where it should not
		// happen, and statuses newer than this package.
		return ErrInternal
	}
}

// statusError turns a failed status and the shim's report into an *Error,
// taking ownership of (and freeing) the message.
func statusError(op, name string, s C.dlm_status, report *C.gdlm_err) *Error {
	e := newError(op, name, sentinel(s), nil)
	if report != nil && report.msg != nil {
		e.Message = C.GoString(report.msg)
		C.free(unsafe.Pointer(report.msg))
		report.msg = nil
	}
	if e.Message == "" {
		e.Message = C.GoString(C.dlm_status_string(C.uint32_t(s)))
	}
	if e.kind == ErrInternal && s != C.DLM_ERR_PANIC {
		e.Message = fmt.Sprintf("%s (libdlm status %d)", e.Message, uint32(s))
	}
	return e
}
