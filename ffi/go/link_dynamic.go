//go:build dlm_dynamic

package dlm

// Dynamic linking, with `-tags dlm_dynamic`: libdlm.so from the workspace's
// target/debug, found at run time through an rpath to that directory.
// -L comes first, so it wins over a system library of the same name (such
// as Debian's unrelated libdlm3).

// #cgo LDFLAGS: -L${SRCDIR}/../../target/debug -Wl,-rpath,${SRCDIR}/../../target/debug -ldlm
import "C"
