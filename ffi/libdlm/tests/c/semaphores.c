/*
 * Semaphores and read/write locks through libdlm's blocking C ABI
 * (dlm_client_semaphore, dlm_client_read_lock, dlm_client_write_lock):
 * permits counted per acquisition, each hold with its own token, its own
 * extension and release, the size fixed while in use (CONFLICT), shared
 * readers, a waiting writer served before readers that come after it
 * (FIFO: writers are not starved), the kinds kept apart, unlock by name,
 * and the argument checks.
 *
 * Usage: semaphores ADDR
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>

#include "check.h"

#define SENTINEL ((void *)(uintptr_t)0x5eed)

static const char *addr;

static uint64_t token_of(const dlm_lock *l) {
  uint64_t t = 0;
  CHECK_OK(dlm_lock_token(l, &t));
  return t;
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

static void permits_are_counted(void) {
  dlm_client *a = connect_as(addr, "sem-a");
  dlm_client *b = connect_as(addr, "sem-b");
  dlm_lock *one = NULL, *two = NULL, *three = NULL;
  dlm_lock *none = SENTINEL;
  if (!CHECK(a != NULL && b != NULL)) {
    return;
  }
  /* The same owner may hold several permits, each its own hold. */
  if (!CHECK_OK(dlm_client_semaphore(a, S("pool"), 2, 5000, 0, 0, NULL, NULL, NULL, &one)) ||
      !CHECK_OK(dlm_client_semaphore(a, S("pool"), 2, 5000, 0, 0, NULL, NULL, NULL, &two))) {
    goto out;
  }
  uint64_t t1 = token_of(one), t2 = token_of(two);
  CHECK(t1 > 0 && t2 > t1);

  /* Full: one attempt fails at once, the out-parameter untouched. */
  CHECK_STATUS(dlm_client_semaphore(b, S("pool"), 2, 5000, 0, 0, NULL, NULL, NULL, &none),
               DLM_ERR_NOT_OWNER);
  CHECK(none == SENTINEL);
  /* Another size while in use: a conflict that says what the name is. */
  CHECK_STATUS(dlm_client_semaphore(b, S("pool"), 3, 5000, 0, 0, NULL, NULL, NULL, &none),
               DLM_ERR_CONFLICT);
  CHECK_CONTAINS(client_error(b), "semaphore of 2 permits");
  CHECK_STATUS(dlm_client_read_lock(b, S("pool"), 5000, 0, 0, NULL, NULL, NULL, &none),
               DLM_ERR_CONFLICT);
  /* A plain lock (what JackrabbitDLM's clients send) finds it held. */
  CHECK_STATUS(dlm_client_lock(b, S("pool"), 5000, 0, 0, NULL, NULL, NULL, &none),
               DLM_ERR_NOT_OWNER);
  CHECK(none == SENTINEL);

  /* Extending one hold keeps its token; releasing it frees one permit. */
  CHECK_OK(dlm_lock_extend(one, 8000));
  CHECK(token_of(one) == t1);
  uint64_t left = 0;
  CHECK_OK(dlm_lock_remaining_ms(two, &left));
  CHECK(left > 0 && left <= 5000);
  CHECK_OK(dlm_lock_release(one));
  CHECK_OK(dlm_lock_release(one)); /* idempotent */
  CHECK_STATUS(dlm_lock_extend(one, 1000), DLM_ERR_LOCK_LOST);
  if (CHECK_OK(dlm_client_semaphore(b, S("pool"), 2, 5000, 0, 0, NULL, NULL, NULL, &three))) {
    CHECK(token_of(three) > t2);
  }
  CHECK_OK(dlm_lock_extend(two, 5000)); /* the other hold is untouched */

  /* Unlock by name releases every hold of the caller on it. */
  CHECK_OK(dlm_client_unlock(b, S("pool"), 0));
  CHECK_STATUS(dlm_lock_extend(three, 1000), DLM_ERR_LOCK_LOST);
  CHECK_OK(dlm_client_unlock(a, S("pool"), 0));
  CHECK_STATUS(dlm_lock_release(two), DLM_ERR_LOCK_LOST);

  /* Nobody holds or waits: the name is forgotten, any size may use it. */
  dlm_lock *four = NULL;
  if (CHECK_OK(dlm_client_semaphore(b, S("pool"), 5, 5000, 0, 0, NULL, NULL, NULL, &four))) {
    CHECK_OK(dlm_lock_release(four));
  }
  dlm_lock_free(four);
out:
  dlm_lock_free(one);
  dlm_lock_free(two);
  dlm_lock_free(three);
  dlm_client_free(a);
  dlm_client_free(b);
}

/* One acquisition on its own thread. */
struct waiter {
  dlm_client *client;
  int write; /* 1: write lock, 0: read lock */
  uint64_t wait_ms;
  dlm_status status;
  dlm_lock *lock;
  uint64_t token;
};

static void *acquire_rw(void *arg) {
  struct waiter *w = arg;
  dlm_status (*take)(const dlm_client *, const char *, size_t, uint64_t, uint64_t, uint32_t,
                     const dlm_cancel *, dlm_lost_fn, void *, dlm_lock **) =
      w->write ? dlm_client_write_lock : dlm_client_read_lock;
  w->status = take(w->client, S("table"), 10000, w->wait_ms, 0, NULL, NULL, NULL, &w->lock);
  if (w->status == DLM_OK) {
    dlm_lock_token(w->lock, &w->token);
  }
  return NULL;
}

static void readers_share_and_writers_are_not_starved(void) {
  dlm_client *r1 = connect_as(addr, "rw-reader-1");
  dlm_client *r2 = connect_as(addr, "rw-reader-2");
  dlm_client *r3 = connect_as(addr, "rw-reader-3");
  dlm_client *wr = connect_as(addr, "rw-writer");
  dlm_lock *first = NULL, *second = NULL;
  dlm_lock *none = SENTINEL;
  pthread_t tw, tr;
  if (!CHECK(r1 != NULL && r2 != NULL && r3 != NULL && wr != NULL)) {
    return;
  }
  /* Readers share. */
  if (!CHECK_OK(dlm_client_read_lock(r1, S("table"), 10000, 0, 0, NULL, NULL, NULL, &first)) ||
      !CHECK_OK(dlm_client_read_lock(r2, S("table"), 10000, 0, 0, NULL, NULL, NULL, &second))) {
    goto out;
  }
  CHECK(token_of(second) > token_of(first));
  /* A writer is refused beside them, at once without a wait. */
  CHECK_STATUS(dlm_client_write_lock(wr, S("table"), 10000, 0, 0, NULL, NULL, NULL, &none),
               DLM_ERR_NOT_OWNER);
  CHECK(none == SENTINEL);
  CHECK_STATUS(dlm_client_semaphore(wr, S("table"), 2, 10000, 0, 0, NULL, NULL, NULL, &none),
               DLM_ERR_CONFLICT);
  CHECK_CONTAINS(client_error(wr), "read/write lock");

  /* The writer queues; a reader that comes after it is held back. */
  struct waiter w = {wr, 1, 10000, DLM_ERR_PANIC, NULL, 0};
  CHECK(pthread_create(&tw, NULL, acquire_rw, &w) == 0);
  CHECK(wait_for_stats(wr, "\"AWait\":1,"));
  CHECK_STATUS(dlm_client_read_lock(r3, S("table"), 10000, 0, 0, NULL, NULL, NULL, &none),
               DLM_ERR_NOT_OWNER);
  struct waiter r = {r3, 0, 10000, DLM_ERR_PANIC, NULL, 0};
  CHECK(pthread_create(&tr, NULL, acquire_rw, &r) == 0);
  CHECK(wait_for_stats(wr, "\"AWait\":2,"));

  /* The readers leave: the writer is granted, the later reader still
   * waits. */
  CHECK_OK(dlm_lock_release(first));
  CHECK_OK(dlm_lock_release(second));
  pthread_join(tw, NULL);
  CHECK_STATUS(w.status, DLM_OK);
  CHECK(wait_for_stats(wr, "\"AWait\":1,"));
  /* The writer leaves: the reader is granted, after it. */
  if (w.lock != NULL) {
    CHECK_OK(dlm_lock_release(w.lock));
  }
  pthread_join(tr, NULL);
  CHECK_STATUS(r.status, DLM_OK);
  CHECK(w.token > 0 && r.token > w.token);
  if (r.lock != NULL) {
    CHECK_OK(dlm_lock_release(r.lock));
  }
  dlm_lock_free(w.lock);
  dlm_lock_free(r.lock);
out:
  dlm_lock_free(first);
  dlm_lock_free(second);
  dlm_client_free(r1);
  dlm_client_free(r2);
  dlm_client_free(r3);
  dlm_client_free(wr);
}

static void auto_renewed_hold_and_test_lock(void) {
  dlm_client *a = connect_as(addr, "rw-renew");
  dlm_lock *l = NULL;
  if (!CHECK(a != NULL)) {
    return;
  }
  if (CHECK_OK(dlm_client_write_lock(a, S("renewed"), 300, 0, DLM_LOCK_AUTO_RENEW, NULL, NULL,
                                     NULL, &l))) {
    uint64_t t = token_of(l);
    /* TestLock answers the caller's hold, with its token. */
    dlm_lock_state state = DLM_LOCK_FREE;
    uint64_t token = 0;
    CHECK_OK(dlm_client_test_lock(a, S("renewed"), &state, &token, NULL));
    CHECK(state == DLM_LOCK_MINE && token == t);
    /* Outlives several TTLs by its renewals (the server confirms it). */
    uint64_t until = now_ms() + 1000;
    while (now_ms() < until) {
      sleep_ms(50);
    }
    bool lost = true;
    CHECK_OK(dlm_lock_is_lost(l, &lost));
    CHECK(!lost);
    CHECK_OK(dlm_client_test_lock(a, S("renewed"), &state, &token, NULL));
    CHECK(state == DLM_LOCK_MINE && token == t);
    CHECK_OK(dlm_lock_release(l));
    CHECK_OK(dlm_client_test_lock(a, S("renewed"), &state, NULL, NULL));
    CHECK(state == DLM_LOCK_FREE);
  }
  dlm_lock_free(l);
  dlm_client_free(a);
}

static void invalid_arguments(void) {
  dlm_client *a = connect_as(addr, "sem-args");
  dlm_lock *l = SENTINEL;
  if (!CHECK(a != NULL)) {
    return;
  }
  CHECK_STATUS(dlm_client_semaphore(a, S("p"), 0, 1000, 0, 0, NULL, NULL, NULL, &l),
               DLM_ERR_INVALID_ARGUMENT);
  CHECK_CONTAINS(client_error(a), "at least 1 permit");
  CHECK_STATUS(dlm_client_semaphore(a, S("p"), 1, 0, 0, 0, NULL, NULL, NULL, &l),
               DLM_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(dlm_client_read_lock(a, S("p"), 1000, 0, 8, NULL, NULL, NULL, &l),
               DLM_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(dlm_client_write_lock(a, "", 0, 1000, 0, 0, NULL, NULL, NULL, &l),
               DLM_ERR_INVALID_ARGUMENT);
  CHECK(l == SENTINEL);
  CHECK_STATUS(dlm_client_semaphore(NULL, S("p"), 1, 1000, 0, 0, NULL, NULL, NULL, &l),
               DLM_ERR_NULL_PARAMETER);
  CHECK_STATUS(dlm_client_read_lock(a, S("p"), 1000, 0, 0, NULL, NULL, NULL, NULL),
               DLM_ERR_NULL_PARAMETER);
  CHECK_STATUS(dlm_client_write_lock(a, NULL, 3, 1000, 0, 0, NULL, NULL, NULL, &l),
               DLM_ERR_NULL_PARAMETER);
  CHECK(l == SENTINEL);
  dlm_client_free(a);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s ADDR\n", argv[0]);
    return 2;
  }
  addr = argv[1];
  permits_are_counted();
  readers_share_and_writers_are_not_starved();
  auto_renewed_hold_and_test_lock();
  invalid_arguments();
  return checks_done("semaphores");
}
