/*
 * TLS through libdlm's C ABI, against a TLS server that asks for client
 * certificates: a client with the right CA and a client certificate
 * works; a CA that did not sign the server's certificate, a name the
 * certificate is not for, and a missing client certificate each fail with
 * DLM_ERR_UNAVAILABLE and an error that says why.
 *
 * Usage: tls ADDR CA_FILE OTHER_CA_FILE CLIENT_CERT CLIENT_KEY
 */
#define _POSIX_C_SOURCE 200809L

#include "check.h"

static const char *addr;

/* A client over TLS trusting `ca`, checking `name` (NULL: the address's
 * host), presenting `cert`/`key` if not NULL. Its status; on failure the
 * options' error is copied into `why`. */
static dlm_status tls_client(const char *ca, const char *name, const char *cert,
                             const char *key, dlm_client **out, char *why, size_t why_len) {
  dlm_options *o = NULL;
  size_t n = 0;
  why[0] = '\0';
  if (dlm_options_new(&o) != DLM_OK) {
    return DLM_ERR_SYSTEM;
  }
  CHECK_OK(dlm_options_set_tls(o, ca, strlen(ca), name, name ? strlen(name) : 0));
  if (cert != NULL) {
    CHECK_OK(dlm_options_set_tls_client_cert(o, cert, strlen(cert), key, strlen(key)));
  }
  dlm_status s = dlm_client_new(addr, strlen(addr), o, out);
  if (s != DLM_OK) {
    dlm_options_last_error(o, why, why_len, &n);
  }
  dlm_options_free(o);
  return s;
}

int main(int argc, char **argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: %s ADDR CA_FILE OTHER_CA_FILE CLIENT_CERT CLIENT_KEY\n", argv[0]);
    return 2;
  }
  addr = argv[1];
  const char *ca = argv[2];
  const char *other_ca = argv[3];
  const char *cert = argv[4];
  const char *key = argv[5];
  char why[512];
  uint8_t buf[64];
  size_t n = 0;
  dlm_client *c = NULL;

  /* The right CA and a client certificate: served. */
  if (CHECK_OK(tls_client(ca, NULL, cert, key, &c, why, sizeof why))) {
    CHECK_OK(dlm_client_put(c, S("tls-key"), S("over tls"), 10000, NULL));
    if (CHECK_OK(dlm_client_get(c, S("tls-key"), buf, sizeof buf, &n, NULL))) {
      CHECK(n == 8 && memcmp(buf, "over tls", 8) == 0);
    }
    dlm_client_free(c);
    c = NULL;
  }

  /* Another CA: refused, saying so. */
  CHECK_STATUS(tls_client(other_ca, NULL, cert, key, &c, why, sizeof why),
               DLM_ERR_UNAVAILABLE);
  CHECK_CONTAINS(why, "unknown CA");

  /* A name the certificate is not for. */
  CHECK_STATUS(tls_client(ca, "db.example", cert, key, &c, why, sizeof why),
               DLM_ERR_UNAVAILABLE);
  CHECK_CONTAINS(why, "name mismatch");

  /* No client certificate: with TLS 1.3 the server's refusal comes after
   * the handshake, with its first answer; the client asks the server about
   * its cluster as it connects, so dlm_client_new already says why, at
   * once (not after retrying until its timeout). */
  CHECK_STATUS(tls_client(ca, NULL, NULL, NULL, &c, why, sizeof why), DLM_ERR_UNAVAILABLE);
  CHECK_CONTAINS(why, "refused our client certificate");
  return checks_done("tls");
}
