package dlm

// #include "shim.h"
import "C"

import (
	"crypto/rand"
	"errors"
	"fmt"
	"runtime/cgo"
	"strings"
	"sync"
	"unicode/utf8"
	"unsafe"
)

// Encoder turns the bytes you Put into the text the server stores, and
// back. name is the data key, so an encoder may bind a value to its key.
//
// Implement it to store values in your own format; pass it to Dial with
// WithEncoder. libdlm calls it (through a C function pointer) on the
// goroutine that called Put or Get, possibly from several goroutines at
// once, so it must be safe for concurrent use. It may be called more than
// once for the same value (when its output is larger than libdlm's first
// buffer). Encode's output must be valid UTF-8 (it travels as a JSON
// string). An error it returns fails the call with ErrEncoding and is
// wrapped, so errors.Is and errors.As see it.
//
// The two built-in encoders need no Go code: libdlm's table codec (the
// default: JackrabbitDLM's format, readable by every dlm binding and by
// JackrabbitDLM's Python client) and its sealed XChaCha20-Poly1305 encoder
// (WithSealedKey).
type Encoder interface {
	Encode(name string, plain []byte) (string, error)
	Decode(name, stored string) ([]byte, error)
}

// SealedKeySize is the length of a key for WithSealedKey.
const SealedKeySize = 32

// NewSealedKey returns a fresh random key for WithSealedKey, from
// crypto/rand.
func NewSealedKey() ([]byte, error) {
	key := make([]byte, SealedKeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	return key, nil
}

// goEncoder is what libdlm's encoder userdata (a cgo.Handle) points at.
type goEncoder struct {
	enc Encoder
	// The error of the last failed call per OS thread, until the Go call
	// that made libdlm call us picks it up (see takeErr).
	errs sync.Map // uintptr -> error
}

// takeErr returns (and forgets) the error the encoder returned on the OS
// thread `thread`, if any.
func (g *goEncoder) takeErr(thread C.uintptr_t) error {
	if g == nil {
		return nil
	}
	if v, ok := g.errs.LoadAndDelete(uintptr(thread)); ok {
		return v.(error)
	}
	return nil
}

//export goDlmCode
func goDlmCode(h C.uintptr_t, thread C.uintptr_t, decode C.int, name *C.uint8_t, nameLen C.size_t,
	in *C.uint8_t, inLen C.size_t, out *C.uint8_t, outCap C.size_t, outLen *C.size_t) (status C.uint32_t) {
	g := cgo.Handle(h).Value().(*goEncoder)
	// A panic must not unwind through libdlm's frames.
	defer func() {
		if r := recover(); r != nil {
			g.errs.Store(uintptr(thread), fmt.Errorf("encoder panicked: %v", r))
			status = C.DLM_ERR_ENCODING
		}
	}()
	key := strings.Clone(unsafe.String((*byte)(unsafe.Pointer(name)), int(nameLen)))
	var input []byte
	if inLen > 0 {
		input = unsafe.Slice((*byte)(unsafe.Pointer(in)), int(inLen))
	}
	var result []byte
	if decode != 0 {
		plain, err := g.enc.Decode(key, string(input))
		if err != nil {
			g.errs.Store(uintptr(thread), err)
			return C.DLM_ERR_ENCODING
		}
		result = plain
	} else {
		stored, err := g.enc.Encode(key, append([]byte(nil), input...))
		if err == nil && !utf8.ValidString(stored) {
			err = errors.New("encoder output is not valid UTF-8")
		}
		if err != nil {
			g.errs.Store(uintptr(thread), err)
			return C.DLM_ERR_ENCODING
		}
		result = []byte(stored)
	}
	*outLen = C.size_t(len(result))
	if len(result) > int(outCap) {
		return C.DLM_ERR_BUFFER_TOO_SMALL
	}
	copy(unsafe.Slice((*byte)(unsafe.Pointer(out)), int(outCap)), result)
	return C.DLM_OK
}
