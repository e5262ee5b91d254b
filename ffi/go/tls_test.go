package dlm_test

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"dlm.example/dlm"
)

// devPKI writes a development CA, server certificate and the client
// certificates named with `dlm-server tls new` into a fresh directory.
func devPKI(t *testing.T, clients ...string) string {
	t.Helper()
	bin, err := serverBinary()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "pki")
	args := []string{"tls", "new", dir}
	for _, c := range clients {
		args = append(args, "--client", c)
	}
	if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
		t.Fatalf("dlm-server tls new: %v: %s", err, out)
	}
	return dir
}

// tlsServer starts a dlm-server serving TLS with dir's certificate,
// asking for client certificates from dir's CA.
func tlsServer(t *testing.T, dir string) *server {
	return startServer(t,
		"--tls-cert", filepath.Join(dir, "server.pem"),
		"--tls-key", filepath.Join(dir, "server.key"),
		"--tls-client-ca", filepath.Join(dir, "ca.pem"))
}

func dialErr(t *testing.T, at string, opts ...dlm.Option) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := dlm.Dial(ctx, at, opts...)
	if err == nil {
		defer c.Close()
		_, err = c.ServerVersion(ctx)
	}
	return err
}

func TestTLS(t *testing.T) {
	dir := devPKI(t, "go-app")
	other := devPKI(t, "go-app")
	srv := tlsServer(t, dir)
	ca := filepath.Join(dir, "ca.pem")
	cert := dlm.WithTLSClientCert(filepath.Join(dir, "go-app.pem"), filepath.Join(dir, "go-app.key"))

	t.Run("served", func(t *testing.T) {
		c := dialAt(t, srv.addr, dlm.WithTLS(ca, ""), cert)
		ctx := context.Background()
		if _, err := c.Put(ctx, "tls", []byte("over tls"), time.Minute); err != nil {
			t.Fatal(err)
		}
		v, err := c.Get(ctx, "tls")
		if err != nil || string(v.Data) != "over tls" {
			t.Fatalf("Get = %v, %v", v, err)
		}
	})
	cases := []struct {
		name string
		opts []dlm.Option
		why  string
	}{
		{"unknown CA", []dlm.Option{dlm.WithTLS(filepath.Join(other, "ca.pem"), ""), cert}, "unknown CA"},
		{"wrong name", []dlm.Option{dlm.WithTLS(ca, "db.example"), cert}, "name mismatch"},
		{"no client certificate", []dlm.Option{dlm.WithTLS(ca, "")}, "refused our client certificate"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := dialErr(t, srv.addr, tc.opts...)
			if !errors.Is(err, dlm.ErrUnavailable) || !strings.Contains(err.Error(), tc.why) {
				t.Fatalf("got %v, want ErrUnavailable saying %q", err, tc.why)
			}
			// A refusal is final: said at once, not as the last failure
			// of a failover that tried again until its budget ran out.
			if strings.Contains(err.Error(), "(last:") {
				t.Fatalf("got %v, want the refusal itself, not a failover giving up", err)
			}
		})
	}
}
