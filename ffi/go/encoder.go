package dlm

import "crypto/rand"

// Encoder turns the bytes you Put into the text the server stores, and
// back. name is the data key, so an encoder may bind a value to its key.
//
// Implement it to store values in your own format; pass it to Dial with
// WithEncoder. It is called on the goroutine that called Put or Get,
// possibly from several goroutines at once, so it must be safe for
// concurrent use. Encode's output must be valid UTF-8 (it travels as a
// JSON string). An error it returns (or a panic) fails the call with
// ErrEncoding, and the error is wrapped, so errors.Is and errors.As see it.
//
// The two built-in encoders are libdlm's, the ones every dlm binding
// shares: the table codec (the default: JackrabbitDLM's format, readable
// by every dlm binding and by JackrabbitDLM's Python client) and the
// sealed XChaCha20-Poly1305 encoder (WithSealedKey).
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
