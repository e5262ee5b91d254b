/*
 * Auto-renewal through libdlm's C ABI, and a server that goes away: a lock
 * renewed in the background outlives its TTL; once the server is stopped
 * (SIGTERM to its pid), renewal fails, the lost callback runs on libdlm's
 * thread, and every call reports DLM_ERR_UNAVAILABLE.
 *
 * Usage: renew ADDR SERVER_PID
 */
#define _POSIX_C_SOURCE 200809L

#include <signal.h>
#include <stdatomic.h>
#include <sys/types.h>

#include "check.h"

#define SENTINEL ((void *)(uintptr_t)0x5eed)

struct lost_flag {
  atomic_int calls;
};

static void on_lost(void *userdata) {
  struct lost_flag *f = userdata;
  atomic_fetch_add(&f->calls, 1);
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s ADDR SERVER_PID\n", argv[0]);
    return 2;
  }
  const char *addr = argv[1];
  pid_t server = (pid_t)atol(argv[2]);
  struct lost_flag lost_flag;
  atomic_init(&lost_flag.calls, 0);
  dlm_options *o = NULL;
  dlm_client *a = NULL;
  dlm_client *b = connect_as(addr, "renew-b");
  dlm_lock *l = NULL;
  dlm_lock *other = SENTINEL;
  bool lost = true;
  uint64_t u = 0;

  REQUIRE_OK(dlm_options_new(&o));
  CHECK_OK(dlm_options_set_client_id(o, S("renew-a")));
  CHECK_OK(dlm_options_set_connect_timeout_ms(o, 200));
  CHECK_OK(dlm_options_set_io_timeout_ms(o, 1000));
  REQUIRE_OK(dlm_client_new(addr, strlen(addr), o, &a));
  CHECK(b != NULL);

  /* Renewed every third of the TTL: 300 ms of slack per renewal. */
  REQUIRE_OK(dlm_client_lock(a, S("renewed"), 900, 0, DLM_LOCK_AUTO_RENEW, NULL, on_lost,
                             &lost_flag, &l));
  sleep_ms(2000); /* more than two TTLs */
  CHECK_OK(dlm_lock_is_lost(l, &lost));
  CHECK(!lost);
  CHECK_OK(dlm_lock_remaining_ms(l, &u));
  CHECK(u > 0 && u <= 900);
  CHECK(atomic_load(&lost_flag.calls) == 0);
  CHECK_STATUS(dlm_client_lock(b, S("renewed"), 1000, 0, 0, NULL, NULL, NULL, &other),
               DLM_ERR_NOT_OWNER);

  /* The server goes away: renewals fail until the lock must have expired,
   * then the callback runs, once. */
  CHECK(kill(server, SIGTERM) == 0);
  uint64_t deadline = now_ms() + 5000;
  while (atomic_load(&lost_flag.calls) == 0 && now_ms() < deadline) {
    sleep_ms(10);
  }
  CHECK(atomic_load(&lost_flag.calls) == 1);
  CHECK_OK(dlm_lock_is_lost(l, &lost));
  CHECK(lost);
  CHECK_OK(dlm_lock_remaining_ms(l, &u));
  CHECK(u == 0);
  CHECK_STATUS(dlm_lock_extend(l, 1000), DLM_ERR_LOCK_LOST);
  sleep_ms(100);
  CHECK(atomic_load(&lost_flag.calls) == 1);

  /* Every call that needs the server now says it is unavailable. */
  char buf[256];
  size_t n = 0;
  CHECK_STATUS(dlm_client_server_version(a, buf, sizeof buf, &n), DLM_ERR_UNAVAILABLE);
  CHECK_CONTAINS(client_error(a), "refused");
  CHECK_STATUS(dlm_client_put(a, S("k"), S("v"), 1000, NULL), DLM_ERR_UNAVAILABLE);
  CHECK_STATUS(dlm_client_lock(a, S("x"), 1000, 0, 0, NULL, NULL, NULL, &other),
               DLM_ERR_UNAVAILABLE);
  CHECK(other == SENTINEL);
  CHECK_STATUS(dlm_lock_release(l), DLM_ERR_UNAVAILABLE);
  CHECK_CONTAINS(lock_error(l), "refused");
  dlm_client *c = SENTINEL;
  CHECK_STATUS(dlm_client_new(addr, strlen(addr), o, &c), DLM_ERR_UNAVAILABLE);
  CHECK(c == SENTINEL);

  dlm_lock_free(l);
  dlm_options_free(o);
  dlm_client_free(a);
  dlm_client_free(b);
  return checks_done("renew");
}
