/*
 * libdlm across a cluster's failover: a client given the members (an
 * unreachable address first) finds the leader, holds an auto-renewed lock
 * while the runner kills that leader, and keeps it: extended through the
 * new leader by its token, never reported lost, released normally.
 *
 * Usage: failover LIST LEADER_ADDR
 * Prints "held TOKEN" once the lock is held, then reads "go NEW_LEADER"
 * on stdin (the runner writes it once the old leader is dead).
 */
#define _POSIX_C_SOURCE 200809L

#include <stdatomic.h>

#include "check.h"

/* An election on a loaded machine: an upper bound, never waited out. */
#define LONG_MS 60000u

static atomic_int lost_calls;

static void on_lost(void *userdata) {
  (void)userdata;
  atomic_fetch_add(&lost_calls, 1);
}

static void current_server(const dlm_client *c, char *buf, size_t len) {
  size_t n = 0;
  if (!CHECK_OK(dlm_client_server(c, buf, len, &n))) {
    buf[0] = '\0';
  }
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: failover LIST LEADER_ADDR\n");
    return 2;
  }
  atomic_init(&lost_calls, 0);
  char list[1024];
  /* Port 1 on loopback: nobody listens there. */
  snprintf(list, sizeof list, "127.0.0.1:1,%s", argv[1]);
  dlm_options *opts = NULL;
  REQUIRE_OK(dlm_options_new(&opts));
  REQUIRE_OK(dlm_options_set_io_timeout_ms(opts, LONG_MS));
  dlm_client *c = NULL;
  REQUIRE_OK(dlm_client_new(list, strlen(list), opts, &c));
  dlm_options_free(opts);

  char server[256];
  current_server(c, server, sizeof server);
  CHECK(strcmp(server, argv[2]) == 0);

  dlm_lock *l = NULL;
  REQUIRE_OK(dlm_client_lock(c, S("c-resource"), 12000, 0, DLM_LOCK_AUTO_RENEW, NULL, on_lost,
                             NULL, &l));
  uint64_t token = 0;
  CHECK_OK(dlm_lock_token(l, &token));
  CHECK(token > 0);
  printf("held %llu\n", (unsigned long long)token);
  fflush(stdout);

  char line[512] = {0};
  char new_leader[256] = {0};
  CHECK(fgets(line, sizeof line, stdin) != NULL);
  CHECK(sscanf(line, "go %255s", new_leader) == 1);

  /* The old leader is dead: an extension confirmed from now on went
   * through the new one. */
  uint64_t remaining = 0;
  CHECK_OK(dlm_lock_remaining_ms(l, &remaining));
  uint64_t before = now_ms() + remaining;
  uint64_t deadline = now_ms() + LONG_MS;
  for (;;) {
    CHECK_OK(dlm_lock_remaining_ms(l, &remaining));
    if (now_ms() + remaining > before + 1000 || now_ms() > deadline) {
      break;
    }
    sleep_ms(20);
  }
  CHECK(now_ms() + remaining > before + 1000);
  bool lost = true;
  CHECK_OK(dlm_lock_is_lost(l, &lost));
  CHECK(!lost);
  CHECK(atomic_load(&lost_calls) == 0);
  uint64_t same = 0;
  CHECK_OK(dlm_lock_token(l, &same));
  CHECK(same == token);
  current_server(c, server, sizeof server);
  CHECK(strcmp(server, new_leader) == 0);

  /* Values go through the new leader too. */
  uint64_t revision = 0;
  CHECK_OK(dlm_client_put(c, S("c-after"), S("v"), 60000, &revision));
  char value[8];
  size_t value_len = 0;
  CHECK_OK(dlm_client_get(c, S("c-after"), value, sizeof value, &value_len, NULL));
  CHECK(value_len == 1 && value[0] == 'v');

  CHECK_OK(dlm_lock_release(l));
  dlm_lock_free(l);
  dlm_lock_state state = DLM_LOCK_MINE;
  CHECK_OK(dlm_client_test_lock(c, S("c-resource"), &state, NULL, NULL));
  CHECK(state == DLM_LOCK_FREE);
  dlm_client_free(c);
  return checks_done("failover");
}
