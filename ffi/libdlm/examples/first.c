#include <stdio.h>
#include <string.h>
#include <dlm.h>

int main(int argc, char **argv) {
  const char *addr = argc > 1 ? argv[1] : "127.0.0.1:37373";
  dlm_client *client = NULL;
  dlm_lock *lock = NULL;
  dlm_status s = dlm_client_new(addr, strlen(addr), NULL, &client);
  if (s != DLM_OK) {
    fprintf(stderr, "connect: %s\n", dlm_status_string(s));
    return 1;
  }
  /* 30 s TTL, wait up to 10 s in the server's queue, renew in the background. */
  s = dlm_client_lock(client, "backup", 6, 30000, 10000,
                      DLM_LOCK_AUTO_RENEW, NULL, NULL, NULL, &lock);
  if (s != DLM_OK) {
    char why[256] = ""; /* what libdlm adds to the status, if anything */
    size_t n = 0;
    dlm_client_last_error(client, why, sizeof why, &n);
    fprintf(stderr, "lock: %s%s%s\n", dlm_status_string(s), why[0] ? ": " : "", why);
    dlm_client_free(client);
    return 1;
  }
  uint64_t token = 0;
  dlm_lock_token(lock, &token); /* hand it to whatever the lock protects */
  printf("holding backup with fencing token %llu\n", (unsigned long long)token);
  /* ... the work ... */
  s = dlm_lock_release(lock); /* DLM_ERR_LOCK_LOST if it had expired */
  dlm_lock_free(lock);
  dlm_client_free(client);
  return s == DLM_OK ? 0 : 1;
}
