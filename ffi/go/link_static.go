//go:build !dlm_dynamic

package dlm

// Static linking (the default). libdlm.a is the one `cargo build -p libdlm`
// leaves in the workspace's target/debug; the per-platform lines list the
// native libraries Rust's standard library needs, as reported by
//
//	cargo rustc -p libdlm --lib --crate-type staticlib -- --print native-static-libs
//
// TestNativeStaticLibs fails if the line for the running platform differs
// from that report. Only Linux is listed so far: on another platform, add
// its line from that command's output.

// #cgo LDFLAGS: ${SRCDIR}/../../target/debug/libdlm.a
// #cgo linux LDFLAGS: -lc -lm -lrt -lpthread -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc
import "C"
