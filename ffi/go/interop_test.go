package dlm_test

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"dlm.example/dlm"
)

// buildInterop compiles testdata/interop.c against the libdlm this package
// links (statically, whatever the package's own link mode): C's blocking
// client, libdlm's own sockets.
func buildInterop(t *testing.T) string {
	t.Helper()
	cc := "cc"
	if _, err := exec.LookPath(cc); err != nil {
		t.Skip("no C compiler")
	}
	bin := filepath.Join(t.TempDir(), "interop")
	cflags, libs := cLinkArgs(t)
	args := []string{"-std=c11", "-Wall", "-Wextra", "-Werror"}
	args = append(args, cflags...)
	args = append(args, filepath.Join("testdata", "interop.c"))
	args = append(args, libs...)
	args = append(args, "-pthread", "-o", bin)
	if out, err := exec.Command(cc, args...).CombinedOutput(); err != nil {
		t.Fatalf("cc %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return bin
}

// Values put by Go are read by C and the reverse, and a lock held from Go
// excludes C.
func TestCrossLanguage(t *testing.T) {
	interop := buildInterop(t)
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(interop, args...).Output()
		if err != nil {
			msg := ""
			if ee, ok := err.(*exec.ExitError); ok {
				msg = string(ee.Stderr)
			}
			t.Fatalf("interop %v: %v %s", args, err, msg)
		}
		return string(out)
	}
	ctx := context.Background()
	id := unique(t, "id")
	c := dial(t, dlm.WithClientID(id))

	fromGo := unique(t, "from-go")
	goValue := "written by Go: ünïcode, \"quotes\", tabs\t"
	if _, err := c.Put(ctx, fromGo, []byte(goValue), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if got := run(addr, id, "get", fromGo); got != goValue {
		t.Fatalf("C read %q, Go wrote %q", got, goValue)
	}

	fromC := unique(t, "from-c")
	cValue := "written by C: {json-looking} \\ backslash"
	if got := run(addr, id, "put", fromC, cValue); strings.TrimSpace(got) != "1" {
		t.Fatalf("C put reported revision %q", got)
	}
	v, err := c.Get(ctx, fromC)
	if err != nil || string(v.Data) != cValue || v.Revision != 1 {
		t.Fatalf("Go read %q (revision %d, %v), C wrote %q", v.Data, v.Revision, err, cValue)
	}

	name := unique(t, "lock")
	l, err := c.Lock(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if got := run(addr, "c-"+id, "trylock", name); got != "not-owner\n" {
		t.Fatalf("C locked a lock Go holds: %q", got)
	}
	if err := l.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	got := run(addr, "c-"+id, "trylock", name)
	var token uint64
	if _, err := fmt.Sscanf(got, "locked %d", &token); err != nil || token <= l.Token() {
		t.Fatalf("C after Go's unlock: %q (Go's token %d)", got, l.Token())
	}
}
