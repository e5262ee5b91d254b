package dlm_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// cgoLDFLAGS returns the flags of the `#cgo [goos] LDFLAGS:` lines of a Go
// file, for goos ("" for the lines without a platform).
func cgoLDFLAGS(t *testing.T, file, goos string) []string {
	t.Helper()
	src, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var flags []string
	re := regexp.MustCompile(`(?m)^// #cgo ((?:[a-z0-9_!,]+ )*)LDFLAGS: (.*)$`)
	for _, m := range re.FindAllStringSubmatch(string(src), -1) {
		if strings.TrimSpace(m[1]) == goos {
			flags = append(flags, strings.Fields(m[2])...)
		}
	}
	return flags
}

// The native libraries in link_static.go are the ones rustc says a program
// linking libdlm.a needs, in the same order; a change on Rust's side fails
// here instead of as undefined symbols in someone's build.
func TestNativeStaticLibs(t *testing.T) {
	if testing.Short() {
		t.Skip("runs cargo (and may wait for its lock); skipped with -short")
	}
	if _, err := exec.LookPath("cargo"); err != nil {
		t.Skip("cargo is not installed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "cargo", "rustc", "-p", "libdlm", "--lib",
		"--crate-type", "staticlib", "--", "--print", "native-static-libs")
	cmd.Dir = repoRoot
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %v\n%s", cmd, err, out)
	}
	m := regexp.MustCompile(`native-static-libs: (.*)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("%v printed no native-static-libs line:\n%s", cmd, out)
	}
	reported := strings.Fields(string(m[1]))
	listed := cgoLDFLAGS(t, "link_static.go", runtime.GOOS)
	if !slices.Equal(listed, reported) {
		t.Fatalf("link_static.go has\n\t// #cgo %s LDFLAGS: %s\nbut rustc reports\n\t%s\nfix the line in link_static.go",
			runtime.GOOS, strings.Join(listed, " "), strings.Join(reported, " "))
	}
}

// Both link modes point at the library cargo builds.
func TestLinkFlagsPointAtTheCargoBuild(t *testing.T) {
	static := cgoLDFLAGS(t, "link_static.go", "")
	want := []string{"${SRCDIR}/../../target/debug/libdlm.a"}
	if !slices.Equal(static, want) {
		t.Fatalf("link_static.go links %v, want %v", static, want)
	}
	lib := filepath.Join(repoRoot, "target", "debug", "libdlm.a")
	if _, err := os.Stat(lib); err != nil {
		t.Fatalf("%s: %v (run `cargo build -p libdlm`)", lib, err)
	}
	dynamic := strings.Join(cgoLDFLAGS(t, "link_dynamic.go", ""), " ")
	for _, part := range []string{"-L${SRCDIR}/../../target/debug", "-Wl,-rpath,${SRCDIR}/../../target/debug", "-ldlm"} {
		if !strings.Contains(dynamic, part) {
			t.Errorf("link_dynamic.go's flags %q lack %q", dynamic, part)
		}
	}
}

// ffi/libdlm/native-static-libs.txt records the same list for the C side (cgo
// cannot read a file, so link_static.go carries its own copy): the two
// must agree.
func TestNativeStaticLibsMatchTheRecordedList(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("ffi/libdlm/native-static-libs.txt is for Linux")
	}
	text, err := os.ReadFile(filepath.Join(repoRoot, "ffi", "libdlm", "native-static-libs.txt"))
	if err != nil {
		t.Skip("no ffi/libdlm/native-static-libs.txt:", err)
	}
	var recorded []string
	for _, line := range strings.Split(string(text), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			recorded = append(recorded, strings.Fields(line)...)
		}
	}
	if listed := cgoLDFLAGS(t, "link_static.go", "linux"); !slices.Equal(listed, recorded) {
		t.Fatalf("link_static.go lists %v, ffi/libdlm/native-static-libs.txt %v", listed, recorded)
	}
}
