//go:build dlm_dynamic && !dlm_intree

package dlm

// -tags dlm_dynamic: libdlm as installed by scripts/install-libdlm.sh,
// found through pkg-config, linked against libdlm.so. dlm.pc's Libs give an
// rpath to the install prefix's lib directory, so the program finds the
// library there at run time (deployed elsewhere, it needs libdlm.so.0.MINOR
// on the loader's path).

// #cgo pkg-config: dlm
import "C"
