/*
 * Shared values through libdlm's C ABI (dlm_client_put_shared,
 * dlm_client_get_with_owner): a value shared with an identity is read by
 * a client authenticated as it (whatever its ID), with its owner's ID;
 * everybody else gets NOT_OWNER; writing stays the owner's; "any" admits
 * anonymous clients; a put without readers makes the value private again;
 * and the argument checks.
 *
 * Usage: shared ADDR IDENTITY_NAME SECRET
 * (the server runs with --identity-dir holding IDENTITY_NAME)
 */
#define _POSIX_C_SOURCE 200809L

#include "check.h"

static const char *addr;

static dlm_client *reader(const char *name, const char *secret) {
  dlm_options *o = NULL;
  dlm_client *c = NULL;
  if (!CHECK_OK(dlm_options_new(&o))) {
    return NULL;
  }
  CHECK_OK(dlm_options_set_client_id(o, S("shared-reader")));
  CHECK_OK(dlm_options_set_credentials(o, name, strlen(name), secret, strlen(secret)));
  CHECK_OK(dlm_client_new(addr, strlen(addr), o, &c));
  dlm_options_free(o);
  return c;
}

/* Reads `name` through `c`: the status; the value and owner on success. */
static dlm_status read_as(const dlm_client *c, const char *name, char *value, size_t cap,
                          char *owner, size_t owner_cap) {
  size_t n = 0, owner_n = 0;
  uint64_t rev = 0;
  dlm_status s = dlm_client_get_with_owner(c, name, strlen(name), value, cap - 1, &n, &rev,
                                           owner, owner_cap, &owner_n);
  if (s == DLM_OK) {
    value[n] = '\0';
    CHECK(rev > 0);
    CHECK(strlen(owner) == owner_n);
  }
  return s;
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s ADDR IDENTITY_NAME SECRET\n", argv[0]);
    return 2;
  }
  addr = argv[1];
  const char *name = argv[2];
  const char *secret = argv[3];
  dlm_client *owner = connect_as(addr, "shared-owner");
  dlm_client *listed = reader(name, secret);
  dlm_client *stranger = connect_as(addr, "shared-stranger");
  char value[64], who[64];
  uint64_t rev = 0;
  if (!CHECK(owner != NULL && listed != NULL && stranger != NULL)) {
    goto out;
  }
  const char *readers[] = {"nobody-here", name};
  size_t reader_lens[] = {strlen("nobody-here"), strlen(name)};

  /* Shared with the identity: it reads, with the owner's ID. */
  CHECK_OK(dlm_client_put_shared(owner, S("cfg"), S("v1"), 10000, readers, reader_lens, 2, 0,
                                 &rev));
  CHECK(rev == 1);
  if (CHECK_OK(read_as(listed, "cfg", value, sizeof value, who, sizeof who))) {
    CHECK(strcmp(value, "v1") == 0);
    CHECK(strcmp(who, "shared-owner") == 0);
  }
  /* The owner reads its own, and is named as its owner. */
  if (CHECK_OK(read_as(owner, "cfg", value, sizeof value, who, sizeof who))) {
    CHECK(strcmp(who, "shared-owner") == 0);
  }
  /* Too small an owner buffer: both lengths, nothing else. */
  size_t n = 0, owner_n = 0;
  CHECK_STATUS(dlm_client_get_with_owner(listed, S("cfg"), value, sizeof value, &n, NULL, who, 4,
                                         &owner_n),
               DLM_ERR_BUFFER_TOO_SMALL);
  CHECK(n == 2 && owner_n == strlen("shared-owner"));

  /* Not listed: refused as before shared values. */
  CHECK_STATUS(read_as(stranger, "cfg", value, sizeof value, who, sizeof who), DLM_ERR_NOT_OWNER);
  /* A reader cannot write or erase it. */
  CHECK_STATUS(dlm_client_put(listed, S("cfg"), S("mine"), 10000, NULL), DLM_ERR_NOT_OWNER);
  CHECK_STATUS(dlm_client_put_shared(listed, S("cfg"), S("mine"), 10000, NULL, NULL, 0,
                                     DLM_PUT_READERS_ANY, NULL),
               DLM_ERR_NOT_OWNER);
  CHECK_STATUS(dlm_client_erase(listed, S("cfg")), DLM_ERR_NOT_OWNER);
  if (CHECK_OK(read_as(owner, "cfg", value, sizeof value, who, sizeof who))) {
    CHECK(strcmp(value, "v1") == 0);
  }

  /* Any: anonymous clients read too. */
  CHECK_OK(dlm_client_put_shared(owner, S("cfg"), S("v2"), 10000, NULL, NULL, 0,
                                 DLM_PUT_READERS_ANY, &rev));
  CHECK(rev == 2);
  if (CHECK_OK(read_as(stranger, "cfg", value, sizeof value, who, sizeof who))) {
    CHECK(strcmp(value, "v2") == 0);
    CHECK(strcmp(who, "shared-owner") == 0);
  }
  /* Each put says its readers: a plain put makes it private again. */
  CHECK_OK(dlm_client_put(owner, S("cfg"), S("v3"), 10000, NULL));
  CHECK_STATUS(read_as(stranger, "cfg", value, sizeof value, who, sizeof who), DLM_ERR_NOT_OWNER);
  CHECK_STATUS(read_as(listed, "cfg", value, sizeof value, who, sizeof who), DLM_ERR_NOT_OWNER);

  /* Argument checks: names that are no identity names, both forms at
   * once, too many, unknown flags. Nothing is stored. */
  const char *bad[] = {"a,b"};
  size_t bad_lens[] = {3};
  CHECK_STATUS(dlm_client_put_shared(owner, S("cfg"), S("x"), 10000, bad, bad_lens, 1, 0, NULL),
               DLM_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(dlm_client_put_shared(owner, S("cfg"), S("x"), 10000, readers, reader_lens, 2,
                                     DLM_PUT_READERS_ANY, NULL),
               DLM_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(dlm_client_put_shared(owner, S("cfg"), S("x"), 10000, readers, reader_lens, 2, 1,
                                     NULL),
               DLM_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(dlm_client_put_shared(owner, S("cfg"), S("x"), 10000, NULL, NULL, 2, 0, NULL),
               DLM_ERR_NULL_PARAMETER);
  const char *many[DLM_MAX_READERS + 1];
  size_t many_lens[DLM_MAX_READERS + 1];
  for (size_t i = 0; i <= DLM_MAX_READERS; i++) {
    many[i] = name;
    many_lens[i] = strlen(name);
  }
  CHECK_STATUS(dlm_client_put_shared(owner, S("cfg"), S("x"), 10000, many, many_lens,
                                     DLM_MAX_READERS + 1, 0, NULL),
               DLM_ERR_INVALID_ARGUMENT);
  if (CHECK_OK(read_as(owner, "cfg", value, sizeof value, who, sizeof who))) {
    CHECK(strcmp(value, "v3") == 0);
  }
out:
  dlm_client_free(stranger);
  dlm_client_free(listed);
  dlm_client_free(owner);
  return checks_done("shared");
}
