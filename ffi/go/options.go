package dlm

import "time"

// An Option configures Dial.
type Option func(*dialConfig)

type dialConfig struct {
	clientID       string
	connectTimeout time.Duration
	ioTimeout      time.Duration
	sharedConns    int
	maxIdle        int
	legacy         bool
	credName       string
	credSecret     string
	hasCreds       bool
	sealedKey      []byte
	encoder        Encoder
	tls            bool
	tlsCA          string
	tlsServerName  string
	tlsCert        string
	tlsKey         string
}

// The defaults of the Dial options.
const (
	// DefaultConnectTimeout bounds each TCP connection attempt.
	DefaultConnectTimeout = 5 * time.Second
	// DefaultIOTimeout bounds how long an answer may take.
	DefaultIOTimeout = 10 * time.Second
	// DefaultSharedConns is how many pipelined connections a Client's
	// calls share.
	DefaultSharedConns = 2
	// DefaultMaxIdle is how many idle connections for waiting locks a
	// Client keeps.
	DefaultMaxIdle = 16
)

// WithClientID sets the owner ID the client sends (instead of a random
// 48-character one from the operating system's random source). Everything
// the client locks or stores belongs to this ID: another Client with the
// same ID is the same owner.
func WithClientID(id string) Option {
	return func(c *dialConfig) { c.clientID = id }
}

// WithConnectTimeout bounds each TCP connection attempt (default
// DefaultConnectTimeout); must be positive.
func WithConnectTimeout(d time.Duration) Option {
	return func(c *dialConfig) { c.connectTimeout = d }
}

// WithIOTimeout bounds how long a call waits for the server's answer,
// beyond a lock's own Wait (default DefaultIOTimeout); must be positive.
// A connection that gives no answer for that long while requests are
// outstanding is closed, and its calls fail with ErrUnavailable.
func WithIOTimeout(d time.Duration) Option {
	return func(c *dialConfig) { c.ioTimeout = d }
}

// WithSharedConns sets how many connections the calls the server answers
// at once share (default DefaultSharedConns). Calls from many goroutines
// are pipelined on them: one write carries every request that piled up
// while the previous one went out, and one read brings back many answers.
// A second connection opens only while the first has calls outstanding.
// Locks that wait in the server's queue do not count: each has a
// connection of its own.
func WithSharedConns(n int) Option {
	return func(c *dialConfig) { c.sharedConns = n }
}

// WithMaxIdle sets how many connections a Client keeps open for waiting
// locks once their waits are over (default DefaultMaxIdle), so that the
// next waits need not connect again. More concurrent waits open more
// connections; those beyond the limit are closed when their wait ends.
func WithMaxIdle(n int) Option {
	return func(c *dialConfig) { c.maxIdle = n }
}

// WithLegacyFraming sends JackrabbitDLM's table-encoded request lines
// instead of plain JSON, for talking to a JackrabbitDLM server: each
// request then gets a connection of its own, closed after the answer, as
// that server closes it. dlm-server understands both.
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

// WithTLS connects with TLS (Go's crypto/tls: the package does its own
// I/O), trusting the CA
// certificates of the PEM file caFile ("": the system's trusted roots) and
// checking that the server's certificate is valid for serverName ("": the
// host of the address given to Dial). A refused handshake fails Dial with
// ErrUnavailable and says why: an unknown CA, a name mismatch, an expired
// certificate.
func WithTLS(caFile, serverName string) Option {
	return func(c *dialConfig) {
		c.tls, c.tlsCA, c.tlsServerName = true, caFile, serverName
	}
}

// WithTLSClientCert presents this client certificate and key (PEM files)
// to a server that asks for one, and turns TLS on if WithTLS was not
// given. A server with client certificates may take the certificate's CN
// for an identity: then WithCredentials(thatName, anySecret).
func WithTLSClientCert(certFile, keyFile string) Option {
	return func(c *dialConfig) {
		c.tls, c.tlsCert, c.tlsKey = true, certFile, keyFile
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

// A LockOption configures Lock, TryLock, Locker, Semaphore, ReadLock,
// WriteLock and RWMutex.
type LockOption func(*lockConfig)

type lockConfig struct {
	ttl       time.Duration
	wait      time.Duration
	autoRenew bool
	// Set by the call, not by an option: which acquisition (a C.DLM_CALL_*;
	// 0 is a lock) and a semaphore's size.
	kind    uint32
	permits uint32
	// session: bound to this session (Session.Lock), with lockDelay.
	session   *Session
	lockDelay time.Duration
}

// DefaultTTL is a lock's time to live when no TTL option is given (the
// same as the other dlm clients).
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

// AutoRenew makes the client extend the lock in the background every
// third of its TTL until it is unlocked (a goroutine per lock, asleep in
// between). If renewal fails for good (the lock expired, or the server
// was unreachable past the deadline), the lock's Lost channel is closed.
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

// A PutOption configures Put and PutIf.
type PutOption func(*putConfig)

type putConfig struct {
	readers []string
	any     bool
}

// Readers shares the value with the server identities named (up to 32;
// each 1 to 255 ASCII letters, digits, '-', '_' or '.', not starting with
// '.'): clients authenticated as one of them (WithCredentials, or a TLS
// client certificate standing for it) may Get it, whatever their client
// ID; everybody else gets ErrNotOwner. Writing stays the owner's.
// PROTOCOL.md section 8, "Shared values". Several Readers options add up.
// A JackrabbitDLM server ignores it: the value stays its owner's.
func Readers(identities ...string) PutOption {
	return func(c *putConfig) { c.readers = append(c.readers, identities...) }
}

// ReadersAny shares the value with every client, anonymous or not.
func ReadersAny() PutOption {
	return func(c *putConfig) { c.any = true }
}
