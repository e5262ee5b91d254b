//go:build dlm_intree

package dlm

// -tags dlm_intree, a developer's option: the repository's own release
// build of libdlm, target/release/libdlm.a (run `cargo build --release -p
// libdlm` first), and the header beside this package, with no install and
// no pkg-config. It links statically; it assumes the default target
// directory (not CARGO_TARGET_DIR); it is meant for working on libdlm and
// this package together, not for programs to ship.
//
// The native libraries are the ones rustc says a program linking libdlm.a
// needs,
//
//	cargo rustc -p libdlm --lib --crate-type staticlib -- --print native-static-libs
//
// recorded in ffi/libdlm/native-static-libs.txt (TestNativeStaticLibs holds
// this line to that file). Only Linux is listed.

// #cgo CFLAGS: -I${SRCDIR}/../libdlm/include
// #cgo LDFLAGS: ${SRCDIR}/../../target/release/libdlm.a
// #cgo linux LDFLAGS: -lc -lm -lrt -lpthread -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc
import "C"
