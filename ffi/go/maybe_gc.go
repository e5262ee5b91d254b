//go:build !debug

package dlm

// maybeGC does nothing in normal builds; see maybe_gc_debug.go.
func maybeGC() {}
