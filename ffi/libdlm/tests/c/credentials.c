/*
 * Identities through libdlm's C ABI: a client with credentials may use
 * longer TTLs and its identity's larger MaxSize, and owns what it creates;
 * the same owner ID without them (or with a wrong secret) is refused.
 *
 * Usage: credentials ADDR IDENTITY_NAME SECRET
 * (the server runs with --identity-dir holding IDENTITY_NAME, MaxSize 64 KiB)
 */
#define _POSIX_C_SOURCE 200809L

#include "check.h"

static const char *addr;

static dlm_client *with_credentials(const char *name, const char *secret) {
  dlm_options *o = NULL;
  dlm_client *c = NULL;
  CHECK_OK(dlm_options_new(&o));
  CHECK_OK(dlm_options_set_client_id(o, S("creds")));
  CHECK_OK(dlm_options_set_credentials(o, name, strlen(name),
                                       secret, strlen(secret)));
  CHECK_OK(dlm_client_new(addr, strlen(addr), o, &c));
  dlm_options_free(o);
  return c;
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s ADDR IDENTITY_NAME SECRET\n", argv[0]);
    return 2;
  }
  addr = argv[1];
  const char *name = argv[2];
  const char *secret = argv[3];
  dlm_client *id = with_credentials(name, secret);
  dlm_client *anon = connect_as(addr, "creds");
  static uint8_t big[20000];
  uint8_t buf[64];
  size_t n = 0;
  uint64_t rev = 0;
  dlm_lock *l = NULL;
  if (!CHECK(id != NULL && anon != NULL)) {
    return checks_done("credentials");
  }
  memset(big, 'b', sizeof big);

  /* Two hours is past the anonymous limit (3543 s), not an identity's. */
  CHECK_OK(dlm_client_put(id, S("cred"), S("secret-ish"), 7200000, &rev));
  CHECK(rev == 1);
  CHECK_STATUS(dlm_client_put(anon, S("anon"), S("v"), 7200000, NULL), DLM_ERR_BAD_REQUEST);
  if (CHECK_OK(dlm_client_lock(id, S("cred-lock"), 7200000, 0, 0, NULL, NULL, NULL, &l))) {
    CHECK_OK(dlm_lock_release(l));
    dlm_lock_free(l);
  }
  /* The identity's MaxSize (64 KiB) admits what the anonymous 16 KiB
   * does not. */
  CHECK_OK(dlm_client_put(id, S("cred-big"), big, sizeof big, 10000, NULL));
  CHECK_STATUS(dlm_client_put(anon, S("anon-big"), big, sizeof big, 10000, NULL),
               DLM_ERR_BAD_REQUEST);

  /* The identity owns its entries: the same ID without it cannot touch. */
  CHECK_OK(dlm_client_get(id, S("cred"), buf, sizeof buf, &n, NULL));
  CHECK(n == 10 && memcmp(buf, "secret-ish", 10) == 0);
  CHECK_STATUS(dlm_client_get(anon, S("cred"), buf, sizeof buf, &n, NULL), DLM_ERR_NOT_OWNER);
  CHECK_STATUS(dlm_client_erase(anon, S("cred")), DLM_ERR_NOT_OWNER);

  /* A wrong secret, or an unknown name, fails authentication alike. */
  size_t len = strlen(secret);
  char *wrong = malloc(len + 1);
  memcpy(wrong, secret, len + 1);
  wrong[len - 1] = wrong[len - 1] == 'A' ? 'B' : 'A';
  dlm_client *bad = with_credentials(name, wrong);
  CHECK_STATUS(dlm_client_get(bad, S("cred"), buf, sizeof buf, &n, NULL), DLM_ERR_BAD_REQUEST);
  CHECK_CONTAINS(client_error(bad), "authentication failed");
  dlm_client_free(bad);
  free(wrong);
  dlm_client *nobody = with_credentials("nobody", secret);
  CHECK_STATUS(dlm_client_put(nobody, S("x"), S("v"), 1000, NULL), DLM_ERR_BAD_REQUEST);
  CHECK_CONTAINS(client_error(nobody), "authentication failed");
  dlm_client_free(nobody);

  CHECK_OK(dlm_client_erase(id, S("cred")));
  dlm_client_free(id);
  dlm_client_free(anon);
  return checks_done("credentials");
}
