package dlm

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
)

// tlsConfig is the TLS configuration the options ask for (nil: plaintext),
// with its files read now so a bad file fails Dial, not a later call.
func (cfg *dialConfig) tlsConfig() (*tls.Config, error) {
	if !cfg.tls {
		return nil, nil
	}
	// Without a name of its own, each connection checks the host of the
	// address it dials (transport.open).
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: cfg.tlsServerName}
	if cfg.tlsCA != "" {
		pem, err := os.ReadFile(cfg.tlsCA)
		if err != nil {
			return nil, fmt.Errorf("TLS CA %s: %v", cfg.tlsCA, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("TLS CA %s: no certificate in the file", cfg.tlsCA)
		}
		c.RootCAs = pool
	}
	if cfg.tlsCert != "" || cfg.tlsKey != "" {
		pair, err := tls.LoadX509KeyPair(cfg.tlsCert, cfg.tlsKey)
		if err != nil {
			return nil, fmt.Errorf("TLS client certificate %s with key %s: %v", cfg.tlsCert, cfg.tlsKey, err)
		}
		c.Certificates = []tls.Certificate{pair}
	}
	return c, nil
}

// tlsAlert: err is (or ends in) a TLS alert the server sent, a refusal
// that connecting again will not change.
func tlsAlert(err error) bool {
	return strings.Contains(err.Error(), "remote error: tls:")
}

// tlsMessage says why a TLS connection failed, in the words every dlm
// binding uses, if err is a TLS failure.
func tlsMessage(err error) (string, bool) {
	var unknown x509.UnknownAuthorityError
	var name x509.HostnameError
	var invalid x509.CertificateInvalidError
	var header tls.RecordHeaderError
	switch {
	case errors.As(err, &unknown):
		return "TLS: the server's certificate is not signed by a trusted CA (unknown CA): " + err.Error(), true
	case errors.As(err, &name):
		return "TLS: the server's certificate is for another name (name mismatch): " + err.Error(), true
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		return "TLS: the server's certificate has expired (or is not valid yet): " + err.Error(), true
	case errors.As(err, &invalid):
		return "TLS: the server's certificate was refused: " + err.Error(), true
	case errors.As(err, &header):
		return "TLS: the server did not answer in TLS (a plaintext port?): " + err.Error(), true
	}
	// Alerts the server sent (their type is crypto/tls's own).
	text := err.Error()
	switch {
	case strings.Contains(text, "remote error: tls: handshake failure"):
		return "TLS: the server refused the handshake (is that port plaintext?): " + text, true
	case strings.Contains(text, "remote error: tls:") &&
		(strings.Contains(text, "certificate") || strings.Contains(text, "access denied")):
		return "TLS: the server refused our client certificate: " + text, true
	case strings.Contains(text, "remote error: tls:"):
		return "TLS: " + text, true
	}
	return "", false
}
