package dlm

import "time"

// An Option configures Dial.
type Option func(*dialConfig)

type dialConfig struct {
	clientID       string
	connectTimeout time.Duration
	ioTimeout      time.Duration
	legacy         bool
	credName       string
	credSecret     string
	hasCreds       bool
	sealedKey      []byte
	encoder        Encoder
}

// WithClientID sets the owner ID the client sends (instead of libdlm's
// random 48-character one). Everything the client locks or stores belongs
// to this ID: another Client with the same ID is the same owner.
func WithClientID(id string) Option {
	return func(c *dialConfig) { c.clientID = id }
}

// WithConnectTimeout bounds each TCP connection attempt (libdlm's default
// is 5 s). Rounded up to whole milliseconds; must be positive.
func WithConnectTimeout(d time.Duration) Option {
	return func(c *dialConfig) { c.connectTimeout = d }
}

// WithIOTimeout bounds how long a call waits for the server's answer,
// beyond a lock's own Wait (libdlm's default is 10 s). Rounded up to whole
// milliseconds; must be positive. Calls that do not wait for a lock are
// bounded by it (their ctx is only checked before they start).
func WithIOTimeout(d time.Duration) Option {
	return func(c *dialConfig) { c.ioTimeout = d }
}

// WithLegacyFraming sends JackrabbitDLM's table-encoded request lines
// instead of plain JSON, for talking to a JackrabbitDLM server. dlm-server
// understands both.
func WithLegacyFraming() Option {
	return func(c *dialConfig) { c.legacy = true }
}

// WithCredentials authenticates every request as the server identity name
// with its secret (the "Identity" of the server's NAME.cfg file). What the
// client creates can then only be used with the same credentials.
func WithCredentials(name, secret string) Option {
	return func(c *dialConfig) {
		c.credName, c.credSecret, c.hasCreds = name, secret, true
	}
}

// WithSealedKey makes the client seal every value with libdlm's
// XChaCha20-Poly1305 encoder under this 32-byte key (see NewSealedKey), so
// the server only ever stores ciphertext bound to the value's key. The key
// is copied. It replaces any encoder set before it.
func WithSealedKey(key []byte) Option {
	return func(c *dialConfig) {
		c.sealedKey = append([]byte{}, key...)
		c.encoder = nil
	}
}

// WithEncoder makes the client encode values with a Go Encoder instead of
// libdlm's table codec. It replaces any encoder set before it.
func WithEncoder(e Encoder) Option {
	return func(c *dialConfig) {
		c.encoder = e
		c.sealedKey = nil
	}
}

// A LockOption configures Lock, TryLock and Locker.
type LockOption func(*lockConfig)

type lockConfig struct {
	ttl       time.Duration
	wait      time.Duration
	autoRenew bool
}

// DefaultTTL is a lock's time to live when no TTL option is given (the
// same as libdlm's Rust API).
const DefaultTTL = 30 * time.Second

// TTL sets how long the server keeps the lock unless it is extended
// (default DefaultTTL). Rounded up to whole milliseconds; must be
// positive, and at most the server's limit (3543 s for anonymous clients
// by default).
func TTL(d time.Duration) LockOption {
	return func(c *lockConfig) { c.ttl = d }
}

// Wait makes Lock queue in the server's first-come, first-served queue for
// up to d if another owner holds the lock, instead of failing at once with
// ErrNotOwner. If the wait runs out, Lock fails with ErrTimeout; if ctx is
// done first, at once with ErrCancelled. Wait(0) means one attempt (the
// default). TryLock ignores it.
func Wait(d time.Duration) LockOption {
	return func(c *lockConfig) { c.wait = d }
}

// AutoRenew makes libdlm extend the lock in the background every third of
// its TTL until it is unlocked. If renewal fails for good (the lock
// expired, or the server was unreachable past the deadline), the lock's
// Lost channel is closed.
func AutoRenew() LockOption {
	return func(c *lockConfig) { c.autoRenew = true }
}

// millis converts d to whole milliseconds, rounding up; what is not
// positive becomes 0, which libdlm rejects where a positive time is needed.
func millis(d time.Duration) uint64 {
	if d <= 0 {
		return 0
	}
	return uint64((d + time.Millisecond - 1) / time.Millisecond)
}
