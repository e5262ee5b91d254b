/*
 * A tiny harness for libdlm's C tests: each CHECK counts one check and
 * reports a failure with its file and line; `checks_done` prints the tally
 * (the Rust runner, ffi/tests/c_programs.rs, adds them up) and gives the
 * exit code. Checks run on the main thread only; worker threads hand their
 * results back to it.
 */
#ifndef DLM_TEST_CHECK_H
#define DLM_TEST_CHECK_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dlm.h"

static unsigned checks_run;
static unsigned checks_failed;

static inline int check_true(int ok, const char *what, const char *file, int line) {
  checks_run++;
  if (!ok) {
    checks_failed++;
    fprintf(stderr, "%s:%d: check failed: %s\n", file, line, what);
  }
  return ok;
}

static inline int check_status(dlm_status got, dlm_status want, const char *call,
                               const char *file, int line) {
  checks_run++;
  if (got != want) {
    checks_failed++;
    fprintf(stderr, "%s:%d: %s\n  returned %u (%s), expected %u (%s)\n", file, line, call,
            (unsigned)got, dlm_status_string(got), (unsigned)want, dlm_status_string(want));
    return 0;
  }
  return 1;
}

static inline int check_contains(const char *haystack, const char *needle, const char *what,
                                 const char *file, int line) {
  checks_run++;
  if (haystack == NULL || strstr(haystack, needle) == NULL) {
    checks_failed++;
    fprintf(stderr, "%s:%d: %s = \"%s\" does not contain \"%s\"\n", file, line, what,
            haystack ? haystack : "(null)", needle);
    return 0;
  }
  return 1;
}

#define CHECK(cond) check_true((cond) ? 1 : 0, #cond, __FILE__, __LINE__)
#define CHECK_STATUS(call, want) check_status((call), (want), #call, __FILE__, __LINE__)
#define CHECK_OK(call) CHECK_STATUS(call, DLM_OK)
#define CHECK_CONTAINS(s, needle) check_contains((s), (needle), #s, __FILE__, __LINE__)

/* Aborts the program: for a setup step the rest cannot do without. */
#define REQUIRE_OK(call)                                                                  \
  do {                                                                                    \
    if (!CHECK_OK(call)) {                                                                \
      return checks_done(__FILE__);                                                       \
    }                                                                                     \
  } while (0)

/* Prints the tally in the form the runner parses; the exit code. */
static inline int checks_done(const char *program) {
  printf("%s: %u checks, %u failed\n", program, checks_run, checks_failed);
  fflush(stdout);
  return checks_failed == 0 && checks_run > 0 ? 0 : 1;
}

/* Byte-string arguments: a literal and its length (without the NUL). */
#define S(lit) lit, (sizeof(lit) - 1)

/* Milliseconds on a monotonic clock. */
static inline uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static inline void sleep_ms(unsigned ms) {
  struct timespec ts;
  ts.tv_sec = ms / 1000;
  ts.tv_nsec = (long)(ms % 1000) * 1000000L;
  nanosleep(&ts, NULL);
}

/* The calling thread's last error on a client, in a per-thread buffer. */
static inline const char *client_error(const dlm_client *c) {
  static _Thread_local char buf[512];
  size_t n = 0;
  if (dlm_client_last_error(c, buf, sizeof buf, &n) != DLM_OK) {
    return "(dlm_client_last_error failed)";
  }
  return buf;
}

/* The calling thread's last error on a lock. */
static inline const char *lock_error(const dlm_lock *l) {
  static _Thread_local char buf[512];
  size_t n = 0;
  if (dlm_lock_last_error(l, buf, sizeof buf, &n) != DLM_OK) {
    return "(dlm_lock_last_error failed)";
  }
  return buf;
}

/* A client with a fixed owner ID (NULL: random), or NULL on failure. */
static inline dlm_client *connect_as(const char *addr, const char *id) {
  dlm_options *o = NULL;
  dlm_client *c = NULL;
  if (dlm_options_new(&o) != DLM_OK) {
    return NULL;
  }
  if (id != NULL && dlm_options_set_client_id(o, id, strlen(id)) != DLM_OK) {
    dlm_options_free(o);
    return NULL;
  }
  dlm_status s = dlm_client_new(addr, strlen(addr), o, &c);
  dlm_options_free(o);
  if (s != DLM_OK) {
    fprintf(stderr, "connect %s: %s\n", addr, dlm_status_string(s));
    return NULL;
  }
  return c;
}

#endif /* DLM_TEST_CHECK_H */
