/*
 * Session-bound locks through libdlm's C ABI (dlm_client_session,
 * dlm_session_acquire): a lock bound to a session is released when the
 * session's connection dies (a child process holding it is killed) or the
 * session is closed, a lock-delay keeps everyone out until it has passed,
 * release by token, calls on a closed session, and the argument checks.
 * Every wait is on the server's state (a lock that waits in its queue, or
 * its statistics), never a sleep that hopes.
 *
 * Usage: sessions ADDR
 */
#define _POSIX_C_SOURCE 200809L

#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

#define SENTINEL ((void *)(uintptr_t)0x5eed)

static const char *addr;

/* The value of statistic `name` in the server's statistics (0 if none). */
static uint64_t stat_of(const dlm_client *c, const char *name) {
  char json[8192];
  char key[64];
  size_t n = 0;
  if (dlm_client_stats_json(c, json, sizeof json, &n) != DLM_OK) {
    return 0;
  }
  snprintf(key, sizeof key, "\"%s\":", name);
  const char *at = strstr(json, key);
  return at ? strtoull(at + strlen(key), NULL, 10) : 0;
}

/* Waits (up to 10 s) until statistic `name` reaches `want`. */
static int wait_for_stat(const dlm_client *c, const char *name, uint64_t want) {
  for (int i = 0; i < 1000; i++) {
    if (stat_of(c, name) >= want) {
      return 1;
    }
    sleep_ms(10);
  }
  return 0;
}

static const char *session_error(const dlm_session *s) {
  static char buf[512];
  size_t n = 0;
  if (dlm_session_last_error(s, buf, sizeof buf, &n) != DLM_OK) {
    return "(dlm_session_last_error failed)";
  }
  return buf;
}

/*
 * A child process opens a session, takes "ephemeral" bound to it, tells
 * the parent its token through a pipe and waits to be killed. Killed, its
 * connection dies with it, and the server releases the lock: a waiter in
 * the parent gets it, with a greater token. Forked before this process
 * has any client (no threads to lose in the child).
 */
static void released_when_the_connection_dies(void) {
  int fds[2];
  if (!CHECK(pipe(fds) == 0)) {
    return;
  }
  pid_t child = fork();
  if (child == 0) {
    close(fds[0]);
    uint64_t token = 0;
    dlm_client *c = connect_as(addr, "session-child");
    dlm_session *s = NULL;
    dlm_session_lock *l = NULL;
    if (c != NULL && dlm_client_session(c, 30000, NULL, NULL, &s) == DLM_OK &&
        dlm_session_acquire(s, S("ephemeral"), 60000, 0, 0, &l) == DLM_OK) {
      dlm_session_lock_token(l, &token);
    }
    if (write(fds[1], &token, sizeof token) != (ssize_t)sizeof token) {
      _exit(2);
    }
    /* Held until killed: nothing here releases it. */
    for (;;) {
      pause();
    }
  }
  close(fds[1]);
  if (!CHECK(child > 0)) {
    close(fds[0]);
    return;
  }
  uint64_t token = 0;
  CHECK(read(fds[0], &token, sizeof token) == (ssize_t)sizeof token);
  close(fds[0]);
  CHECK(token > 0);

  dlm_client *other = connect_as(addr, "session-other");
  dlm_lock *l = NULL;
  if (CHECK(other != NULL)) {
    /* Held: the session keeps it although its TTL is 60 s. */
    dlm_lock *none = SENTINEL;
    CHECK_STATUS(dlm_client_lock(other, S("ephemeral"), 5000, 0, 0, NULL, NULL, NULL, &none),
                 DLM_ERR_NOT_OWNER);
    CHECK(none == SENTINEL);
  }
  kill(child, SIGKILL);
  int status = 0;
  CHECK(waitpid(child, &status, 0) == child && WIFSIGNALED(status));
  if (other != NULL) {
    /* Well within the lock's 60 s TTL: granted because the session ended. */
    if (CHECK_OK(dlm_client_lock(other, S("ephemeral"), 5000, 20000, 0, NULL, NULL, NULL, &l))) {
      uint64_t t = 0;
      CHECK_OK(dlm_lock_token(l, &t));
      CHECK(t > token);
      CHECK_OK(dlm_lock_release(l));
    }
    CHECK(stat_of(other, "SessionClosed") >= 1);
  }
  dlm_lock_free(l);
  dlm_client_free(other);
}

static void closed_session_releases_and_lock_delay_keeps_others_out(void) {
  dlm_client *a = connect_as(addr, "session-a");
  dlm_client *b = connect_as(addr, "session-b");
  dlm_session *s = NULL;
  dlm_session_lock *plain = NULL, *delayed = NULL;
  dlm_session_lock *none = SENTINEL;
  dlm_lock *got = NULL, *got2 = NULL;
  if (!CHECK(a != NULL && b != NULL) ||
      !CHECK_OK(dlm_client_session(a, 5000, NULL, NULL, &s))) {
    goto out;
  }
  uint64_t closed_before = stat_of(b, "SessionClosed");
  bool lost = true;
  CHECK_OK(dlm_session_is_lost(s, &lost));
  CHECK(!lost);
  if (!CHECK_OK(dlm_session_acquire(s, S("plain"), 60000, 0, 0, &plain)) ||
      !CHECK_OK(dlm_session_acquire(s, S("delayed"), 60000, 0, 1500, &delayed))) {
    goto out;
  }
  uint64_t t_plain = 0, t_delayed = 0;
  CHECK_OK(dlm_session_lock_token(plain, &t_plain));
  CHECK_OK(dlm_session_lock_token(delayed, &t_delayed));
  CHECK(t_plain > 0 && t_delayed > t_plain);
  /* Held against others. */
  dlm_lock *no = SENTINEL;
  CHECK_STATUS(dlm_client_lock(b, S("plain"), 5000, 0, 0, NULL, NULL, NULL, &no),
               DLM_ERR_NOT_OWNER);
  CHECK(no == SENTINEL);

  /* Ending the session releases "plain" at once and closes "delayed". */
  CHECK_OK(dlm_session_close(s));
  CHECK_OK(dlm_session_close(s)); /* idempotent */
  CHECK_OK(dlm_session_is_lost(s, &lost));
  CHECK(lost);
  CHECK_STATUS(dlm_session_acquire(s, S("more"), 1000, 0, 0, &none), DLM_ERR_LOCK_LOST);
  CHECK_CONTAINS(session_error(s), "closed");
  CHECK(none == SENTINEL);
  CHECK_STATUS(dlm_session_lock_release(plain), DLM_ERR_LOCK_LOST);
  {
    char why[256];
    size_t n = 0;
    CHECK_OK(dlm_session_lock_last_error(plain, why, sizeof why, &n));
    CHECK_CONTAINS(why, "lost or closed");
  }
  CHECK_OK(dlm_session_lock_release(plain)); /* idempotent */
  CHECK(wait_for_stat(b, "SessionClosed", closed_before + 1));

  if (CHECK_OK(dlm_client_lock(b, S("plain"), 5000, 0, 0, NULL, NULL, NULL, &got))) {
    uint64_t t = 0;
    CHECK_OK(dlm_lock_token(got, &t));
    CHECK(t > t_delayed);
  }
  /* Closed for its lock-delay: nobody may take it, its holder is gone. */
  dlm_lock_state state = DLM_LOCK_FREE;
  uint64_t token = 0, left = 0;
  CHECK_OK(dlm_client_test_lock(b, S("delayed"), &state, &token, &left));
  CHECK(state == DLM_LOCK_TAKEN);
  CHECK(left > 0 && left <= 1500);
  CHECK_STATUS(dlm_client_lock(b, S("delayed"), 5000, 0, 0, NULL, NULL, NULL, &no),
               DLM_ERR_NOT_OWNER);
  /* A waiter gets it once the delay has passed, with a greater token. */
  uint64_t start = now_ms();
  if (CHECK_OK(dlm_client_lock(b, S("delayed"), 5000, 20000, 0, NULL, NULL, NULL, &got2))) {
    uint64_t t = 0;
    CHECK_OK(dlm_lock_token(got2, &t));
    CHECK(t > t_delayed);
    /* The delay left when asked has passed (the server's clock, less a
     * generous allowance for this one's). */
    CHECK(now_ms() - start + 200 >= left);
  }
out:
  dlm_lock_free(got);
  dlm_lock_free(got2);
  dlm_session_lock_free(plain);
  dlm_session_lock_free(delayed);
  dlm_session_free(s);
  dlm_client_free(a);
  dlm_client_free(b);
}

static void release_by_token_and_free(void) {
  dlm_client *a = connect_as(addr, "session-r");
  dlm_client *b = connect_as(addr, "session-s");
  dlm_session *s = NULL;
  dlm_session_lock *l = NULL;
  dlm_lock *got = NULL;
  if (!CHECK(a != NULL && b != NULL) ||
      !CHECK_OK(dlm_client_session(a, 5000, NULL, NULL, &s))) {
    goto out;
  }
  if (CHECK_OK(dlm_session_acquire(s, S("token"), 60000, 0, 0, &l))) {
    CHECK_OK(dlm_session_lock_release(l));
    CHECK_OK(dlm_session_lock_release(l));
    if (CHECK_OK(dlm_client_lock(b, S("token"), 5000, 0, 0, NULL, NULL, NULL, &got))) {
      CHECK_OK(dlm_lock_release(got));
    }
    dlm_lock_free(got);
    got = NULL;
  }
  dlm_session_lock_free(l);
  l = NULL;
  /* Freeing a held one releases it (the session stays). */
  if (CHECK_OK(dlm_session_acquire(s, S("freed"), 60000, 0, 0, &l))) {
    dlm_session_lock_free(l);
    l = NULL;
    if (CHECK_OK(dlm_client_lock(b, S("freed"), 5000, 0, 0, NULL, NULL, NULL, &got))) {
      CHECK_OK(dlm_lock_release(got));
    }
  }
  bool lost = true;
  CHECK_OK(dlm_session_is_lost(s, &lost));
  CHECK(!lost);
out:
  dlm_lock_free(got);
  dlm_session_lock_free(l);
  dlm_session_free(s);
  dlm_client_free(a);
  dlm_client_free(b);
}

static void arguments_are_checked(void) {
  dlm_client *a = connect_as(addr, "session-args");
  dlm_session *s = NULL;
  dlm_session *none = SENTINEL;
  dlm_session_lock *l = SENTINEL;
  if (!CHECK(a != NULL)) {
    return;
  }
  CHECK_STATUS(dlm_client_session(NULL, 1000, NULL, NULL, &s), DLM_ERR_NULL_PARAMETER);
  CHECK_STATUS(dlm_client_session(a, 1000, NULL, NULL, NULL), DLM_ERR_NULL_PARAMETER);
  CHECK_STATUS(dlm_client_session(a, 0, NULL, NULL, &none), DLM_ERR_INVALID_ARGUMENT);
  CHECK(none == SENTINEL);
  if (CHECK_OK(dlm_client_session(a, 5000, NULL, NULL, &s))) {
    CHECK_STATUS(dlm_session_acquire(NULL, S("x"), 1000, 0, 0, &l), DLM_ERR_NULL_PARAMETER);
    CHECK_STATUS(dlm_session_acquire(s, S("x"), 1000, 0, 0, NULL), DLM_ERR_NULL_PARAMETER);
    CHECK_STATUS(dlm_session_acquire(s, "", 0, 1000, 0, 0, &l), DLM_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(dlm_session_acquire(s, NULL, 3, 1000, 0, 0, &l), DLM_ERR_NULL_PARAMETER);
    CHECK_STATUS(dlm_session_acquire(s, S("x"), 0, 0, 0, &l), DLM_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(dlm_session_acquire(s, S("x"), 1000, 0, 60001, &l), DLM_ERR_INVALID_ARGUMENT);
    CHECK_CONTAINS(session_error(s), "60 s");
    CHECK_STATUS(dlm_session_acquire(s, "\xff", 1, 1000, 0, 0, &l), DLM_ERR_INVALID_ARGUMENT);
    CHECK(l == SENTINEL);
  }
  bool b = false;
  uint64_t t = 0;
  CHECK_STATUS(dlm_session_is_lost(NULL, &b), DLM_ERR_NULL_PARAMETER);
  CHECK_STATUS(dlm_session_is_lost(s, NULL), DLM_ERR_NULL_PARAMETER);
  CHECK_STATUS(dlm_session_close(NULL), DLM_ERR_NULL_PARAMETER);
  CHECK_STATUS(dlm_session_lock_token(NULL, &t), DLM_ERR_NULL_PARAMETER);
  CHECK_STATUS(dlm_session_lock_release(NULL), DLM_ERR_NULL_PARAMETER);
  CHECK_STATUS(dlm_session_lock_last_error(NULL, NULL, 0, NULL), DLM_ERR_NULL_PARAMETER);
  CHECK_STATUS(dlm_session_last_error(NULL, NULL, 0, NULL), DLM_ERR_NULL_PARAMETER);
  CHECK_STATUS(dlm_watch_last_error(NULL, NULL, 0, NULL), DLM_ERR_NULL_PARAMETER);
  dlm_session_free(NULL);
  dlm_session_lock_free(NULL);
  dlm_session_free(s);
  dlm_client_free(a);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: sessions ADDR\n");
    return 2;
  }
  addr = argv[1];
  released_when_the_connection_dies();
  closed_session_releases_and_lock_delay_keeps_others_out();
  release_by_token_and_free();
  arguments_are_checked();
  return checks_done("sessions");
}
