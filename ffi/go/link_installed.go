//go:build !dlm_dynamic && !dlm_intree

package dlm

// The default: libdlm as installed by scripts/install-libdlm.sh (a release
// build), found through pkg-config (set PKG_CONFIG_PATH to the prefix's
// lib/pkgconfig unless pkg-config already searches it), and linked
// statically, so the program needs no libdlm.so at run time and can be
// deployed anywhere.
//
// dlm.pc's Libs name the library (-ldlm); -Bstatic makes the linker take
// libdlm.a for it, and dlm.pc's Libs.private (given by --static) switch
// back with -Bdynamic before the system libraries libdlm.a needs, which
// stay shared.

// #cgo pkg-config: --static dlm
// #cgo LDFLAGS: -Wl,-Bstatic
import "C"
