package dlm

// The package's C side is shim.c; it includes dlm.h, libdlm's header. Where
// the header and the library come from is the build's choice, in
// link_installed.go (the default: an installed libdlm, through pkg-config,
// linked statically), link_dynamic.go (-tags dlm_dynamic: the same, linked
// against libdlm.so) and link_intree.go (-tags dlm_intree: the
// repository's own cargo build, for developing libdlm and this package
// together).

// #cgo CFLAGS: -std=c11 -Wall
import "C"
