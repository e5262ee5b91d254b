/*
 * lock_and_share: the shape of a libdlm program, to copy.
 *
 * It connects to a dlm server, takes the lock "nightly-report" (waiting up
 * to 10 s in the server's fair queue, renewed in the background), hands
 * the lock's fencing token to the work it protects, shares a value through
 * the server's key/value store, reads it back and erases it, and releases
 * the lock.
 *
 * Build (see ffi/libdlm/README.md):
 *   cc -std=c11 lock_and_share.c $(pkg-config --cflags --libs dlm) -o lock_and_share
 * Run:
 *   ./lock_and_share [HOST:PORT]        (default 127.0.0.1:37373)
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <dlm.h>

/* Prints what went wrong: the status's description, then what libdlm kept
 * for this thread beyond it, if anything (e.g. "server unavailable:
 * Connection refused (os error 111)"). */
static void report(const char *what, dlm_status status, const dlm_client *client) {
  char detail[256] = "";
  size_t len = 0;
  if (client != NULL) {
    /* On BUFFER_TOO_SMALL nothing is copied; 256 bytes is plenty here. */
    dlm_client_last_error(client, detail, sizeof detail, &len);
  }
  fprintf(stderr, "%s: %s%s%s\n", what, dlm_status_string(status), detail[0] ? ": " : "", detail);
}

/* Runs on libdlm's renewal thread if the lock is lost (the server was
 * unreachable until the lock expired): stop the protected work. */
static void on_lost(void *userdata) {
  atomic_int *lost = userdata;
  atomic_store(lost, 1);
}

/* Reads a value of any size: ask, then allocate what libdlm says. */
static uint8_t *get_value(const dlm_client *client, const char *name, size_t *len) {
  size_t need = 0;
  dlm_status s = dlm_client_get(client, name, strlen(name), NULL, 0, &need, NULL);
  if (s != DLM_OK && s != DLM_ERR_BUFFER_TOO_SMALL) {
    report("get", s, client);
    return NULL;
  }
  uint8_t *buf = malloc(need > 0 ? need : 1);
  if (buf == NULL) {
    return NULL;
  }
  s = dlm_client_get(client, name, strlen(name), buf, need, len, NULL);
  if (s != DLM_OK) { /* e.g. it changed size meanwhile: ask again */
    report("get", s, client);
    free(buf);
    return NULL;
  }
  return buf;
}

int main(int argc, char **argv) {
  const char *addr = argc > 1 ? argv[1] : "127.0.0.1:37373";
  static const char lock_name[] = "nightly-report";
  static const char key[] = "report-status";
  static const char status[] = "running";
  static atomic_int lost;
  dlm_options *opts = NULL;
  dlm_client *client = NULL;
  dlm_lock *lock = NULL;
  uint64_t token = 0;
  uint8_t *value = NULL;
  size_t len = 0;
  int exit_code = 1;
  dlm_status s;

  /* Options: defaults, plus how long to wait for the TCP connection. */
  s = dlm_options_new(&opts);
  if (s != DLM_OK) {
    report("options", s, NULL);
    return 1;
  }
  dlm_options_set_connect_timeout_ms(opts, 2000);

  s = dlm_client_new(addr, strlen(addr), opts, &client);
  dlm_options_free(opts); /* the client keeps its own copy */
  if (s != DLM_OK) {
    report("connect", s, NULL); /* no client yet, so no message */
    return 1;
  }

  /* Lock for 30 s, waiting up to 10 s, renewed every 10 s until released. */
  s = dlm_client_lock(client, lock_name, strlen(lock_name), 30000, 10000,
                      DLM_LOCK_AUTO_RENEW, NULL, on_lost, &lost, &lock);
  if (s == DLM_ERR_TIMEOUT) {
    fprintf(stderr, "someone else holds %s; try later\n", lock_name);
    goto out;
  }
  if (s != DLM_OK) {
    report("lock", s, client);
    goto out;
  }

  /* Pass the fencing token to whatever the lock protects, so that it can
   * refuse a holder whose lock expired meanwhile. */
  dlm_lock_token(lock, &token);
  printf("holding %s with token %llu\n", lock_name, (unsigned long long)token);

  /* Share a value for 5 minutes; the server stores it encoded. */
  s = dlm_client_put(client, key, strlen(key), status,
                     strlen(status), 300000, NULL);
  if (s != DLM_OK) {
    report("put", s, client);
    goto out;
  }
  value = get_value(client, key, &len);
  if (value == NULL) {
    goto out;
  }
  printf("%s = %.*s\n", key, (int)len, (const char *)value);
  free(value);

  /* The value belongs to this client's owner ID (random unless set with
   * dlm_options_set_client_id): erase it, or it blocks the next run's put
   * until it expires. */
  s = dlm_client_erase(client, key, strlen(key));
  if (s != DLM_OK) {
    report("erase", s, client);
    goto out;
  }

  if (atomic_load(&lost)) {
    fprintf(stderr, "lost the lock while working\n");
    goto out;
  }
  s = dlm_lock_release(lock);
  if (s != DLM_OK) { /* DLM_ERR_LOCK_LOST: it had expired before */
    char detail[256] = "";
    size_t n = 0;
    dlm_lock_last_error(lock, detail, sizeof detail, &n);
    fprintf(stderr, "release: %s%s%s\n", dlm_status_string(s), detail[0] ? ": " : "", detail);
    goto out;
  }
  printf("released %s\n", lock_name);
  exit_code = 0;

out:
  dlm_lock_free(lock); /* NULL is fine; releases if still held */
  dlm_client_free(client);
  return exit_code;
}
