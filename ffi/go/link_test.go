package dlm_test

import (
	"context"
	"debug/elf"
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

// recordedNativeLibs is ffi/libdlm/native-static-libs.txt: what rustc says
// a static link of libdlm needs (the install script writes the same list
// into dlm.pc, and c_programs.rs holds that file to rustc's report).
func recordedNativeLibs(t *testing.T) []string {
	t.Helper()
	text, err := os.ReadFile(filepath.Join(repoRoot, "ffi", "libdlm", "native-static-libs.txt"))
	if err != nil {
		t.Fatal(err)
	}
	var recorded []string
	for _, line := range strings.Split(string(text), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			recorded = append(recorded, strings.Fields(line)...)
		}
	}
	return recorded
}

// The native libraries in link_intree.go (the developer's build, which
// cannot ask pkg-config) are the ones rustc reports, in the same order; a
// change on Rust's side fails here instead of as undefined symbols.
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
	listed := cgoLDFLAGS(t, "link_intree.go", runtime.GOOS)
	if !slices.Equal(listed, reported) {
		t.Fatalf("link_intree.go has\n\t// #cgo %s LDFLAGS: %s\nbut rustc reports\n\t%s\nfix the line in link_intree.go",
			runtime.GOOS, strings.Join(listed, " "), strings.Join(reported, " "))
	}
}

// link_intree.go carries its own copy of the recorded list (cgo cannot read
// a file): the two must agree.
func TestNativeStaticLibsMatchTheRecordedList(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("ffi/libdlm/native-static-libs.txt is for Linux")
	}
	if listed, recorded := cgoLDFLAGS(t, "link_intree.go", "linux"), recordedNativeLibs(t); !slices.Equal(listed, recorded) {
		t.Fatalf("link_intree.go lists %v, ffi/libdlm/native-static-libs.txt %v", listed, recorded)
	}
}

// The default and the in-tree builds link libdlm into the binary; the
// dlm_dynamic one needs libdlm.so, found through an rpath to the install
// prefix only: never one into the repository's cargo build.
func TestTheBinaryIsLinkedAsBuilt(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads the ELF dynamic section")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	f, err := elf.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	libs, err := f.ImportedLibraries()
	if err != nil {
		t.Fatal(err)
	}
	needsLibdlm := slices.ContainsFunc(libs, func(l string) bool { return strings.HasPrefix(l, "libdlm.so") })
	if needsLibdlm != (linkMode == "dynamic") {
		t.Fatalf("built %s, the binary needs %v", linkMode, libs)
	}
	var paths []string
	for _, tag := range []elf.DynTag{elf.DT_RPATH, elf.DT_RUNPATH} {
		values, err := f.DynString(tag)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range values {
			paths = append(paths, filepath.SplitList(v)...)
		}
	}
	for _, p := range paths {
		for _, profile := range []string{"debug", "release"} {
			if filepath.Clean(p) == filepath.Join(repoRoot, "target", profile) {
				t.Errorf("the binary has an rpath into the cargo build: %s", p)
			}
		}
	}
	if linkMode == "dynamic" {
		libdir, err := exec.Command("pkg-config", "--variable=libdir", "dlm").Output()
		if err != nil {
			t.Fatal("pkg-config --variable=libdir dlm:", err)
		}
		if want := strings.TrimSpace(string(libdir)); !slices.Contains(paths, want) {
			t.Errorf("rpath %v lacks the install prefix's %s", paths, want)
		}
	}
}

// cLinkArgs are the flags that link a C program against libdlm the way
// this package is linked (statically), and find dlm.h.
func cLinkArgs(t *testing.T) (cflags, libs []string) {
	t.Helper()
	if linkMode == "intree" {
		return []string{"-I", filepath.Join(repoRoot, "ffi", "libdlm", "include")},
			append([]string{filepath.Join(repoRoot, "target", "release", "libdlm.a")}, recordedNativeLibs(t)...)
	}
	pc := func(args ...string) []string {
		out, err := exec.Command("pkg-config", append(args, "dlm")...).Output()
		if err != nil {
			t.Fatalf("pkg-config %v dlm: %v (set PKG_CONFIG_PATH to an installed libdlm's lib/pkgconfig)", args, err)
		}
		return strings.Fields(string(out))
	}
	return pc("--cflags"), append([]string{"-Wl,-Bstatic"}, pc("--static", "--libs")...)
}
