/*
 * Multi-locks through libdlm's C ABI (dlm_client_lock_all): several
 * exclusive locks taken all or none in one dlm_lock, one fencing token per
 * name (distinct, in order, above every earlier token), a set that waits
 * in every name's queue and is granted whole once the last name is free,
 * extension and release of every name together, and the argument checks.
 *
 * Usage: multi ADDR
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>

#include "check.h"

#define SENTINEL ((void *)(uintptr_t)0x5eed)

static const char *addr;

static const char *const abc[] = {"m/a", "m/b", "m/c"};
static const size_t abc_lens[] = {3, 3, 3};

static dlm_lock_state state_of(const dlm_client *c, const char *name) {
  dlm_lock_state st = DLM_LOCK_FREE;
  CHECK_OK(dlm_client_test_lock(c, name, strlen(name), &st, NULL, NULL));
  return st;
}

/* Waits (up to 5 s) until the server's statistics contain `needle`. */
static int wait_for_stats(const dlm_client *c, const char *needle) {
  for (int i = 0; i < 500; i++) {
    char json[4096];
    size_t n = 0;
    if (dlm_client_stats_json(c, json, sizeof json, &n) == DLM_OK && strstr(json, needle)) {
      return 1;
    }
    sleep_ms(10);
  }
  return 0;
}

static void all_or_none(void) {
  dlm_client *a = connect_as(addr, "multi-a");
  dlm_client *b = connect_as(addr, "multi-b");
  dlm_lock *held = NULL, *all = NULL, *none = SENTINEL;
  if (!CHECK(a != NULL && b != NULL)) {
    goto out;
  }
  /* One name held by another: the whole set is refused, none taken. */
  if (!CHECK_OK(dlm_client_lock(b, S("m/b"), 5000, 0, 0, NULL, NULL, NULL, &held))) {
    goto out;
  }
  uint64_t before = 0;
  CHECK_OK(dlm_lock_token(held, &before));
  CHECK_STATUS(dlm_client_lock_all(a, abc, abc_lens, 3, 5000, 0, 0, NULL, NULL, NULL, &none),
               DLM_ERR_NOT_OWNER);
  CHECK(none == SENTINEL);
  CHECK(state_of(b, "m/a") == DLM_LOCK_FREE);
  CHECK(state_of(b, "m/c") == DLM_LOCK_FREE);

  /* Once it is free, all three at once: one token each, in order. */
  CHECK_OK(dlm_lock_release(held));
  if (!CHECK_OK(dlm_client_lock_all(a, abc, abc_lens, 3, 5000, 0, 0, NULL, NULL, NULL, &all))) {
    goto out;
  }
  uint64_t tokens[DLM_MAX_LOCK_ALL] = {0};
  size_t n = 0;
  CHECK_OK(dlm_lock_tokens(all, tokens, DLM_MAX_LOCK_ALL, &n));
  CHECK(n == 3);
  CHECK(tokens[0] > before && tokens[1] > tokens[0] && tokens[2] > tokens[1]);
  uint64_t first = 0;
  CHECK_OK(dlm_lock_token(all, &first));
  CHECK(first == tokens[0]);
  /* Too small a buffer: only the count. */
  uint64_t one = 7;
  CHECK_STATUS(dlm_lock_tokens(all, &one, 1, &n), DLM_ERR_BUFFER_TOO_SMALL);
  CHECK(n == 3 && one == 7);
  /* Each name is an ordinary lock of this client's. */
  for (size_t i = 0; i < 3; i++) {
    dlm_lock_state st = DLM_LOCK_FREE;
    uint64_t t = 0;
    CHECK_OK(dlm_client_test_lock(a, abc[i], abc_lens[i], &st, &t, NULL));
    CHECK(st == DLM_LOCK_MINE && t == tokens[i]);
    CHECK(state_of(b, abc[i]) == DLM_LOCK_TAKEN);
  }
  /* A name this client already holds, beside one it does not, is
   * refused (nothing more is taken). */
  static const char *const za[] = {"m/z", "m/a"};
  static const size_t za_lens[] = {3, 3};
  CHECK_STATUS(dlm_client_lock_all(a, za, za_lens, 2, 5000, 0, 0, NULL, NULL, NULL, &none),
               DLM_ERR_NOT_OWNER);
  CHECK(state_of(b, "m/z") == DLM_LOCK_FREE);
  CHECK(none == SENTINEL);

  /* Extended together, each keeping its token. */
  uint64_t left = 0;
  CHECK_OK(dlm_lock_extend(all, 20000));
  CHECK_OK(dlm_lock_remaining_ms(all, &left));
  CHECK(left > 5000 && left <= 20000);
  uint64_t again[DLM_MAX_LOCK_ALL] = {0};
  CHECK_OK(dlm_lock_tokens(all, again, DLM_MAX_LOCK_ALL, &n));
  CHECK(n == 3 && memcmp(again, tokens, 3 * sizeof tokens[0]) == 0);

  /* Released together: every name free. */
  CHECK_OK(dlm_lock_release(all));
  CHECK_OK(dlm_lock_release(all)); /* idempotent */
  for (size_t i = 0; i < 3; i++) {
    CHECK(state_of(b, abc[i]) == DLM_LOCK_FREE);
  }
  CHECK_STATUS(dlm_lock_extend(all, 1000), DLM_ERR_LOCK_LOST);
out:
  dlm_lock_free(all);
  dlm_lock_free(held);
  dlm_client_free(b);
  dlm_client_free(a);
}

struct waiter {
  dlm_client *c;
  dlm_status status;
  dlm_lock *lock;
};

static void *wait_all(void *arg) {
  struct waiter *w = arg;
  w->status = dlm_client_lock_all(w->c, abc, abc_lens, 3, 5000, 10000, 0, NULL, NULL, NULL,
                                  &w->lock);
  return NULL;
}

static void a_wait_takes_all_once_the_last_is_free(void) {
  dlm_client *a = connect_as(addr, "multi-wa");
  dlm_client *b = connect_as(addr, "multi-wb");
  dlm_lock *hb = NULL, *hc = NULL, *none = SENTINEL;
  struct waiter w = {a, DLM_ERR_PANIC, NULL};
  pthread_t t;
  if (!CHECK(a != NULL && b != NULL)) {
    goto out;
  }
  if (!CHECK_OK(dlm_client_lock(b, S("m/b"), 5000, 0, 0, NULL, NULL, NULL, &hb))) {
    goto out;
  }
  if (!CHECK_OK(dlm_client_lock(b, S("m/c"), 5000, 0, 0, NULL, NULL, NULL, &hc))) {
    goto out;
  }
  CHECK(pthread_create(&t, NULL, wait_all, &w) == 0);
  CHECK(wait_for_stats(b, "\"AWait\":1,"));
  /* Waiting, it holds nothing, but reserves the free name. */
  CHECK(state_of(b, "m/a") == DLM_LOCK_FREE);
  CHECK_STATUS(dlm_client_lock(b, S("m/a"), 5000, 0, 0, NULL, NULL, NULL, &none),
               DLM_ERR_NOT_OWNER);
  CHECK(none == SENTINEL);
  /* One of two freed: still waiting, nothing taken. */
  CHECK_OK(dlm_lock_release(hb));
  CHECK(state_of(b, "m/b") == DLM_LOCK_FREE);
  CHECK(wait_for_stats(b, "\"AWait\":1,"));
  /* The last freed: granted whole. */
  CHECK_OK(dlm_lock_release(hc));
  pthread_join(t, NULL);
  if (CHECK_OK(w.status)) {
    for (size_t i = 0; i < 3; i++) {
      CHECK(state_of(b, abc[i]) == DLM_LOCK_TAKEN);
    }
    CHECK_OK(dlm_lock_release(w.lock));
    for (size_t i = 0; i < 3; i++) {
      CHECK(state_of(b, abc[i]) == DLM_LOCK_FREE);
    }
  }
out:
  dlm_lock_free(w.lock);
  dlm_lock_free(hc);
  dlm_lock_free(hb);
  dlm_client_free(b);
  dlm_client_free(a);
}

static void arguments_are_checked(void) {
  dlm_client *a = connect_as(addr, "multi-args");
  dlm_lock *none = SENTINEL;
  if (!CHECK(a != NULL)) {
    return;
  }
  static const char *const twice[] = {"m/x", "m/x"};
  static const size_t twice_lens[] = {3, 3};
  CHECK_STATUS(dlm_client_lock_all(a, twice, twice_lens, 2, 5000, 0, 0, NULL, NULL, NULL, &none),
               DLM_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(dlm_client_lock_all(a, NULL, NULL, 0, 5000, 0, 0, NULL, NULL, NULL, &none),
               DLM_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(dlm_client_lock_all(a, NULL, NULL, 2, 5000, 0, 0, NULL, NULL, NULL, &none),
               DLM_ERR_NULL_PARAMETER);
  const char *many[DLM_MAX_LOCK_ALL + 1];
  size_t many_lens[DLM_MAX_LOCK_ALL + 1];
  char names[DLM_MAX_LOCK_ALL + 1][8];
  for (size_t i = 0; i <= DLM_MAX_LOCK_ALL; i++) {
    snprintf(names[i], sizeof names[i], "m/n%zu", i);
    many[i] = names[i];
    many_lens[i] = strlen(names[i]);
  }
  CHECK_STATUS(dlm_client_lock_all(a, many, many_lens, DLM_MAX_LOCK_ALL + 1, 5000, 0, 0, NULL,
                                   NULL, NULL, &none),
               DLM_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(dlm_client_lock_all(a, abc, abc_lens, 3, 5000, 0, 99, NULL, NULL, NULL, &none),
               DLM_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(dlm_client_lock_all(a, abc, abc_lens, 3, 5000, 0, 0, NULL, NULL, NULL, NULL),
               DLM_ERR_NULL_PARAMETER);
  CHECK(none == SENTINEL);
  /* Sixteen at once is fine. */
  dlm_lock *sixteen = NULL;
  if (CHECK_OK(dlm_client_lock_all(a, many, many_lens, DLM_MAX_LOCK_ALL, 5000, 0,
                                   DLM_LOCK_AUTO_RENEW, NULL, NULL, NULL, &sixteen))) {
    size_t n = 0;
    CHECK_STATUS(dlm_lock_tokens(sixteen, NULL, 0, &n), DLM_ERR_BUFFER_TOO_SMALL);
    CHECK(n == DLM_MAX_LOCK_ALL);
  }
  /* Freeing releases every one. */
  dlm_lock_free(sixteen);
  CHECK(state_of(a, "m/n0") == DLM_LOCK_FREE);
  CHECK(state_of(a, "m/n15") == DLM_LOCK_FREE);
  dlm_client_free(a);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s ADDR\n", argv[0]);
    return 2;
  }
  addr = argv[1];
  all_or_none();
  a_wait_takes_all_once_the_last_is_free();
  arguments_are_checked();
  return checks_done("multi");
}
