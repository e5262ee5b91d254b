//go:build debug

package dlm

import "runtime"

// maybeGC forces a garbage collection right before every C call (it is
// called where the C pointer is fetched). If a method forgot
// runtime.KeepAlive on its receiver, the receiver's finalizer can then run
// during the call and free the pointer under it: `go test -tags debug`
// turns such a latent bug into a crash.
func maybeGC() { runtime.GC() }
