package dlm_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"dlm.example/dlm"
)

// The shared test server, started by TestMain.
var (
	// addr is the test server's address. The examples use it too.
	addr string
	// identity is a server identity (name and secret) with a 1 MiB MaxSize.
	identityName   = "go-test"
	identitySecret string
	// readerName is a second identity, which shared values name.
	readerName   = "go-reader"
	readerSecret string
	// repoRoot is the repository's root directory.
	repoRoot string
)

func TestMain(m *testing.M) {
	code, err := run(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "dlm tests:", err)
		os.Exit(2)
	}
	os.Exit(code)
}

func run(m *testing.M) (int, error) {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		return 0, err
	}
	repoRoot = root
	bin, err := serverBinary()
	if err != nil {
		return 0, err
	}
	dir, err := os.MkdirTemp("", "dlm-go-test-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	if identitySecret, err = newIdentity(bin, dir, identityName); err != nil {
		return 0, err
	}
	if readerSecret, err = newIdentity(bin, dir, readerName); err != nil {
		return 0, err
	}
	srv, err := startServerProcess(bin, "--identity-dir", dir)
	if err != nil {
		return 0, err
	}
	defer srv.stop()
	addr = srv.addr
	return m.Run(), nil
}

// serverBinary is target/debug/dlm-server, built with cargo if missing.
func serverBinary() (string, error) {
	return cargoBinary("dlm-server", "dlm-server")
}

// cargoBinary is target/debug/NAME, built from cargo package pkg if
// missing.
func cargoBinary(pkg, name string) (string, error) {
	bin := filepath.Join(repoRoot, "target", "debug", name)
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	cmd := exec.Command("cargo", "build", "-p", pkg, "--bin", name)
	cmd.Dir = repoRoot
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("building %s: %w", name, err)
	}
	return bin, nil
}

// newIdentity creates identity `name` in dir with `dlm-server identity
// new`, raises its MaxSize to 1 MiB, and returns its secret.
func newIdentity(bin, dir, name string) (string, error) {
	out, err := exec.Command(bin, "identity", "new", name, "--identity-dir", dir).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("dlm-server identity new: %v: %s", err, out)
	}
	path := filepath.Join(dir, name+".cfg")
	raw, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	var cfg map[string]any
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return "", err
	}
	secret, _ := cfg["Identity"].(string)
	if secret == "" {
		return "", fmt.Errorf("%s has no Identity", path)
	}
	cfg["MaxSize"] = 1 << 20
	raw, err = json.Marshal(cfg)
	if err != nil {
		return "", err
	}
	return secret, os.WriteFile(path, raw, 0o600)
}

// server is a running dlm-server process.
type server struct {
	cmd     *exec.Cmd
	addr    string
	stopped atomic.Bool
}

// startServerProcess starts dlm-server on a free port of 127.0.0.1 and
// waits for its "listening on" line.
func startServerProcess(bin string, args ...string) (*server, error) {
	return startProcess("dlm-server", exec.Command(bin, append([]string{"127.0.0.1", "0"}, args...)...))
}

// startProcess starts a server and waits for its "NAME listening on ADDR"
// line.
func startProcess(name string, cmd *exec.Cmd) (*server, error) {
	if os.Getenv("DLM_GO_TEST_SERVER_LOG") != "" {
		cmd.Stderr = os.Stderr
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	lines := bufio.NewReader(stdout)
	first := make(chan string, 1)
	go func() {
		line, _ := lines.ReadString('\n')
		first <- line
		_, _ = io.Copy(io.Discard, lines)
	}()
	select {
	case line := <-first:
		prefix := name + " listening on "
		if !strings.HasPrefix(line, prefix) {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			return nil, fmt.Errorf("%s said %q", name, line)
		}
		return &server{cmd: cmd, addr: strings.TrimSpace(strings.TrimPrefix(line, prefix))}, nil
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("%s did not start", name)
	}
}

// stop stops the server (SIGTERM, then SIGKILL) and waits for it.
func (s *server) stop() {
	if s.stopped.Swap(true) {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-done
	}
}

// startServer starts a dedicated server for one test, stopped at its end.
func startServer(t *testing.T, args ...string) *server {
	t.Helper()
	bin, err := serverBinary()
	if err != nil {
		t.Fatal(err)
	}
	s, err := startServerProcess(bin, args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.stop)
	return s
}

// dial connects to the shared server and closes the client at the end of
// the test.
func dial(t *testing.T, opts ...dlm.Option) *dlm.Client {
	t.Helper()
	return dialAt(t, addr, opts...)
}

// dialAt is dial for another server.
func dialAt(t *testing.T, at string, opts ...dlm.Option) *dlm.Client {
	t.Helper()
	c, err := dlm.Dial(context.Background(), at, opts...)
	if err != nil {
		t.Fatalf("Dial(%s): %v", at, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// unique returns a name no other test uses.
func unique(t *testing.T, what string) string {
	return fmt.Sprintf("%s/%s/%d", t.Name(), what, time.Now().UnixNano())
}

// mustIs fails the test unless errors.Is(err, target) for every target.
func mustIs(t *testing.T, err error, targets ...error) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %v", targets)
	}
	for _, target := range targets {
		if !errors.Is(err, target) {
			t.Fatalf("got %v (%T), want errors.Is(err, %v)", err, err, target)
		}
	}
}
