/*
 * libdlm's C ABI without locks or values: status strings, versions, NULL
 * and invalid arguments to every function, the `_free(NULL)`s, option
 * validation, text out-parameters and their BUFFER_TOO_SMALL protocol, the
 * last error (set or cleared by every call, per thread, never repeating
 * the status), and a peer that is not a dlm server (PROTOCOL).
 *
 * Usage: basics ADDR CARGO_VERSION GARBAGE_ADDR
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>

#include "check.h"

/* A pointer that no libdlm call may write: out-parameters stay untouched
 * on failure. */
#define SENTINEL ((void *)(uintptr_t)0x5eed)

static void statuses(void) {
  /* Every status has its own non-empty text; an unknown one reads as an
   * invalid argument. */
  for (uint32_t s = DLM_OK; s <= DLM_ERR_SYSTEM; s++) {
    const char *text = dlm_status_string(s);
    CHECK(text != NULL && text[0] != '\0');
    for (uint32_t t = DLM_OK; t < s; t++) {
      CHECK(strcmp(text, dlm_status_string(t)) != 0);
    }
  }
  CHECK(strcmp(dlm_status_string(DLM_OK), "ok") == 0);
  CHECK(strcmp(dlm_status_string(DLM_ERR_BUFFER_TOO_SMALL), "buffer too small") == 0);
  const char *invalid = dlm_status_string(DLM_ERR_INVALID_ARGUMENT);
  CHECK(strcmp(dlm_status_string(DLM_ERR_SYSTEM + 1), invalid) == 0);
  CHECK(strcmp(dlm_status_string(7000), invalid) == 0);
  CHECK(strcmp(dlm_status_string(UINT32_MAX), invalid) == 0);
  /* The values are part of the ABI and never change. */
  CHECK(DLM_OK == 0 && DLM_ERR_NULL_PARAMETER == 1 && DLM_ERR_INVALID_ARGUMENT == 2);
  CHECK(DLM_ERR_PANIC == 3 && DLM_ERR_UNAVAILABLE == 4 && DLM_ERR_TIMEOUT == 5);
  CHECK(DLM_ERR_CANCELLED == 6 && DLM_ERR_NOT_OWNER == 7 && DLM_ERR_NOT_FOUND == 8);
  CHECK(DLM_ERR_CONFLICT == 9 && DLM_ERR_BAD_REQUEST == 10 && DLM_ERR_NO_MEMORY == 11);
  CHECK(DLM_ERR_PROTOCOL == 12 && DLM_ERR_LOCK_LOST == 13);
  CHECK(DLM_ERR_BUFFER_TOO_SMALL == 14 && DLM_ERR_ENCODING == 15 && DLM_ERR_SYSTEM == 16);
  CHECK(DLM_LOCK_FREE == 0 && DLM_LOCK_MINE == 1 && DLM_LOCK_TAKEN == 2);
  CHECK(DLM_LOCK_AUTO_RENEW == 1);
}

static void versions(const char *cargo_version) {
  char composed[64];
  snprintf(composed, sizeof composed, "%d.%d.%d", DLM_VERSION_MAJOR, DLM_VERSION_MINOR,
           DLM_VERSION_PATCH);
  CHECK(strcmp(dlm_version(), DLM_VERSION_STRING) == 0);
  CHECK(strcmp(composed, DLM_VERSION_STRING) == 0);
  CHECK(strcmp(cargo_version, DLM_VERSION_STRING) == 0);
  CHECK(strcmp(cargo_version, dlm_version()) == 0);
}

/* Every `_free` accepts NULL (a crash here fails the run). */
static void frees_accept_null(void) {
  dlm_options_free(NULL);
  dlm_client_free(NULL);
  dlm_lock_free(NULL);
  dlm_cancel_free(NULL);
}

static void options(void) {
  static const uint8_t key[33] = {0};
  dlm_options *o = SENTINEL;

  CHECK_STATUS(dlm_options_new(NULL), DLM_ERR_NULL_PARAMETER);
  CHECK_OK(dlm_options_new(&o));
  CHECK(o != NULL && o != SENTINEL);

  /* NULL options, for every setter. */
  CHECK_STATUS(dlm_options_set_connect_timeout_ms(NULL, 1), DLM_ERR_NULL_PARAMETER);
  CHECK_STATUS(dlm_options_set_io_timeout_ms(NULL, 1), DLM_ERR_NULL_PARAMETER);
  CHECK_STATUS(dlm_options_set_client_id(NULL, S("id")), DLM_ERR_NULL_PARAMETER);
  CHECK_STATUS(dlm_options_set_legacy_framing(NULL, true), DLM_ERR_NULL_PARAMETER);
  CHECK_STATUS(dlm_options_set_credentials(NULL, S("n"), S("s")), DLM_ERR_NULL_PARAMETER);
  CHECK_STATUS(dlm_options_set_sealed_key(NULL, key, 32), DLM_ERR_NULL_PARAMETER);
  CHECK_STATUS(dlm_options_set_encoder(NULL, NULL, NULL, NULL), DLM_ERR_NULL_PARAMETER);

  /* Timeouts must be positive. */
  CHECK_STATUS(dlm_options_set_connect_timeout_ms(o, 0), DLM_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(dlm_options_set_io_timeout_ms(o, 0), DLM_ERR_INVALID_ARGUMENT);
  CHECK_OK(dlm_options_set_connect_timeout_ms(o, 2000));
  CHECK_OK(dlm_options_set_io_timeout_ms(o, 5000));

  /* Client IDs: non-empty UTF-8. */
  CHECK_STATUS(dlm_options_set_client_id(o, NULL, 3), DLM_ERR_NULL_PARAMETER);
  CHECK_STATUS(dlm_options_set_client_id(o, NULL, 0), DLM_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(dlm_options_set_client_id(o, S("")), DLM_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(dlm_options_set_client_id(o, S("bad\xff")), DLM_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(dlm_options_set_client_id(o, S("\xc3")), DLM_ERR_INVALID_ARGUMENT);
  CHECK_OK(dlm_options_set_client_id(o, S("b\xc3\xa4sics")));

  /* Credentials: both non-empty UTF-8. */
  CHECK_STATUS(dlm_options_set_credentials(o, NULL, 1, S("s")), DLM_ERR_NULL_PARAMETER);
  CHECK_STATUS(dlm_options_set_credentials(o, S("n"), NULL, 1), DLM_ERR_NULL_PARAMETER);
  CHECK_STATUS(dlm_options_set_credentials(o, S(""), S("s")), DLM_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(dlm_options_set_credentials(o, S("n"), S("")), DLM_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(dlm_options_set_credentials(o, S("\xff"), S("s")), DLM_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(dlm_options_set_credentials(o, S("n"), S("\xfe")), DLM_ERR_INVALID_ARGUMENT);

  /* A sealed key is exactly 32 bytes. */
  CHECK_STATUS(dlm_options_set_sealed_key(o, NULL, 32), DLM_ERR_NULL_PARAMETER);
  CHECK_STATUS(dlm_options_set_sealed_key(o, key, 31), DLM_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(dlm_options_set_sealed_key(o, key, 33), DLM_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(dlm_options_set_sealed_key(o, NULL, 0), DLM_ERR_INVALID_ARGUMENT);

  /* A custom encoder needs both functions. */
  CHECK_STATUS(dlm_options_set_encoder(o, NULL, NULL, NULL), DLM_ERR_NULL_PARAMETER);

  CHECK_OK(dlm_options_set_legacy_framing(o, false));
  dlm_options_free(o);
}

static void connecting(const char *addr) {
  dlm_client *c = SENTINEL;
  size_t len = strlen(addr);

  CHECK_STATUS(dlm_client_new(addr, len, NULL, NULL), DLM_ERR_NULL_PARAMETER);
  CHECK_STATUS(dlm_client_new(NULL, 9, NULL, &c), DLM_ERR_NULL_PARAMETER);
  CHECK_STATUS(dlm_client_new(NULL, 0, NULL, &c), DLM_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(dlm_client_new(S(""), NULL, &c), DLM_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(dlm_client_new(S("127.0.0.1:\xff"), NULL, &c), DLM_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(dlm_client_new(S("127.0.0.1"), NULL, &c), DLM_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(dlm_client_new(S("127.0.0.1:99999"), NULL, &c), DLM_ERR_INVALID_ARGUMENT);
  /* Nothing listens on port 1: the server is down. */
  dlm_options *fast = NULL;
  CHECK_OK(dlm_options_new(&fast));
  CHECK_OK(dlm_options_set_connect_timeout_ms(fast, 500));
  CHECK_STATUS(dlm_client_new(S("127.0.0.1:1"), fast, &c), DLM_ERR_UNAVAILABLE);
  {
    /* Why: kept on the options, there being no client. It says what the
     * status does not ("server unavailable"), and not that again. */
    char why[256];
    size_t wn = 0;
    CHECK_OK(dlm_options_last_error(fast, why, sizeof why, &wn));
    CHECK(wn > 0 && strlen(why) == wn);
    CHECK_CONTAINS(why, "refused");
    CHECK(strstr(why, dlm_status_string(DLM_ERR_UNAVAILABLE)) == NULL);
    CHECK_STATUS(dlm_options_last_error(NULL, why, sizeof why, &wn), DLM_ERR_NULL_PARAMETER);
  }
  dlm_options_free(fast);
  CHECK(c == SENTINEL); /* out-parameters only on success */

  /* Default options (NULL): a random 48-character owner ID. */
  CHECK_OK(dlm_client_new(addr, len, NULL, &c));
  CHECK(c != NULL && c != SENTINEL);
  if (c == NULL || c == SENTINEL) {
    return;
  }
  char id[64];
  size_t n = 0;
  CHECK_STATUS(dlm_client_id(c, NULL, 0, &n), DLM_ERR_BUFFER_TOO_SMALL);
  CHECK(n == 48); /* the needed size, less the NUL */
  n = 0;
  CHECK_STATUS(dlm_client_id(c, id, 48, &n), DLM_ERR_BUFFER_TOO_SMALL);
  CHECK(n == 48);
  CHECK_OK(dlm_client_id(c, id, 49, &n));
  CHECK(n == 48 && strlen(id) == 48);
  for (size_t i = 0; i < 48; i++) {
    char ch = id[i];
    CHECK((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
          ch == '-' || ch == '_');
  }
  dlm_client *other = connect_as(addr, NULL);
  char other_id[64];
  CHECK(other != NULL);
  CHECK_OK(dlm_client_id(other, other_id, sizeof other_id, &n));
  CHECK(strcmp(id, other_id) != 0);
  dlm_client_free(other);
  dlm_client_free(c);

  /* A chosen owner ID, and options freed right after use. */
  c = connect_as(addr, "b\xc3\xa4sics");
  CHECK(c != NULL);
  CHECK_OK(dlm_client_id(c, id, sizeof id, &n));
  CHECK(strcmp(id, "b\xc3\xa4sics") == 0 && n == 7);
  dlm_client_free(c);
}

static void null_arguments(const char *addr) {
  dlm_client *c = connect_as(addr, "nulls");
  char buf[64];
  size_t n = 99;
  uint64_t u = 99;
  dlm_lock_state state = DLM_LOCK_TAKEN;
  dlm_lock *l = SENTINEL;
  dlm_cancel *cancel = NULL;
  bool lost = false;
  CHECK(c != NULL);

  /* A NULL client, for every client function. */
  CHECK_STATUS(dlm_client_last_error(NULL, buf, sizeof buf, &n), DLM_ERR_NULL_PARAMETER);
  CHECK_STATUS(dlm_client_id(NULL, buf, sizeof buf, &n), DLM_ERR_NULL_PARAMETER);
  CHECK_STATUS(dlm_client_test_lock(NULL, S("x"), &state, &u, &u), DLM_ERR_NULL_PARAMETER);
  CHECK_STATUS(dlm_client_unlock(NULL, S("x"), 0), DLM_ERR_NULL_PARAMETER);
  CHECK_STATUS(dlm_client_put(NULL, S("x"), S("v"), 1000, &u), DLM_ERR_NULL_PARAMETER);
  CHECK_STATUS(dlm_client_put_if(NULL, S("x"), S("v"), 1000, 0, &u), DLM_ERR_NULL_PARAMETER);
  CHECK_STATUS(dlm_client_get(NULL, S("x"), (uint8_t *)buf, sizeof buf, &n, &u),
               DLM_ERR_NULL_PARAMETER);
  CHECK_STATUS(dlm_client_erase(NULL, S("x")), DLM_ERR_NULL_PARAMETER);
  CHECK_STATUS(dlm_client_server_version(NULL, buf, sizeof buf, &n), DLM_ERR_NULL_PARAMETER);
  CHECK_STATUS(dlm_client_stats_json(NULL, buf, sizeof buf, &n), DLM_ERR_NULL_PARAMETER);
  CHECK_STATUS(dlm_client_lock(NULL, S("x"), 1000, 0, 0, NULL, NULL, NULL, &l),
               DLM_ERR_NULL_PARAMETER);

  /* NULL out-parameters and buffers. */
  CHECK_STATUS(dlm_client_last_error(c, buf, sizeof buf, NULL), DLM_ERR_NULL_PARAMETER);
  CHECK_STATUS(dlm_client_last_error(c, NULL, 8, &n), DLM_ERR_NULL_PARAMETER);
  CHECK_STATUS(dlm_client_id(c, buf, sizeof buf, NULL), DLM_ERR_NULL_PARAMETER);
  CHECK_STATUS(dlm_client_id(c, NULL, 8, &n), DLM_ERR_NULL_PARAMETER);
  CHECK_STATUS(dlm_client_server_version(c, buf, sizeof buf, NULL), DLM_ERR_NULL_PARAMETER);
  CHECK_STATUS(dlm_client_server_version(c, NULL, 8, &n), DLM_ERR_NULL_PARAMETER);
  CHECK_STATUS(dlm_client_stats_json(c, buf, sizeof buf, NULL), DLM_ERR_NULL_PARAMETER);
  CHECK_STATUS(dlm_client_stats_json(c, NULL, 8, &n), DLM_ERR_NULL_PARAMETER);
  CHECK_STATUS(dlm_client_test_lock(c, S("x"), NULL, &u, &u), DLM_ERR_NULL_PARAMETER);
  CHECK_STATUS(dlm_client_get(c, S("x"), (uint8_t *)buf, sizeof buf, NULL, &u),
               DLM_ERR_NULL_PARAMETER);
  CHECK_STATUS(dlm_client_get(c, S("x"), NULL, 8, &n, &u), DLM_ERR_NULL_PARAMETER);
  CHECK_STATUS(dlm_client_lock(c, S("x"), 1000, 0, 0, NULL, NULL, NULL, NULL),
               DLM_ERR_NULL_PARAMETER);

  /* NULL names and values with a length. */
  CHECK_STATUS(dlm_client_test_lock(c, NULL, 1, &state, &u, &u), DLM_ERR_NULL_PARAMETER);
  CHECK_STATUS(dlm_client_unlock(c, NULL, 1, 0), DLM_ERR_NULL_PARAMETER);
  CHECK_STATUS(dlm_client_put(c, NULL, 1, S("v"), 1000, &u), DLM_ERR_NULL_PARAMETER);
  CHECK_STATUS(dlm_client_put(c, S("x"), NULL, 1, 1000, &u), DLM_ERR_NULL_PARAMETER);
  CHECK_STATUS(dlm_client_put_if(c, NULL, 1, S("v"), 1000, 0, &u), DLM_ERR_NULL_PARAMETER);
  CHECK_STATUS(dlm_client_put_if(c, S("x"), NULL, 1, 1000, 0, &u), DLM_ERR_NULL_PARAMETER);
  CHECK_STATUS(dlm_client_get(c, NULL, 1, (uint8_t *)buf, sizeof buf, &n, &u),
               DLM_ERR_NULL_PARAMETER);
  CHECK_STATUS(dlm_client_erase(c, NULL, 1), DLM_ERR_NULL_PARAMETER);
  CHECK_STATUS(dlm_client_lock(c, NULL, 1, 1000, 0, 0, NULL, NULL, NULL, &l),
               DLM_ERR_NULL_PARAMETER);
  /* A NULL name of length 0 is the empty name: invalid. */
  CHECK_STATUS(dlm_client_erase(c, NULL, 0), DLM_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(dlm_client_lock(c, NULL, 0, 1000, 0, 0, NULL, NULL, NULL, &l),
               DLM_ERR_INVALID_ARGUMENT);
  CHECK(l == SENTINEL);

  /* A NULL lock, for every lock function, and NULL out-parameters. */
  CHECK_STATUS(dlm_lock_token(NULL, &u), DLM_ERR_NULL_PARAMETER);
  CHECK_STATUS(dlm_lock_remaining_ms(NULL, &u), DLM_ERR_NULL_PARAMETER);
  CHECK_STATUS(dlm_lock_is_lost(NULL, &lost), DLM_ERR_NULL_PARAMETER);
  CHECK_STATUS(dlm_lock_extend(NULL, 1000), DLM_ERR_NULL_PARAMETER);
  CHECK_STATUS(dlm_lock_release(NULL), DLM_ERR_NULL_PARAMETER);
  CHECK_STATUS(dlm_lock_last_error(NULL, buf, sizeof buf, &n), DLM_ERR_NULL_PARAMETER);
  if (CHECK_OK(dlm_client_lock(c, S("nulls"), 5000, 0, 0, NULL, NULL, NULL, &l))) {
    CHECK_STATUS(dlm_lock_token(l, NULL), DLM_ERR_NULL_PARAMETER);
    CHECK_STATUS(dlm_lock_remaining_ms(l, NULL), DLM_ERR_NULL_PARAMETER);
    CHECK_STATUS(dlm_lock_is_lost(l, NULL), DLM_ERR_NULL_PARAMETER);
    CHECK_STATUS(dlm_lock_last_error(l, buf, sizeof buf, NULL), DLM_ERR_NULL_PARAMETER);
    CHECK_STATUS(dlm_lock_last_error(l, NULL, 8, &n), DLM_ERR_NULL_PARAMETER);
    CHECK_OK(dlm_lock_release(l));
    dlm_lock_free(l);
  }

  /* Cancellation handles. */
  CHECK_STATUS(dlm_cancel_new(NULL), DLM_ERR_NULL_PARAMETER);
  CHECK_STATUS(dlm_cancel_trigger(NULL), DLM_ERR_NULL_PARAMETER);
  CHECK_OK(dlm_cancel_new(&cancel));
  CHECK_OK(dlm_cancel_trigger(cancel));
  CHECK_OK(dlm_cancel_trigger(cancel)); /* stays triggered; idempotent */
  dlm_cancel_free(cancel);

  dlm_client_free(c);
}

static void server_info(const char *addr) {
  dlm_client *c = connect_as(addr, "info");
  char small[4];
  size_t n = 0;
  CHECK(c != NULL);

  /* Last error: empty until something fails on this thread. */
  CHECK_OK(dlm_client_last_error(c, small, sizeof small, &n));
  CHECK(n == 0 && small[0] == '\0');

  /* The server's version, after asking for the size. */
  CHECK_STATUS(dlm_client_server_version(c, small, sizeof small, &n), DLM_ERR_BUFFER_TOO_SMALL);
  CHECK(n > sizeof small);
  {
    /* The status says it all: no more to say. */
    char why[64];
    size_t wn = 99;
    CHECK_OK(dlm_client_last_error(c, why, sizeof why, &wn));
    CHECK(wn == 0 && why[0] == '\0');
  }
  char *version = malloc(n + 1);
  size_t m = 0;
  CHECK_OK(dlm_client_server_version(c, version, n + 1, &m));
  CHECK(m == n && strlen(version) == n);
  CHECK_CONTAINS(version, "JackrabbitDLM");
  free(version);

  /* Statistics as JSON: every counter, zeros included. */
  CHECK_STATUS(dlm_client_stats_json(c, NULL, 0, &n), DLM_ERR_BUFFER_TOO_SMALL);
  char *json = malloc(n + 64);
  CHECK_OK(dlm_client_stats_json(c, json, n + 64, &m));
  CHECK(json[0] == '{' && json[m - 1] == '}' && strlen(json) == m);
  CHECK_CONTAINS(json, "\"Version\":");
  CHECK_CONTAINS(json, "\"Stats\":");
  CHECK_CONTAINS(json, "\"ALock\":0");
  CHECK_CONTAINS(json, "\"AWait\":0");
  free(json);

  /* Nothing failed, so still no error message. */
  CHECK_OK(dlm_client_last_error(c, small, sizeof small, &n));
  CHECK(n == 0);
  dlm_client_free(c);
}

/* A peer that answers every request with something that is not a dlm
 * answer: connecting works (it is only TCP), every call is a PROTOCOL
 * error. */
static void not_a_server(const char *garbage) {
  dlm_client *c = connect_as(garbage, "garbage");
  dlm_lock *l = SENTINEL;
  char buf[64];
  size_t n = 0;
  uint64_t rev = 77;
  if (!CHECK(c != NULL)) {
    return;
  }
  CHECK_STATUS(dlm_client_server_version(c, buf, sizeof buf, &n), DLM_ERR_PROTOCOL);
  CHECK_CONTAINS(client_error(c), "response");
  CHECK_STATUS(dlm_client_lock(c, S("x"), 1000, 0, 0, NULL, NULL, NULL, &l), DLM_ERR_PROTOCOL);
  CHECK(l == SENTINEL);
  CHECK_STATUS(dlm_client_put(c, S("x"), S("v"), 1000, &rev), DLM_ERR_PROTOCOL);
  CHECK(rev == 77);
  dlm_client_free(c);
}

static void *fail_an_erase(void *client) {
  dlm_client_erase(client, S(""));
  return NULL;
}

/* The last error: set or cleared by every call that returns a status, early
 * NULL_PARAMETER returns included; kept per thread, however many threads
 * there are; and never a repeat of the status's own text. */
static void last_error(const char *addr) {
  dlm_client *c = connect_as(addr, "last-error");
  if (!CHECK(c != NULL)) {
    return;
  }
  CHECK_STATUS(dlm_client_erase(c, S("")), DLM_ERR_INVALID_ARGUMENT);
  CHECK(strcmp(client_error(c), "the name is empty") == 0);
  /* A NULL argument replaces it: the old message would mislead. */
  CHECK_STATUS(dlm_client_erase(c, NULL, 1), DLM_ERR_NULL_PARAMETER);
  CHECK(strcmp(client_error(c), "the name is NULL") == 0);
  CHECK_STATUS(dlm_client_test_lock(c, S("x"), NULL, NULL, NULL), DLM_ERR_NULL_PARAMETER);
  CHECK(strcmp(client_error(c), "out_state is NULL") == 0);
  dlm_lock *l = NULL;
  CHECK_STATUS(dlm_client_lock(c, S("x"), 1000, 0, 0, NULL, NULL, NULL, NULL),
               DLM_ERR_NULL_PARAMETER);
  CHECK(strcmp(client_error(c), "out is NULL") == 0);
  /* A NULL client has no message to leave, but clears this thread's. */
  CHECK_STATUS(dlm_client_erase(NULL, S("x")), DLM_ERR_NULL_PARAMETER);
  CHECK(strcmp(client_error(c), "") == 0);

  /* Many threads failing on the same client leave this thread's alone. */
  CHECK_STATUS(dlm_client_lock(c, S(""), 1000, 0, 0, NULL, NULL, NULL, &l),
               DLM_ERR_INVALID_ARGUMENT);
  for (int i = 0; i < 1100; i++) {
    pthread_t t;
    if (!CHECK(pthread_create(&t, NULL, fail_an_erase, c) == 0)) {
      break;
    }
    pthread_join(t, NULL);
  }
  CHECK(strcmp(client_error(c), "the name is empty") == 0);

  /* Statuses that say it all leave nothing more to say. */
  CHECK_STATUS(dlm_client_unlock(c, S("never-locked"), 0), DLM_ERR_NOT_FOUND);
  CHECK(strcmp(client_error(c), "") == 0);
  dlm_client_free(c);
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s ADDR CARGO_VERSION GARBAGE_ADDR\n", argv[0]);
    return 2;
  }
  statuses();
  versions(argv[2]);
  frees_accept_null();
  options();
  connecting(argv[1]);
  null_arguments(argv[1]);
  server_info(argv[1]);
  last_error(argv[1]);
  not_a_server(argv[3]);
  return checks_done("basics");
}
