/*
 * Locks through libdlm's C ABI: acquire, NOT_OWNER, test_lock, waiting
 * (TIMEOUT and a hand-over), cancelling a wait from another thread,
 * extend/release and LOCK_LOST after expiry, unlocking by name and token,
 * invalid arguments, auto-renewal, and the per-thread last error.
 *
 * Usage: locks ADDR
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

/* Waits (up to 5 s) until the server's statistics contain `needle`, e.g.
 * "\"AWait\":1," once a waiter is queued. */
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

static void acquire_and_contend(void) {
  dlm_client *a = connect_as(addr, "locks-a");
  dlm_client *b = connect_as(addr, "locks-b");
  dlm_lock *l = NULL;
  dlm_lock *other = SENTINEL;
  uint64_t u = 0;
  bool lost = true;
  if (!CHECK(a != NULL && b != NULL)) {
    return;
  }

  if (!CHECK_OK(dlm_client_lock(a, S("res"), 5000, 0, 0, NULL, NULL, NULL, &l))) {
    return;
  }
  uint64_t first = token_of(l);
  CHECK(first > 0);
  CHECK_OK(dlm_lock_remaining_ms(l, &u));
  CHECK(u > 4000 && u <= 5000);
  CHECK_OK(dlm_lock_is_lost(l, &lost));
  CHECK(!lost);

  /* Another owner: one attempt fails at once, out-parameter untouched. */
  CHECK_STATUS(dlm_client_lock(b, S("res"), 1000, 0, 0, NULL, NULL, NULL, &other),
               DLM_ERR_NOT_OWNER);
  CHECK(other == SENTINEL);
  CHECK(strcmp(client_error(b), "") == 0); /* the status says it all */

  /* test_lock from both sides, and of a free name. */
  dlm_lock_state state = DLM_LOCK_FREE;
  uint64_t token = 7, left = 0;
  CHECK_OK(dlm_client_test_lock(b, S("res"), &state, &token, &left));
  CHECK(state == DLM_LOCK_TAKEN && token == 7 && left > 0 && left <= 5000);
  CHECK_OK(dlm_client_test_lock(a, S("res"), &state, &token, &left));
  CHECK(state == DLM_LOCK_MINE && token == first && left > 0 && left <= 5000);
  CHECK_OK(dlm_client_test_lock(a, S("res"), &state, NULL, NULL)); /* optional outs */
  CHECK(state == DLM_LOCK_MINE);
  token = 7;
  left = 7;
  CHECK_OK(dlm_client_test_lock(a, S("free"), &state, &token, &left));
  CHECK(state == DLM_LOCK_FREE && token == 7 && left == 7);

  /* Waiting runs out: TIMEOUT after about the wait. */
  uint64_t start = now_ms();
  CHECK_STATUS(dlm_client_lock(b, S("res"), 1000, 200, 0, NULL, NULL, NULL, &other),
               DLM_ERR_TIMEOUT);
  uint64_t waited = now_ms() - start;
  CHECK(waited >= 180 && waited < 3000);
  CHECK(other == SENTINEL);

  /* Unlocking by name: another's lock, and nothing at all. */
  CHECK_STATUS(dlm_client_unlock(b, S("res"), 0), DLM_ERR_NOT_OWNER);
  CHECK_STATUS(dlm_client_unlock(a, S("nothing-here"), 0), DLM_ERR_NOT_FOUND);

  /* Extending: a new TTL from now; zero is invalid. */
  CHECK_OK(dlm_lock_extend(l, 20000));
  CHECK_OK(dlm_lock_remaining_ms(l, &u));
  CHECK(u > 19000 && u <= 20000);
  CHECK_STATUS(dlm_lock_extend(l, 0), DLM_ERR_INVALID_ARGUMENT);
  CHECK_CONTAINS(lock_error(l), "TTL");
  CHECK(token_of(l) == first);

  /* Release is idempotent; a released lock cannot be extended. */
  CHECK_OK(dlm_lock_release(l));
  CHECK_OK(dlm_lock_release(l));
  CHECK_STATUS(dlm_lock_extend(l, 1000), DLM_ERR_LOCK_LOST);
  CHECK_OK(dlm_lock_remaining_ms(l, &u));
  CHECK(u == 0);
  dlm_lock_free(l);

  /* The next grant's fencing token is greater. */
  l = NULL;
  if (CHECK_OK(dlm_client_lock(b, S("res"), 1000, 0, 0, NULL, NULL, NULL, &l))) {
    CHECK(token_of(l) > first);
    dlm_lock_free(l); /* releases */
  }
  CHECK_OK(dlm_client_test_lock(a, S("res"), &state, NULL, NULL));
  CHECK(state == DLM_LOCK_FREE);

  dlm_client_free(a);
  dlm_client_free(b);
}

static void unlock_by_token(void) {
  dlm_client *a = connect_as(addr, "token-a");
  dlm_lock *l = NULL;
  CHECK(a != NULL);
  if (!CHECK_OK(dlm_client_lock(a, S("tok"), 5000, 0, 0, NULL, NULL, NULL, &l))) {
    return;
  }
  uint64_t t = token_of(l);
  CHECK_STATUS(dlm_client_unlock(a, S("tok"), t + 1), DLM_ERR_NOT_OWNER);
  CHECK_OK(dlm_client_unlock(a, S("tok"), t));
  CHECK_STATUS(dlm_client_unlock(a, S("tok"), t), DLM_ERR_NOT_FOUND);
  /* The handle learns that its lock is gone. */
  CHECK_STATUS(dlm_lock_release(l), DLM_ERR_LOCK_LOST);
  bool lost = false;
  CHECK_OK(dlm_lock_is_lost(l, &lost));
  CHECK(lost);
  dlm_lock_free(l);
  dlm_client_free(a);
}

struct lost_call {
  int calls;
  pthread_t thread;
};

static void record_lost(void *userdata) {
  struct lost_call *c = userdata;
  c->calls++;
  c->thread = pthread_self();
}

static void expiry_loses_the_lock(void) {
  dlm_client *a = connect_as(addr, "expiry-a");
  dlm_client *b = connect_as(addr, "expiry-b");
  dlm_lock *l = NULL;
  uint64_t u = 99;
  bool lost = false;
  struct lost_call lost_call = {0, pthread_self()};
  CHECK(a != NULL && b != NULL);
  if (!CHECK_OK(dlm_client_lock(a, S("short"), 100, 0, 0, NULL, record_lost, &lost_call, &l))) {
    return;
  }
  /* Until the server has let it expire (b sees it free). */
  dlm_lock_state seen = DLM_LOCK_TAKEN;
  uint64_t until = now_ms() + 5000;
  while (dlm_client_test_lock(b, S("short"), &seen, NULL, NULL) == DLM_OK &&
         seen != DLM_LOCK_FREE && now_ms() < until) {
    sleep_ms(10);
  }
  CHECK(seen == DLM_LOCK_FREE);
  CHECK_STATUS(dlm_lock_extend(l, 10000), DLM_ERR_LOCK_LOST);
  /* The extension that found the lock gone ran the callback, here. */
  CHECK(lost_call.calls == 1 && pthread_equal(lost_call.thread, pthread_self()));
  CHECK_OK(dlm_lock_is_lost(l, &lost));
  CHECK(lost);
  CHECK_OK(dlm_lock_remaining_ms(l, &u));
  CHECK(u == 0);
  CHECK_STATUS(dlm_lock_extend(l, 10000), DLM_ERR_LOCK_LOST); /* never resurrected */
  CHECK_STATUS(dlm_lock_release(l), DLM_ERR_LOCK_LOST);
  CHECK_OK(dlm_lock_release(l));
  CHECK(lost_call.calls == 1); /* once */
  dlm_lock_state state = DLM_LOCK_TAKEN;
  CHECK_OK(dlm_client_test_lock(b, S("short"), &state, NULL, NULL));
  CHECK(state == DLM_LOCK_FREE);
  dlm_lock_free(l);
  dlm_client_free(a);
  dlm_client_free(b);
}

static void invalid_arguments(void) {
  dlm_client *a = connect_as(addr, "invalid-a");
  dlm_lock *l = SENTINEL;
  CHECK(a != NULL);
  CHECK_STATUS(dlm_client_lock(a, S(""), 1000, 0, 0, NULL, NULL, NULL, &l),
               DLM_ERR_INVALID_ARGUMENT);
  CHECK_CONTAINS(client_error(a), "empty");
  CHECK_STATUS(dlm_client_lock(a, S("ttl"), 0, 0, 0, NULL, NULL, NULL, &l),
               DLM_ERR_INVALID_ARGUMENT);
  CHECK_CONTAINS(client_error(a), "TTL");
  CHECK_STATUS(dlm_client_lock(a, S("ttl"), 0, 1000, 0, NULL, NULL, NULL, &l),
               DLM_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(dlm_client_lock(a, S("bad\xff"), 1000, 0, 0, NULL, NULL, NULL, &l),
               DLM_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(dlm_client_lock(a, S("\xe2\x82"), 1000, 0, 0, NULL, NULL, NULL, &l),
               DLM_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(dlm_client_lock(a, S("flags"), 1000, 0, 2, NULL, NULL, NULL, &l),
               DLM_ERR_INVALID_ARGUMENT);
  CHECK_CONTAINS(client_error(a), "unknown flags");
  CHECK_STATUS(dlm_client_lock(a, S("flags"), 1000, 0, 0x80000001u, NULL, NULL, NULL, &l),
               DLM_ERR_INVALID_ARGUMENT);
  CHECK(l == SENTINEL);
  /* Past the server's limits (3543 s without an identity). */
  CHECK_STATUS(dlm_client_lock(a, S("long"), 3600000, 0, 0, NULL, NULL, NULL, &l),
               DLM_ERR_BAD_REQUEST);
  CHECK_STATUS(dlm_client_lock(a, S("long"), UINT64_MAX, 0, 0, NULL, NULL, NULL, &l),
               DLM_ERR_BAD_REQUEST);
  CHECK_STATUS(dlm_client_lock(a, S("long"), 1000, UINT64_MAX, 0, NULL, NULL, NULL, &l),
               DLM_ERR_BAD_REQUEST);
  CHECK(l == SENTINEL);
  /* Names, other than empty, are any UTF-8. */
  dlm_lock *ok = NULL;
  if (CHECK_OK(dlm_client_lock(a, S("\xe2\x82\xac/\xf0\x9f\x94\x92 \"quoted\"\n"), 1000, 0, 0,
                               NULL, NULL, NULL, &ok))) {
    CHECK_OK(dlm_lock_release(ok));
    dlm_lock_free(ok);
  }
  dlm_client_free(a);
}

struct waiter {
  dlm_client *client;
  const char *name;
  size_t name_len;
  uint64_t wait_ms;
  dlm_cancel *cancel;
  /* Results, read by the main thread after the join. */
  dlm_status status;
  uint64_t token;
  uint64_t elapsed_ms;
  char error[256];
};

static void *wait_for_lock(void *arg) {
  struct waiter *w = arg;
  dlm_lock *l = NULL;
  uint64_t start = now_ms();
  w->status = dlm_client_lock(w->client, w->name, w->name_len, 5000, w->wait_ms,
                              0, w->cancel, NULL, NULL, &l);
  w->elapsed_ms = now_ms() - start;
  snprintf(w->error, sizeof w->error, "%s", client_error(w->client));
  if (w->status == DLM_OK) {
    dlm_lock_token(l, &w->token);
    dlm_lock_free(l);
  }
  return NULL;
}

static void waiting_hand_over(void) {
  dlm_client *a = connect_as(addr, "wait-a");
  dlm_client *b = connect_as(addr, "wait-b");
  dlm_lock *l = NULL;
  pthread_t t;
  CHECK(a != NULL && b != NULL);
  if (!CHECK_OK(dlm_client_lock(a, S("queue"), 5000, 0, 0, NULL, NULL, NULL, &l))) {
    return;
  }
  struct waiter w = {b, "queue", 5, 10000, NULL, DLM_ERR_PANIC, 0, 0, ""};
  CHECK(pthread_create(&t, NULL, wait_for_lock, &w) == 0);
  CHECK(wait_for_stats(a, "\"AWait\":1,")); /* b is queued */
  uint64_t first = token_of(l);
  CHECK_OK(dlm_lock_release(l));
  pthread_join(t, NULL);
  CHECK_STATUS(w.status, DLM_OK);
  CHECK(w.token > first);
  CHECK(w.elapsed_ms < 5000);
  dlm_lock_free(l);
  dlm_client_free(a);
  dlm_client_free(b);
}

static void cancel_from_another_thread(void) {
  dlm_client *a = connect_as(addr, "cancel-a");
  dlm_client *b = connect_as(addr, "cancel-b");
  dlm_lock *l = NULL;
  dlm_lock *none = SENTINEL;
  dlm_cancel *cancel = NULL;
  pthread_t t;
  CHECK(a != NULL && b != NULL);
  if (!CHECK_OK(dlm_client_lock(a, S("busy"), 10000, 0, 0, NULL, NULL, NULL, &l))) {
    return;
  }
  CHECK_OK(dlm_cancel_new(&cancel));
  struct waiter w = {b, "busy", 4, 30000, cancel, DLM_ERR_PANIC, 0, 0, ""};
  CHECK(pthread_create(&t, NULL, wait_for_lock, &w) == 0);
  CHECK(wait_for_stats(a, "\"AWait\":1,")); /* b is queued */
  uint64_t triggered = now_ms();
  CHECK_OK(dlm_cancel_trigger(cancel));
  pthread_join(t, NULL);
  uint64_t took = now_ms() - triggered;
  CHECK_STATUS(w.status, DLM_ERR_CANCELLED);
  CHECK(took < 1000);

  /* The server dropped the waiter (its connection was closed). */
  CHECK(wait_for_stats(a, "\"AWait\":0,"));

  /* A triggered handle cancels the next wait at once. */
  uint64_t start = now_ms();
  CHECK_STATUS(dlm_client_lock(b, S("busy"), 1000, 5000, 0, cancel, NULL, NULL, &none),
               DLM_ERR_CANCELLED);
  CHECK(now_ms() - start < 1000);
  CHECK(none == SENTINEL);
  dlm_cancel_free(cancel);

  /* An untriggered handle does not disturb a wait that succeeds, nor a
   * free lock. */
  CHECK_OK(dlm_cancel_new(&cancel));
  CHECK_OK(dlm_lock_release(l));
  dlm_lock_free(l);
  l = NULL;
  if (CHECK_OK(dlm_client_lock(b, S("busy"), 1000, 1000, 0, cancel, NULL, NULL, &l))) {
    CHECK_OK(dlm_lock_release(l));
    dlm_lock_free(l);
  }
  dlm_cancel_free(cancel);
  dlm_client_free(a);
  dlm_client_free(b);
}

struct failer {
  const dlm_client *client;
  pthread_barrier_t *barrier;
  int which;
  char message[256];
};

static void *fail_differently(void *arg) {
  struct failer *f = arg;
  dlm_lock *l = NULL;
  if (f->which == 0) {
    dlm_client_lock(f->client, S(""), 1000, 0, 0, NULL, NULL, NULL, &l);
  } else {
    dlm_client_lock(f->client, S("per-thread"), 0, 0, 0, NULL, NULL, NULL, &l);
  }
  /* Both threads have failed before either reads its message. */
  pthread_barrier_wait(f->barrier);
  snprintf(f->message, sizeof f->message, "%s", client_error(f->client));
  return NULL;
}

static void last_error_is_per_thread(void) {
  dlm_client *a = connect_as(addr, "per-thread-a");
  dlm_client *b = connect_as(addr, "per-thread-b");
  dlm_lock *l = NULL;
  pthread_barrier_t barrier;
  pthread_t t[2];
  struct failer f[2];
  CHECK(a != NULL && b != NULL);
  CHECK_OK(dlm_client_lock(a, S("per-thread"), 5000, 0, 0, NULL, NULL, NULL, &l));
  CHECK(pthread_barrier_init(&barrier, NULL, 2) == 0);
  for (int i = 0; i < 2; i++) {
    f[i].client = b;
    f[i].barrier = &barrier;
    f[i].which = i;
    f[i].message[0] = '\0';
    CHECK(pthread_create(&t[i], NULL, fail_differently, &f[i]) == 0);
  }
  pthread_join(t[0], NULL);
  pthread_join(t[1], NULL);
  pthread_barrier_destroy(&barrier);
  CHECK_CONTAINS(f[0].message, "empty");
  CHECK(strstr(f[0].message, "TTL") == NULL);
  CHECK_CONTAINS(f[1].message, "TTL");
  CHECK(strstr(f[1].message, "empty") == NULL);
  /* This thread made no call on b that failed. */
  CHECK(strcmp(client_error(b), "") == 0);
  /* A lock keeps its own messages, per thread too. */
  CHECK(strcmp(lock_error(l), "") == 0);
  CHECK_STATUS(dlm_lock_extend(l, 0), DLM_ERR_INVALID_ARGUMENT);
  CHECK_CONTAINS(lock_error(l), "TTL");
  /* A later success clears it. */
  CHECK_OK(dlm_lock_extend(l, 5000));
  CHECK(strcmp(lock_error(l), "") == 0);
  CHECK_STATUS(dlm_lock_extend(l, 0), DLM_ERR_INVALID_ARGUMENT);
  /* Too small a buffer: the needed size, less the NUL. */
  char tiny[4];
  size_t n = 0;
  CHECK_STATUS(dlm_lock_last_error(l, tiny, sizeof tiny, &n), DLM_ERR_BUFFER_TOO_SMALL);
  CHECK(n == strlen(lock_error(l)));
  /* Even an empty message needs its NUL. */
  CHECK_STATUS(dlm_client_last_error(a, tiny, 0, &n), DLM_ERR_BUFFER_TOO_SMALL);
  CHECK(n == 0);
  CHECK_OK(dlm_client_last_error(a, tiny, 1, &n));
  CHECK(n == 0 && tiny[0] == '\0');
  dlm_lock_free(l);
  dlm_client_free(a);
  dlm_client_free(b);
}

/* (renew.c checks that renewal keeps a lock past its TTL.) */
static void freeing_an_auto_renewed_lock_releases_it(void) {
  dlm_client *a = connect_as(addr, "renew-a");
  dlm_client *b = connect_as(addr, "renew-b");
  dlm_lock *l = NULL;
  dlm_lock *other = SENTINEL;
  CHECK(a != NULL && b != NULL);
  if (!CHECK_OK(dlm_client_lock(a, S("renewed"), 900, 0, DLM_LOCK_AUTO_RENEW, NULL, NULL, NULL,
                                &l))) {
    return;
  }
  CHECK_STATUS(dlm_client_lock(b, S("renewed"), 1000, 0, 0, NULL, NULL, NULL, &other),
               DLM_ERR_NOT_OWNER);
  /* Freeing stops the renewal and releases. */
  dlm_lock_free(l);
  other = NULL;
  if (CHECK_OK(dlm_client_lock(b, S("renewed"), 1000, 0, 0, NULL, NULL, NULL, &other))) {
    dlm_lock_free(other);
  }
  dlm_client_free(a);
  dlm_client_free(b);
}

/* Names are bytes to C: one holding NUL is locked, renewed and released
 * like any other (it once panicked naming the renewal thread after the
 * grant, leaving the lock held until its TTL). */
static void a_name_with_nul_is_an_ordinary_name(void) {
  dlm_client *a = connect_as(addr, "nul-a");
  dlm_client *b = connect_as(addr, "nul-b");
  dlm_lock *l = NULL;
  dlm_lock_state state = DLM_LOCK_FREE;
  CHECK(a != NULL && b != NULL);
  if (CHECK_OK(dlm_client_lock(a, S("nul\0name"), 900, 0, DLM_LOCK_AUTO_RENEW, NULL, NULL, NULL,
                               &l))) {
    CHECK(token_of(l) > 0);
    CHECK_OK(dlm_client_test_lock(b, S("nul\0name"), &state, NULL, NULL));
    CHECK(state == DLM_LOCK_TAKEN);
    CHECK_OK(dlm_client_test_lock(b, S("nul"), &state, NULL, NULL));
    CHECK(state == DLM_LOCK_FREE);
    CHECK_OK(dlm_lock_release(l));
    dlm_lock_free(l);
  }
  CHECK_OK(dlm_client_test_lock(b, S("nul\0name"), &state, NULL, NULL));
  CHECK(state == DLM_LOCK_FREE);
  dlm_client_free(a);
  dlm_client_free(b);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s ADDR\n", argv[0]);
    return 2;
  }
  addr = argv[1];
  acquire_and_contend();
  unlock_by_token();
  expiry_loses_the_lock();
  invalid_arguments();
  waiting_hand_over();
  cancel_from_another_thread();
  last_error_is_per_thread();
  freeing_an_auto_renewed_lock_releases_it();
  a_name_with_nul_is_an_ordinary_name();
  return checks_done("locks");
}
