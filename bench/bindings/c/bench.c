/*
 * libdlm against hiredis: the same closed-loop workloads over loopback, one
 * client (one connection) per worker thread, alternating dlm and Redis.
 * The contract (environment in, JSON lines out) is bench/bindings/README.md.
 *
 *   lock: uncontended lock+unlock, each worker on its own name.
 *         dlm:   dlm_client_lock (TTL 30 s, no wait), dlm_lock_release
 *         Redis: SET key token NX PX 30000, then EVALSHA of a Lua
 *                compare-and-delete (the single-instance recipe)
 *   kv:   put+get of a 32-byte value, each worker on its own key.
 *         dlm:   dlm_client_put (TTL 300 s), dlm_client_get
 *         Redis: SET key value PX 300000, GET key
 *
 * One operation is one cycle (lock+unlock, put+get); the latencies are a
 * cycle's.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <dlm.h>
#include <hiredis.h>

#define VALUE "0123456789abcdef0123456789abcdef"
#define UNLOCK_SCRIPT                                                                          \
  "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) "          \
  "else return 0 end"

enum client_kind { DLM, REDIS };
enum workload { LOCK, KV };

static const char *dlm_addr, *redis_host, *run_id;
static int redis_port;
static char unlock_sha[64];

static void die(const char *what, const char *why) {
  fprintf(stderr, "bench-c: %s: %s\n", what, why);
  exit(1);
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Per-cycle latencies in microseconds, growing as needed. */
struct samples {
  uint32_t *us;
  size_t n, cap;
};

static void record(struct samples *s, uint64_t ns) {
  if (s->n == s->cap) {
    s->cap = s->cap ? s->cap * 2 : 65536;
    s->us = realloc(s->us, s->cap * sizeof *s->us);
    if (s->us == NULL) {
      die("memory", "out of memory");
    }
  }
  uint64_t us = ns / 1000;
  s->us[s->n++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
}

struct worker {
  pthread_t thread;
  int index, workers;
  enum client_kind kind;
  enum workload workload;
  dlm_client *dlm;
  redisContext *redis;
  struct samples samples;
};

/* Shared by a run's workers: a start line and a stop flag. */
static pthread_barrier_t ready;
static atomic_int stop;

static void dlm_fail(const char *what, dlm_status s, const dlm_client *c) {
  char why[256] = "";
  size_t n = 0;
  if (c != NULL) {
    dlm_client_last_error(c, why, sizeof why, &n);
  }
  fprintf(stderr, "bench-c: %s: %s %s\n", what, dlm_status_string(s), why);
  exit(1);
}

static void redis_expect(redisReply *r, redisContext *c, int type, const char *what) {
  if (r == NULL) {
    die(what, c->errstr);
  }
  if ((int)r->type != type) {
    die(what, r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
  }
}

static void cycle_dlm(struct worker *w, const char *name, size_t name_len, uint64_t i) {
  (void)i;
  if (w->workload == LOCK) {
    dlm_lock *l = NULL;
    dlm_status s = dlm_client_lock(w->dlm, name, name_len, 30000, 0, 0, NULL, NULL, NULL, &l);
    if (s != DLM_OK) {
      dlm_fail("lock", s, w->dlm);
    }
    s = dlm_lock_release(l);
    if (s != DLM_OK) {
      dlm_fail("release", s, w->dlm);
    }
    dlm_lock_free(l);
  } else {
    dlm_status s =
        dlm_client_put(w->dlm, name, name_len, VALUE, sizeof VALUE - 1, 300000, NULL);
    if (s != DLM_OK) {
      dlm_fail("put", s, w->dlm);
    }
    char buf[64];
    size_t n = 0;
    s = dlm_client_get(w->dlm, name, name_len, buf, sizeof buf, &n, NULL);
    if (s != DLM_OK || n != sizeof VALUE - 1) {
      dlm_fail("get", s, w->dlm);
    }
  }
}

static void cycle_redis(struct worker *w, const char *name, size_t name_len, uint64_t i) {
  redisReply *r;
  if (w->workload == LOCK) {
    char token[64];
    int tn = snprintf(token, sizeof token, "%s-%d-%" PRIu64, run_id, w->index, i);
    r = redisCommand(w->redis, "SET %b %b NX PX 30000", name, name_len, token, (size_t)tn);
    redis_expect(r, w->redis, REDIS_REPLY_STATUS, "SET NX");
    freeReplyObject(r);
    r = redisCommand(w->redis, "EVALSHA %s 1 %b %b", unlock_sha, name, name_len, token,
                     (size_t)tn);
    redis_expect(r, w->redis, REDIS_REPLY_INTEGER, "EVALSHA");
    if (r->integer != 1) {
      die("EVALSHA", "the lock was not ours");
    }
    freeReplyObject(r);
  } else {
    r = redisCommand(w->redis, "SET %b %b PX 300000", name, name_len, VALUE, sizeof VALUE - 1);
    redis_expect(r, w->redis, REDIS_REPLY_STATUS, "SET");
    freeReplyObject(r);
    r = redisCommand(w->redis, "GET %b", name, name_len);
    redis_expect(r, w->redis, REDIS_REPLY_STRING, "GET");
    freeReplyObject(r);
  }
}

static void *work(void *arg) {
  struct worker *w = arg;
  char name[128];
  /* Its own key per measurement: a dlm entry belongs to the client (owner
   * ID) that wrote it, and the next measurement's clients are new ones. */
  int len = snprintf(name, sizeof name, "bench:%s:c:%s:%s:%d:%d", run_id,
                     w->workload == LOCK ? "lock" : "kv", w->kind == DLM ? "dlm" : "redis",
                     w->workers, w->index);
  void (*cycle)(struct worker *, const char *, size_t, uint64_t) =
      w->kind == DLM ? cycle_dlm : cycle_redis;
  cycle(w, name, (size_t)len, 0); /* warm: the first request of a connection */
  pthread_barrier_wait(&ready);
  for (uint64_t i = 1; !atomic_load_explicit(&stop, memory_order_relaxed); i++) {
    uint64_t t0 = now_ns();
    cycle(w, name, (size_t)len, i);
    record(&w->samples, now_ns() - t0);
  }
  return NULL;
}

static int cmp_u32(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return (x > y) - (x < y);
}

static void connect_worker(struct worker *w) {
  if (w->kind == DLM) {
    dlm_status s = dlm_client_new(dlm_addr, strlen(dlm_addr), NULL, &w->dlm);
    if (s != DLM_OK) {
      dlm_fail("connect", s, NULL);
    }
  } else {
    w->redis = redisConnect(redis_host, redis_port);
    if (w->redis == NULL || w->redis->err) {
      die("redis connect", w->redis ? w->redis->errstr : "no memory");
    }
    struct timeval tv = {10, 0};
    redisSetTimeout(w->redis, tv);
  }
}

static void measure(enum client_kind kind, enum workload workload, int workers, double seconds) {
  struct worker *ws = calloc((size_t)workers, sizeof *ws);
  if (ws == NULL) {
    die("memory", "out of memory");
  }
  atomic_store(&stop, 0);
  pthread_barrier_init(&ready, NULL, (unsigned)workers + 1);
  for (int i = 0; i < workers; i++) {
    ws[i].index = i;
    ws[i].workers = workers;
    ws[i].kind = kind;
    ws[i].workload = workload;
    connect_worker(&ws[i]);
    if (pthread_create(&ws[i].thread, NULL, work, &ws[i]) != 0) {
      die("pthread_create", strerror(errno));
    }
  }
  pthread_barrier_wait(&ready);
  uint64_t start = now_ns();
  struct timespec pause = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
  while (nanosleep(&pause, &pause) != 0 && errno == EINTR) {
  }
  atomic_store(&stop, 1);
  size_t total = 0;
  for (int i = 0; i < workers; i++) {
    pthread_join(ws[i].thread, NULL);
    total += ws[i].samples.n;
  }
  double elapsed = (double)(now_ns() - start) / 1e9;
  uint32_t *all = malloc((total ? total : 1) * sizeof *all);
  if (all == NULL) {
    die("memory", "out of memory");
  }
  size_t at = 0;
  for (int i = 0; i < workers; i++) {
    memcpy(all + at, ws[i].samples.us, ws[i].samples.n * sizeof *all);
    at += ws[i].samples.n;
    free(ws[i].samples.us);
    if (kind == DLM) {
      dlm_client_free(ws[i].dlm);
    } else {
      redisFree(ws[i].redis);
    }
  }
  qsort(all, total, sizeof *all, cmp_u32);
  uint32_t p50 = total ? all[total / 2] : 0, p99 = total ? all[total * 99 / 100] : 0;
  printf("{\"binding\":\"c\",\"client\":\"%s\",\"workload\":\"%s\",\"workers\":%d,"
         "\"ops_per_s\":%.0f,\"p50_us\":%u,\"p99_us\":%u,\"ops\":%zu,\"seconds\":%.3f}\n",
         kind == DLM ? "libdlm" : "hiredis", workload == LOCK ? "lock" : "kv", workers,
         (double)total / elapsed, p50, p99, total, elapsed);
  fflush(stdout);
  free(all);
  free(ws);
  pthread_barrier_destroy(&ready);
}

static const char *env(const char *name, const char *fallback) {
  const char *v = getenv(name);
  return v != NULL && v[0] != '\0' ? v : fallback;
}

int main(void) {
  dlm_addr = env("DLM_BENCH_DLM", "127.0.0.1:37373");
  run_id = env("DLM_BENCH_RUN", "run");
  static char host[256];
  const char *redis = env("DLM_BENCH_REDIS", "127.0.0.1:6379");
  const char *colon = strrchr(redis, ':');
  if (colon == NULL || (size_t)(colon - redis) >= sizeof host) {
    die("DLM_BENCH_REDIS", "not host:port");
  }
  memcpy(host, redis, (size_t)(colon - redis));
  redis_host = host;
  redis_port = atoi(colon + 1);
  double seconds = atof(env("DLM_BENCH_SECONDS", "3"));
  char workers_list[256], workloads_list[256];
  snprintf(workers_list, sizeof workers_list, "%s", env("DLM_BENCH_WORKERS", "16 64"));
  snprintf(workloads_list, sizeof workloads_list, "%s", env("DLM_BENCH_WORKLOADS", "lock kv"));

  /* The unlock script, loaded once. */
  redisContext *c = redisConnect(redis_host, redis_port);
  if (c == NULL || c->err) {
    die("redis connect", c ? c->errstr : "no memory");
  }
  redisReply *r = redisCommand(c, "SCRIPT LOAD %s", UNLOCK_SCRIPT);
  redis_expect(r, c, REDIS_REPLY_STRING, "SCRIPT LOAD");
  snprintf(unlock_sha, sizeof unlock_sha, "%s", r->str);
  freeReplyObject(r);
  redisFree(c);

  char *save_wl = NULL;
  for (char *wl = strtok_r(workloads_list, " ,", &save_wl); wl != NULL;
       wl = strtok_r(NULL, " ,", &save_wl)) {
    enum workload workload;
    if (strcmp(wl, "lock") == 0) {
      workload = LOCK;
    } else if (strcmp(wl, "kv") == 0) {
      workload = KV;
    } else {
      die("DLM_BENCH_WORKLOADS", wl);
    }
    char list[256];
    snprintf(list, sizeof list, "%s", workers_list);
    char *save_n = NULL;
    for (char *n = strtok_r(list, " ,", &save_n); n != NULL; n = strtok_r(NULL, " ,", &save_n)) {
      int workers = atoi(n);
      if (workers <= 0) {
        die("DLM_BENCH_WORKERS", n);
      }
      measure(DLM, workload, workers, seconds);
      measure(REDIS, workload, workers, seconds);
    }
  }
  return 0;
}
