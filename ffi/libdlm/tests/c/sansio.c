/*
 * libdlm without its sockets: dlm_wire writes request lines and reads the
 * answers, dlm_lease keeps a held lock's lease, and this program does all
 * the I/O itself over a plain POSIX socket, as a program with its own event
 * loop (or Go's package dlm) does. Against a real server: locks, tokens,
 * refusals, extensions, auto-renewal, loss, release, values (with
 * compare-and-set), pipelining, semaphores and read/write locks, and the
 * argument checks.
 *
 * Usage: sansio ADDR
 */
#define _POSIX_C_SOURCE 200809L

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "check.h"

/* One connection: the socket and what was read past the last line. */
struct conn {
  int fd;
  char in[65536];
  size_t have;
};

static int conn_open(struct conn *c, const char *addr) {
  char host[64];
  const char *colon = strrchr(addr, ':');
  if (colon == NULL || (size_t)(colon - addr) >= sizeof host) {
    return -1;
  }
  memcpy(host, addr, (size_t)(colon - addr));
  host[colon - addr] = '\0';
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)atoi(colon + 1));
  if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
    return -1;
  }
  c->have = 0;
  c->fd = socket(AF_INET, SOCK_STREAM, 0);
  if (c->fd < 0) {
    return -1;
  }
  struct timeval tv = {5, 0}; /* no check may hang the program */
  setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return connect(c->fd, (struct sockaddr *)&sa, sizeof sa);
}

static bool send_all(struct conn *c, const char *buf, size_t n) {
  while (n > 0) {
    ssize_t w = write(c->fd, buf, n);
    if (w <= 0) {
      return false;
    }
    buf += w;
    n -= (size_t)w;
  }
  return true;
}

/* Reads one answer line (with its '\n') into `line`; its length, or 0. */
static size_t recv_line(struct conn *c, char *line, size_t cap) {
  for (;;) {
    char *nl = memchr(c->in, '\n', c->have);
    if (nl != NULL) {
      size_t n = (size_t)(nl - c->in) + 1;
      if (n > cap) {
        return 0;
      }
      memcpy(line, c->in, n);
      memmove(c->in, c->in + n, c->have - n);
      c->have -= n;
      return n;
    }
    if (c->have == sizeof c->in) {
      return 0;
    }
    ssize_t r = read(c->fd, c->in + c->have, sizeof c->in - c->have);
    if (r <= 0) {
      return 0;
    }
    c->have += (size_t)r;
  }
}

static dlm_request req(dlm_call call, const char *name, uint64_t ttl_ms) {
  dlm_request r;
  memset(&r, 0, sizeof r);
  r.call = (uint32_t)call;
  r.name = name;
  r.name_len = name ? strlen(name) : 0;
  r.ttl_ms = ttl_ms;
  return r;
}

static char line[65536];
static size_t line_len;

/* Writes `r`'s line, sends it, reads the answer into `line`. */
static bool round_trip(struct conn *c, const dlm_wire *w, const dlm_request *r) {
  char out[4096];
  size_t n = 0;
  if (dlm_wire_write(w, r, out, sizeof out, &n) != DLM_OK || !send_all(c, out, n)) {
    return false;
  }
  line_len = recv_line(c, line, sizeof line);
  return line_len > 0;
}

/* Sends what the lease wants sent, if anything, and hands it the answer;
 * the status of dlm_lease_handle_response (DLM_OK if nothing was sent). */
static dlm_status lease_exchange(struct conn *c, dlm_lease *l, const dlm_wire *w,
                                 dlm_lease_action *action, dlm_lease_done *done) {
  char out[4096];
  size_t n = 0;
  *action = DLM_LEASE_SEND_NONE;
  dlm_status s = dlm_lease_poll_request(l, w, now_ms(), out, sizeof out, &n, action);
  if (s != DLM_OK || n == 0) {
    return s;
  }
  if (!send_all(c, out, n) || (line_len = recv_line(c, line, sizeof line)) == 0) {
    return dlm_lease_handle_failure(l, now_ms()) == DLM_OK ? DLM_ERR_UNAVAILABLE : DLM_ERR_PANIC;
  }
  return dlm_lease_handle_response(l, now_ms(), line, line_len, done);
}

/* The wire's last error, in a static buffer. */
static const char *wire_error(const dlm_wire *w) {
  static char buf[512];
  size_t n = 0;
  if (dlm_wire_last_error(w, buf, sizeof buf, &n) != DLM_OK) {
    return "(dlm_wire_last_error failed)";
  }
  return buf;
}

static dlm_wire *wire_as(const char *id) {
  dlm_options *o = NULL;
  dlm_wire *w = NULL;
  if (dlm_options_new(&o) != DLM_OK) {
    return NULL;
  }
  if (dlm_options_set_client_id(o, id, strlen(id)) != DLM_OK || dlm_wire_new(o, &w) != DLM_OK) {
    w = NULL;
  }
  dlm_options_free(o);
  return w;
}


/* The failover's last error (on NULL: dlm_failover_new's), in a static
 * buffer. */
static const char *failover_error(const dlm_failover *f) {
  static char buf[512];
  size_t n = 0;
  if (dlm_failover_last_error(f, buf, sizeof buf, &n) != DLM_OK) {
    return "(dlm_failover_last_error failed)";
  }
  return buf;
}

/* One attempt of `call` the way a host drives dlm_failover: a connection
 * where the failover says (after `refused` addresses that refuse it),
 * discovery, the call's line, the answer. The status of the last failover
 * call; *retry says whether the failover wants it sent again. `sent_line`
 * gets the line written. */
static dlm_status failover_attempt(dlm_failover *f, dlm_failover_call *call, const dlm_wire *w,
                                   struct conn *c, char *sent_line, size_t cap, bool *retry,
                                   unsigned *waits) {
  char addr[DLM_FAILOVER_ADDRESS_MAX + 1];
  dlm_failover_step step;
  for (;;) {
    dlm_status s = dlm_failover_poll_connect(f, call, now_ms(), addr, sizeof addr, &step);
    if (s != DLM_OK) {
      return s;
    }
    if (step.kind == DLM_FAILOVER_WAIT) {
      (*waits)++;
      uint64_t now = now_ms();
      sleep_ms(step.until_ms > now ? (unsigned)(step.until_ms - now) : 0);
      continue;
    }
    c->fd = -1;
    if (conn_open(c, addr) != 0) {
      if (c->fd >= 0) {
        close(c->fd);
      }
      s = dlm_failover_handle(f, call, step.epoch, DLM_OUTCOME_CONNECT_FAILED, NULL, 0, now_ms(),
                              retry);
      if (s != DLM_OK || !*retry) {
        return s;
      }
      continue;
    }
    bool ask = false;
    s = dlm_failover_connected(f, step.epoch, &ask);
    if (s != DLM_OK) {
      return s;
    }
    if (ask) {
      char q[512];
      size_t qn = 0;
      bool stay = false;
      s = dlm_failover_discovery_line(w, q, sizeof q, &qn);
      if (s != DLM_OK || !send_all(c, q, qn) || (line_len = recv_line(c, line, sizeof line)) == 0) {
        close(c->fd);
        return s != DLM_OK ? s : DLM_ERR_UNAVAILABLE;
      }
      s = dlm_failover_discovered(f, call, step.epoch, line, line_len, now_ms(), &stay);
      if (s != DLM_OK) {
        close(c->fd);
        return s;
      }
      if (!stay) {
        close(c->fd);
        continue;
      }
    }
    size_t n = 0;
    uint64_t left = 0;
    s = dlm_failover_call_write(call, w, now_ms(), sent_line, cap - 1, &n, &left);
    if (s != DLM_OK) {
      close(c->fd);
      return s;
    }
    sent_line[n] = '\0';
    if (!send_all(c, sent_line, n) || (line_len = recv_line(c, line, sizeof line)) == 0) {
      close(c->fd);
      return dlm_failover_handle(f, call, step.epoch, DLM_OUTCOME_CLOSED, NULL, 0, now_ms(), retry);
    }
    s = dlm_failover_handle(f, call, step.epoch, DLM_OUTCOME_ANSWERED, line, line_len, now_ms(),
                            retry);
    close(c->fd);
    return s;
  }
}

/* dlm_failover: dlm-core's failover machine driven over this program's
 * own sockets. */
static void failover_checks(const char *addr) {
  dlm_wire *w = wire_as("sansio-failover");
  uint8_t seed[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
  char list[256];
  char sent[4096];
  char buf[512];
  size_t n = 0;
  bool retry = true;
  unsigned waits = 0;
  struct conn c;
  dlm_answer ans;

  /* A list whose first member refuses connections: the next is tried at
   * once, asked who leads (a single server says so), and used. */
  snprintf(list, sizeof list, "127.0.0.1:1, %s", addr);
  dlm_failover *f = NULL;
  if (!CHECK_OK(dlm_failover_new(list, strlen(list), NULL, seed, &f))) {
    dlm_wire_free(w);
    return;
  }
  CHECK_OK(dlm_failover_server(f, buf, sizeof buf, &n));
  CHECK(strcmp(buf, "127.0.0.1:1") == 0);
  uint64_t epoch0 = 99;
  CHECK_OK(dlm_failover_epoch(f, &epoch0));
  dlm_request put = req(DLM_CALL_PUT, "sansio-fo", 60000);
  put.value = "once";
  put.value_len = 4;
  dlm_failover_call *call = NULL;
  CHECK_OK(dlm_failover_start(f, w, &put, now_ms(), 5000, &call));
  CHECK_OK(failover_attempt(f, call, w, &c, sent, sizeof sent, &retry, &waits));
  CHECK(!retry);
  CHECK(waits == 0);
  CHECK_OK(dlm_wire_read(w, &put, line, line_len, buf, sizeof buf, &ans));
  CHECK(ans.revision == 1);
  CHECK_OK(dlm_failover_server(f, buf, sizeof buf, &n));
  CHECK(strcmp(buf, addr) == 0);
  uint64_t epoch1 = 0;
  CHECK_OK(dlm_failover_epoch(f, &epoch1));
  CHECK(epoch1 != epoch0);
  /* The put carries a request ID. Its connection closing after it was
   * written: sent again with the same ID, and the server applies it once
   * (the same revision comes back). */
  CHECK_CONTAINS(sent, "\"RequestID\":\"");
  char first[4096];
  memcpy(first, sent, sizeof first);
  CHECK_OK(dlm_failover_handle(f, call, epoch1, DLM_OUTCOME_CLOSED, NULL, 0, now_ms(), &retry));
  CHECK(retry);
  CHECK_OK(failover_attempt(f, call, w, &c, sent, sizeof sent, &retry, &waits));
  CHECK(strcmp(first, sent) == 0);
  CHECK_OK(dlm_wire_read(w, &put, line, line_len, buf, sizeof buf, &ans));
  CHECK(ans.revision == 1);
  uint64_t left = 0;
  CHECK_OK(dlm_failover_call_remaining(call, now_ms(), &left));
  CHECK(left > 0 && left <= 5000);
  dlm_failover_call_free(call);

  /* A member's refusal to serve now is told apart from an answer. */
  CHECK_OK(dlm_failover_start(f, w, &put, now_ms(), 5000, &call));
  CHECK_OK(dlm_failover_handle(f, call, epoch1, DLM_OUTCOME_ANSWERED,
                               S("{\"Status\":\"NO\",\"Error\":\"no leader\"}\n"), now_ms(),
                               &retry));
  CHECK(retry);
  dlm_failover_call_free(call);

  /* A lock, then its release through the lease: the release carries the
   * grant's own ID (u.TOKEN), the same every time it is asked for. */
  dlm_request lock = req(DLM_CALL_LOCK, "sansio-fo-lock", 5000);
  uint64_t t0 = now_ms();
  CHECK_OK(dlm_failover_start(f, w, &lock, t0, 5000, &call));
  CHECK_OK(failover_attempt(f, call, w, &c, sent, sizeof sent, &retry, &waits));
  CHECK(strstr(sent, "RequestID") == NULL);
  dlm_failover_call_free(call);
  dlm_lease *l = NULL;
  if (CHECK_OK(dlm_lease_new(w, &lock, t0, now_ms(), line, line_len, &l))) {
    dlm_lease_info info;
    CHECK_OK(dlm_lease_inspect(l, now_ms(), &info));
    dlm_lease_action action = DLM_LEASE_SEND_EXTEND;
    CHECK_OK(dlm_failover_start_lease(f, l, w, now_ms(), 5000, &call, &action));
    CHECK(call == NULL && action == DLM_LEASE_SEND_NONE);
    bool queued = false;
    CHECK_OK(dlm_lease_release(l, now_ms(), &queued));
    CHECK(queued);
    CHECK_OK(dlm_failover_start_lease(f, l, w, now_ms(), 5000, &call, &action));
    CHECK(call != NULL && action == DLM_LEASE_SEND_RELEASE);
    CHECK_OK(failover_attempt(f, call, w, &c, sent, sizeof sent, &retry, &waits));
    char id[64];
    snprintf(id, sizeof id, "\"RequestID\":\"u.%llu\"", (unsigned long long)info.token);
    CHECK_CONTAINS(sent, id);
    dlm_lease_done done = DLM_LEASE_DONE_EXTENDED;
    CHECK_OK(dlm_lease_handle_response(l, now_ms(), line, line_len, &done));
    CHECK(done == DLM_LEASE_DONE_RELEASED);
    dlm_failover_call_free(call);
    dlm_lease_free(l);
  }

  /* A call that only connects. */
  CHECK_OK(dlm_failover_start_connect(f, now_ms(), 5000, &call));
  CHECK_STATUS(dlm_failover_call_write(call, w, now_ms(), sent, sizeof sent, &n, NULL),
               DLM_ERR_INVALID_ARGUMENT);
  dlm_failover_call_free(call);

  /* Argument checks. */
  char small[8];
  dlm_failover_step step;
  CHECK_OK(dlm_failover_start(f, w, &put, now_ms(), 5000, &call));
  CHECK_STATUS(dlm_failover_poll_connect(f, call, now_ms(), small, sizeof small, &step),
               DLM_ERR_BUFFER_TOO_SMALL);
  CHECK_STATUS(dlm_failover_handle(f, call, epoch1, 77, NULL, 0, now_ms(), &retry),
               DLM_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(dlm_failover_handle(f, call, epoch1, DLM_OUTCOME_ANSWERED, NULL, 0, now_ms(),
                                   &retry),
               DLM_ERR_PROTOCOL);
  CHECK_STATUS(dlm_failover_handle(NULL, call, epoch1, DLM_OUTCOME_CLOSED, NULL, 0, now_ms(),
                                   &retry),
               DLM_ERR_NULL_PARAMETER);
  CHECK_STATUS(dlm_failover_handle(f, NULL, epoch1, DLM_OUTCOME_CLOSED, NULL, 0, now_ms(), &retry),
               DLM_ERR_NULL_PARAMETER);
  CHECK_STATUS(dlm_failover_start(f, NULL, &put, now_ms(), 5000, &call), DLM_ERR_NULL_PARAMETER);
  CHECK_STATUS(dlm_failover_start(f, w, NULL, now_ms(), 5000, &call), DLM_ERR_NULL_PARAMETER);
  CHECK_STATUS(dlm_failover_epoch(f, NULL), DLM_ERR_NULL_PARAMETER);
  dlm_failover_call_free(call);
  dlm_failover_call_free(NULL);
  dlm_failover_free(f);
  dlm_failover_free(NULL);
  dlm_failover *bad = NULL;
  CHECK_STATUS(dlm_failover_new(S("127.0.0.1:1,nonsense"), NULL, seed, &bad),
               DLM_ERR_INVALID_ARGUMENT);
  CHECK(bad == NULL);
  CHECK_CONTAINS(failover_error(NULL), "host:port");
  CHECK_STATUS(dlm_failover_new(S(""), NULL, seed, &bad), DLM_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(dlm_failover_new(S("127.0.0.1:1"), NULL, NULL, &bad), DLM_ERR_NULL_PARAMETER);

  /* Nobody answers: connections pause (backoff) once each member had its
   * try, and the call gives up with DLM_ERR_UNAVAILABLE once its connect
   * rounds are spent, saying why. */
  dlm_failover_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.backoff_min_ms = 5;
  cfg.backoff_max_ms = 20;
  cfg.connect_rounds = 4;
  CHECK_OK(dlm_failover_new(S("127.0.0.1:1"), &cfg, seed, &f));
  CHECK_OK(dlm_failover_start(f, w, &put, now_ms(), 10000, &call));
  waits = 0;
  CHECK_STATUS(failover_attempt(f, call, w, &c, sent, sizeof sent, &retry, &waits),
               DLM_ERR_UNAVAILABLE);
  CHECK(waits >= 2);
  CHECK_CONTAINS(failover_error(f), "no server could be connected to");
  dlm_failover_call_free(call);
  dlm_failover_free(f);
  dlm_wire_free(w);
}

/* Semaphores and read/write locks on the wire: each acquisition is a
 * hold with its own token and lease, extended and released by it; the
 * request line carries Permits or Mode; a refusal, a size conflict and
 * the argument checks. */
static void shaped_checks(const char *addr) {
  struct conn ca, cb;
  dlm_wire *a = wire_as("sansio-sem-a");
  dlm_wire *b = wire_as("sansio-sem-b");
  char out[512];
  size_t n = 0;
  dlm_lease_info info;
  dlm_lease_action action;
  dlm_lease_done done;
  if (!CHECK(a != NULL && b != NULL) || !CHECK(conn_open(&ca, addr) == 0) ||
      !CHECK(conn_open(&cb, addr) == 0)) {
    return;
  }

  dlm_request sem = req(DLM_CALL_SEMAPHORE, "sansio-sem", 3000);
  sem.permits = 2;
  CHECK_OK(dlm_wire_write(a, &sem, out, sizeof out - 1, &n));
  out[n] = '\0';
  CHECK_CONTAINS(out, "\"Permits\":2");
  dlm_lease *h1 = NULL, *h2 = NULL, *none = NULL;
  uint64_t sent = now_ms();
  CHECK(round_trip(&ca, a, &sem));
  CHECK_OK(dlm_lease_new(a, &sem, sent, now_ms(), line, line_len, &h1));
  sent = now_ms();
  CHECK(round_trip(&ca, a, &sem));
  CHECK_OK(dlm_lease_new(a, &sem, sent, now_ms(), line, line_len, &h2));
  if (h1 == NULL || h2 == NULL) {
    goto out;
  }
  uint64_t t1 = 0, t2 = 0;
  CHECK_OK(dlm_lease_inspect(h1, now_ms(), &info));
  t1 = info.token;
  CHECK_OK(dlm_lease_inspect(h2, now_ms(), &info));
  t2 = info.token;
  CHECK(t1 > 0 && t2 > t1);

  /* Full for another owner; another size is a conflict. */
  sent = now_ms();
  CHECK(round_trip(&cb, b, &sem));
  CHECK_STATUS(dlm_lease_new(b, &sem, sent, now_ms(), line, line_len, &none), DLM_ERR_NOT_OWNER);
  dlm_request bigger = sem;
  bigger.permits = 3;
  CHECK(round_trip(&cb, b, &bigger));
  CHECK_STATUS(dlm_lease_new(b, &bigger, sent, now_ms(), line, line_len, &none),
               DLM_ERR_CONFLICT);
  CHECK_CONTAINS(wire_error(b), "semaphore of 2 permits");
  CHECK(none == NULL);
  /* An acquisition's answer is read by dlm_lease_new, not dlm_wire_read. */
  dlm_answer ans;
  CHECK_STATUS(dlm_wire_read(b, &bigger, line, line_len, NULL, 0, &ans), DLM_ERR_INVALID_ARGUMENT);

  /* The first hold is extended by its token (same token), the second is
   * released by its own; a permit is then free for b. */
  CHECK_OK(dlm_lease_extend(h1, now_ms(), 4000));
  CHECK_OK(lease_exchange(&ca, h1, a, &action, &done));
  CHECK(action == DLM_LEASE_SEND_EXTEND && done == DLM_LEASE_DONE_EXTENDED);
  CHECK_OK(dlm_lease_inspect(h1, now_ms(), &info));
  CHECK(info.token == t1 && info.ttl_ms == 4000);
  CHECK_OK(dlm_lease_release(h2, now_ms(), NULL));
  CHECK_OK(lease_exchange(&ca, h2, a, &action, &done));
  CHECK(action == DLM_LEASE_SEND_RELEASE && done == DLM_LEASE_DONE_RELEASED);
  dlm_lease *hb = NULL;
  sent = now_ms();
  CHECK(round_trip(&cb, b, &sem));
  if (CHECK_OK(dlm_lease_new(b, &sem, sent, now_ms(), line, line_len, &hb))) {
    CHECK_OK(dlm_lease_inspect(hb, now_ms(), &info));
    CHECK(info.token > t2);
    CHECK_OK(dlm_lease_release(hb, now_ms(), NULL));
    CHECK_OK(lease_exchange(&cb, hb, b, &action, &done));
  }
  dlm_lease_free(hb);
  CHECK_OK(dlm_lease_release(h1, now_ms(), NULL));
  CHECK_OK(lease_exchange(&ca, h1, a, &action, &done));

  /* Read/write: two readers, a writer refused; Mode on the wire. */
  dlm_request rd = req(DLM_CALL_READ_LOCK, "sansio-rw", 3000);
  dlm_request wr = req(DLM_CALL_WRITE_LOCK, "sansio-rw", 3000);
  CHECK_OK(dlm_wire_write(a, &wr, out, sizeof out - 1, &n));
  out[n] = '\0';
  CHECK_CONTAINS(out, "\"Mode\":\"Write\"");
  dlm_lease *ra = NULL, *rb = NULL;
  sent = now_ms();
  CHECK(round_trip(&ca, a, &rd));
  CHECK_OK(dlm_lease_new(a, &rd, sent, now_ms(), line, line_len, &ra));
  CHECK(round_trip(&cb, b, &rd));
  CHECK_OK(dlm_lease_new(b, &rd, sent, now_ms(), line, line_len, &rb));
  CHECK(round_trip(&cb, b, &wr));
  CHECK_STATUS(dlm_lease_new(b, &wr, sent, now_ms(), line, line_len, &none), DLM_ERR_NOT_OWNER);
  dlm_request semrw = req(DLM_CALL_SEMAPHORE, "sansio-rw", 3000);
  semrw.permits = 2;
  CHECK(round_trip(&cb, b, &semrw));
  CHECK_STATUS(dlm_lease_new(b, &semrw, sent, now_ms(), line, line_len, &none),
               DLM_ERR_CONFLICT);
  CHECK_CONTAINS(wire_error(b), "read/write lock");
  CHECK(none == NULL);
  dlm_lease_free(ra); /* left to expire: nothing is sent */
  dlm_lease_free(rb);

  /* Checks: no permits, flags these calls do not take, zero TTL. */
  dlm_request bad = req(DLM_CALL_SEMAPHORE, "sansio-sem", 3000);
  CHECK_STATUS(dlm_wire_write(a, &bad, out, sizeof out, &n), DLM_ERR_INVALID_ARGUMENT);
  CHECK_CONTAINS(wire_error(a), "at least 1 permit");
  bad = req(DLM_CALL_READ_LOCK, "sansio-rw", 3000);
  bad.flags = DLM_PUT_IF;
  CHECK_STATUS(dlm_wire_write(a, &bad, out, sizeof out, &n), DLM_ERR_INVALID_ARGUMENT);
  bad = req(DLM_CALL_WRITE_LOCK, "sansio-rw", 0);
  CHECK_STATUS(dlm_wire_write(a, &bad, out, sizeof out, &n), DLM_ERR_INVALID_ARGUMENT);
out:
  dlm_lease_free(h1);
  dlm_lease_free(h2);
  close(ca.fd);
  close(cb.fd);
  dlm_wire_free(a);
  dlm_wire_free(b);
}

/* Multi-locks and shared values without sockets: DLM_CALL_LOCK_ALL read
 * by dlm_lease_new_all (one lease per name), DLM_PUT_READERS[_ANY] and
 * dlm_wire_owner. */
static void multi_and_shared_checks(const char *addr) {
  struct conn ca, cb;
  dlm_wire *a = wire_as("sansio-ma");
  dlm_wire *b = wire_as("sansio-mb");
  char out[512], buf[512];
  size_t n = 0;
  dlm_answer ans;
  dlm_lease_info info;
  dlm_lease_action action;
  dlm_lease_done done;
  dlm_lease *held = NULL, *leases[2] = {NULL, NULL};
  if (!CHECK(a != NULL && b != NULL) || !CHECK(conn_open(&ca, addr) == 0) ||
      !CHECK(conn_open(&cb, addr) == 0)) {
    return;
  }
  static const char *const names[] = {"sansio-m1", "sansio-m2"};
  static const size_t lens[] = {9, 9};
  dlm_request all = req(DLM_CALL_LOCK_ALL, NULL, 3000);
  all.names = names;
  all.name_lens = lens;
  all.names_count = 2;
  CHECK_OK(dlm_wire_write(a, &all, out, sizeof out - 1, &n));
  out[n] = '\0';
  CHECK_CONTAINS(out, "\"Action\":\"LockAll\"");
  CHECK_CONTAINS(out, "\"Names\":[\"sansio-m1\",\"sansio-m2\"]");

  /* One name held by another: refused, nothing taken. */
  dlm_request one = req(DLM_CALL_LOCK, "sansio-m2", 3000);
  uint64_t sent = now_ms();
  CHECK(round_trip(&cb, b, &one));
  if (!CHECK_OK(dlm_lease_new(b, &one, sent, now_ms(), line, line_len, &held))) {
    goto out;
  }
  sent = now_ms();
  CHECK(round_trip(&ca, a, &all));
  CHECK_STATUS(dlm_lease_new_all(a, &all, sent, now_ms(), line, line_len, leases, 2),
               DLM_ERR_NOT_OWNER);
  CHECK(leases[0] == NULL && leases[1] == NULL);
  CHECK_STATUS(dlm_wire_read(a, &all, line, line_len, buf, sizeof buf, &ans),
               DLM_ERR_INVALID_ARGUMENT);
  CHECK_OK(dlm_lease_release(held, now_ms(), NULL));
  CHECK_OK(lease_exchange(&cb, held, b, &action, &done));
  CHECK(done == DLM_LEASE_DONE_RELEASED);

  /* Free: a lease per name, tokens in order. */
  sent = now_ms();
  CHECK(round_trip(&ca, a, &all));
  CHECK_STATUS(dlm_lease_new_all(a, &all, sent, now_ms(), line, line_len, leases, 1),
               DLM_ERR_BUFFER_TOO_SMALL);
  CHECK_STATUS(dlm_lease_new_all(a, &one, sent, now_ms(), line, line_len, leases, 2),
               DLM_ERR_INVALID_ARGUMENT);
  if (!CHECK_OK(dlm_lease_new_all(a, &all, sent, now_ms(), line, line_len, leases, 2))) {
    goto out;
  }
  uint64_t t[2] = {0, 0};
  for (int i = 0; i < 2; i++) {
    CHECK_OK(dlm_lease_inspect(leases[i], now_ms(), &info));
    t[i] = info.token;
  }
  CHECK(t[0] > 0 && t[1] == t[0] + 1);
  /* Each released by its own token. */
  for (int i = 0; i < 2; i++) {
    CHECK_OK(dlm_lease_release(leases[i], now_ms(), NULL));
    CHECK_OK(lease_exchange(&ca, leases[i], a, &action, &done));
    CHECK(action == DLM_LEASE_SEND_RELEASE && done == DLM_LEASE_DONE_RELEASED);
  }
  dlm_request test = req(DLM_CALL_TEST_LOCK, "sansio-m1", 0);
  CHECK(round_trip(&cb, b, &test));
  CHECK_OK(dlm_wire_read(b, &test, line, line_len, buf, sizeof buf, &ans));
  CHECK(ans.state == DLM_LOCK_FREE);
  /* Checks: no names, a name twice. */
  all.names_count = 0;
  CHECK_STATUS(dlm_wire_write(a, &all, out, sizeof out, &n), DLM_ERR_INVALID_ARGUMENT);
  static const char *const twice[] = {"sansio-m1", "sansio-m1"};
  all.names = twice;
  all.names_count = 2;
  CHECK_STATUS(dlm_wire_write(a, &all, out, sizeof out, &n), DLM_ERR_INVALID_ARGUMENT);

  /* Shared values: the readers on the line, the owner from a get. */
  dlm_request put = req(DLM_CALL_PUT, "sansio-shared", 10000);
  put.value = "v";
  put.value_len = 1;
  put.flags = DLM_PUT_READERS_ANY;
  CHECK_OK(dlm_wire_write(a, &put, out, sizeof out - 1, &n));
  out[n] = '\0';
  CHECK_CONTAINS(out, "\"Readers\":\"Any\"");
  CHECK(round_trip(&ca, a, &put));
  CHECK_OK(dlm_wire_read(a, &put, line, line_len, buf, sizeof buf, &ans));
  dlm_request get = req(DLM_CALL_GET, "sansio-shared", 0);
  CHECK(round_trip(&cb, b, &get));
  CHECK_OK(dlm_wire_read(b, &get, line, line_len, buf, sizeof buf, &ans));
  CHECK(ans.data_len == 1 && buf[0] == 'v');
  CHECK_OK(dlm_wire_owner(b, &get, line, line_len, buf, sizeof buf, &n));
  CHECK(strcmp(buf, "sansio-ma") == 0 && n == 9);
  CHECK_STATUS(dlm_wire_owner(b, &get, line, line_len, buf, 4, &n), DLM_ERR_BUFFER_TOO_SMALL);
  CHECK(n == 9);
  CHECK_STATUS(dlm_wire_owner(b, &put, line, line_len, buf, sizeof buf, &n),
               DLM_ERR_INVALID_ARGUMENT);
  static const char *const readers[] = {"alice", "bob"};
  static const size_t reader_lens[] = {5, 3};
  put.flags = DLM_PUT_READERS;
  put.readers = readers;
  put.reader_lens = reader_lens;
  put.readers_count = 2;
  CHECK_OK(dlm_wire_write(a, &put, out, sizeof out - 1, &n));
  out[n] = '\0';
  CHECK_CONTAINS(out, "\"Readers\":[\"alice\",\"bob\"]");
  CHECK(round_trip(&ca, a, &put));
  CHECK_OK(dlm_wire_read(a, &put, line, line_len, buf, sizeof buf, &ans));
  CHECK(round_trip(&cb, b, &get));
  CHECK_STATUS(dlm_wire_read(b, &get, line, line_len, buf, sizeof buf, &ans), DLM_ERR_NOT_OWNER);
  CHECK_STATUS(dlm_wire_owner(b, &get, line, line_len, buf, sizeof buf, &n), DLM_ERR_NOT_OWNER);
  put.flags = DLM_PUT_READERS | DLM_PUT_READERS_ANY;
  CHECK_STATUS(dlm_wire_write(a, &put, out, sizeof out, &n), DLM_ERR_INVALID_ARGUMENT);
out:
  dlm_lease_free(held);
  dlm_lease_free(leases[0]);
  dlm_lease_free(leases[1]);
  close(ca.fd);
  close(cb.fd);
  dlm_wire_free(a);
  dlm_wire_free(b);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s ADDR\n", argv[0]);
    return 2;
  }
  struct conn ca, cb;
  REQUIRE_OK(conn_open(&ca, argv[1]) == 0 ? DLM_OK : DLM_ERR_UNAVAILABLE);
  REQUIRE_OK(conn_open(&cb, argv[1]) == 0 ? DLM_OK : DLM_ERR_UNAVAILABLE);
  dlm_wire *a = wire_as("sansio-a");
  dlm_wire *b = wire_as("sansio-b");
  REQUIRE_OK(a != NULL && b != NULL ? DLM_OK : DLM_ERR_INVALID_ARGUMENT);
  char buf[512];
  size_t n = 0;
  dlm_answer ans;
  dlm_lease_info info;
  dlm_lease_action action;
  dlm_lease_done done;

  /* The owner ID; a wire with random ID. */
  CHECK_OK(dlm_wire_id(a, buf, sizeof buf, &n));
  CHECK(strcmp(buf, "sansio-a") == 0 && n == 8);
  dlm_wire *random = NULL;
  CHECK_OK(dlm_wire_new(NULL, &random));
  CHECK_OK(dlm_wire_id(random, buf, sizeof buf, &n));
  CHECK(n == 48);
  dlm_wire_free(random);
  dlm_wire_free(NULL);

  /* Version: the data is the server's version string. */
  dlm_request version = req(DLM_CALL_VERSION, NULL, 0);
  CHECK(round_trip(&ca, a, &version));
  CHECK_OK(dlm_wire_read(a, &version, line, line_len, buf, sizeof buf - 1, &ans));
  buf[ans.data_len < sizeof buf ? ans.data_len : sizeof buf - 1] = '\0';
  CHECK_CONTAINS(buf, "JackrabbitDLM");

  /* A lock: the lease has the grant's token and deadline. */
  dlm_request lock = req(DLM_CALL_LOCK, "sansio-lock", 2000);
  uint64_t sent = now_ms();
  CHECK(round_trip(&ca, a, &lock));
  dlm_lease *l = NULL;
  REQUIRE_OK(dlm_lease_new(a, &lock, sent, now_ms(), line, line_len, &l));
  CHECK_OK(dlm_lease_inspect(l, now_ms(), &info));
  CHECK((info.flags & DLM_LEASE_HAS_TOKEN) && info.token > 0);
  CHECK(!(info.flags & (DLM_LEASE_LOST | DLM_LEASE_RELEASED | DLM_LEASE_RENEWING)));
  CHECK(info.remaining_ms > 0 && info.remaining_ms <= 2000);
  CHECK(info.ttl_ms == 2000);
  CHECK((info.flags & DLM_LEASE_HAS_TIMEOUT) && info.next_timeout_ms == info.deadline_ms);
  uint64_t token = info.token;

  /* Test-lock: mine, with that token; another owner sees it taken. */
  dlm_request test = req(DLM_CALL_TEST_LOCK, "sansio-lock", 0);
  CHECK(round_trip(&ca, a, &test));
  CHECK_OK(dlm_wire_read(a, &test, line, line_len, NULL, 0, &ans));
  CHECK(ans.state == DLM_LOCK_MINE && (ans.has & DLM_ANSWER_TOKEN) && ans.token == token);
  CHECK(round_trip(&cb, b, &test));
  CHECK_OK(dlm_wire_read(b, &test, line, line_len, NULL, 0, &ans));
  CHECK(ans.state == DLM_LOCK_TAKEN && ans.token == 0);

  /* Another owner's lock is refused, with a reason. */
  dlm_lease *refused = NULL;
  sent = now_ms();
  CHECK(round_trip(&cb, b, &lock));
  CHECK_STATUS(dlm_lease_new(b, &lock, sent, now_ms(), line, line_len, &refused),
               DLM_ERR_NOT_OWNER);
  CHECK(refused == NULL);

  /* Extend: the request goes out once, the answer extends the grant. A
   * buffer too small gets the needed length and the same line next time. */
  CHECK_OK(dlm_lease_extend(l, now_ms(), 3000));
  CHECK_OK(dlm_lease_inspect(l, now_ms(), &info));
  CHECK(info.flags & DLM_LEASE_HAS_REQUEST);
  CHECK_STATUS(dlm_lease_poll_request(l, a, now_ms(), NULL, 0, &n, &action),
               DLM_ERR_BUFFER_TOO_SMALL);
  CHECK(n > 0);
  CHECK_OK(lease_exchange(&ca, l, a, &action, &done));
  CHECK(action == DLM_LEASE_SEND_EXTEND && done == DLM_LEASE_DONE_EXTENDED);
  CHECK_OK(dlm_lease_inspect(l, now_ms(), &info));
  CHECK(info.ttl_ms == 3000 && info.remaining_ms > 2000 && info.token == token);
  CHECK(!(info.flags & DLM_LEASE_HAS_REQUEST));
  CHECK_OK(lease_exchange(&ca, l, a, &action, &done));
  CHECK(action == DLM_LEASE_SEND_NONE);

  /* A failed extension is not a loss before the deadline; an answer that
   * is not a dlm answer counts as a failure. */
  CHECK_OK(dlm_lease_extend(l, now_ms(), 3000));
  CHECK_OK(dlm_lease_poll_request(l, a, now_ms(), buf, sizeof buf, &n, &action));
  CHECK(n > 0 && action == DLM_LEASE_SEND_EXTEND);
  CHECK_STATUS(dlm_lease_handle_response(l, now_ms(), S("not a dlm answer\n"), &done),
               DLM_ERR_PROTOCOL);
  CHECK_OK(dlm_lease_last_error(l, buf, sizeof buf, &n));
  CHECK(n > 0);
  CHECK_OK(dlm_lease_inspect(l, now_ms(), &info));
  CHECK(!(info.flags & DLM_LEASE_LOST) && info.remaining_ms > 0);

  /* Release: confirmed by the server; the lock is free for the other. */
  bool queued = false;
  CHECK_OK(dlm_lease_release(l, now_ms(), &queued));
  CHECK(queued);
  CHECK_OK(lease_exchange(&ca, l, a, &action, &done));
  CHECK(action == DLM_LEASE_SEND_RELEASE && done == DLM_LEASE_DONE_RELEASED);
  CHECK_OK(dlm_lease_inspect(l, now_ms(), &info));
  CHECK((info.flags & DLM_LEASE_RELEASED) && info.remaining_ms == 0);
  CHECK(!(info.flags & DLM_LEASE_HAS_TIMEOUT));
  CHECK_OK(dlm_lease_release(l, now_ms(), &queued));
  CHECK(!queued);
  CHECK_STATUS(dlm_lease_extend(l, now_ms(), 1000), DLM_ERR_LOCK_LOST);
  dlm_lease_free(l);
  dlm_lease_free(NULL);
  CHECK(round_trip(&cb, b, &test));
  CHECK_OK(dlm_wire_read(b, &test, line, line_len, NULL, 0, &ans));
  CHECK(ans.state == DLM_LOCK_FREE);

  /* Auto-renewal driven by this loop: the lock outlives two TTLs. */
  dlm_request renewed = req(DLM_CALL_LOCK, "sansio-renewed", 600);
  renewed.flags = DLM_LOCK_AUTO_RENEW;
  sent = now_ms();
  CHECK(round_trip(&ca, a, &renewed));
  REQUIRE_OK(dlm_lease_new(a, &renewed, sent, now_ms(), line, line_len, &l));
  unsigned extensions = 0;
  uint64_t until = now_ms() + 1500;
  while (now_ms() < until) {
    CHECK_OK(dlm_lease_inspect(l, now_ms(), &info));
    if (!(info.flags & DLM_LEASE_HAS_TIMEOUT)) {
      break;
    }
    uint64_t now = now_ms();
    uint64_t at = info.next_timeout_ms < until ? info.next_timeout_ms : until;
    if (at > now) {
      sleep_ms((unsigned)(at - now));
    }
    CHECK_OK(dlm_lease_handle_timeout(l, now_ms()));
    if (lease_exchange(&ca, l, a, &action, &done) == DLM_OK && action == DLM_LEASE_SEND_EXTEND &&
        done == DLM_LEASE_DONE_EXTENDED) {
      extensions++;
    }
  }
  CHECK(extensions >= 2);
  CHECK_OK(dlm_lease_inspect(l, now_ms(), &info));
  CHECK((info.flags & DLM_LEASE_RENEWING) && !(info.flags & DLM_LEASE_LOST));
  CHECK(info.remaining_ms > 0);
  bool lost = true;
  CHECK_OK(dlm_lease_poll_event(l, &lost));
  CHECK(!lost);
  CHECK_OK(dlm_lease_release(l, now_ms(), &queued));
  CHECK_OK(lease_exchange(&ca, l, a, &action, &done));
  CHECK(action == DLM_LEASE_SEND_RELEASE && done == DLM_LEASE_DONE_RELEASED);
  dlm_lease_free(l);

  /* Without renewal the lease is lost at its deadline, reported once. */
  dlm_request brief = req(DLM_CALL_LOCK, "sansio-brief", 150);
  sent = now_ms();
  CHECK(round_trip(&ca, a, &brief));
  REQUIRE_OK(dlm_lease_new(a, &brief, sent, now_ms(), line, line_len, &l));
  CHECK_OK(dlm_lease_inspect(l, now_ms(), &info));
  sleep_ms((unsigned)(info.remaining_ms + 20));
  CHECK_OK(dlm_lease_handle_timeout(l, now_ms()));
  CHECK_OK(dlm_lease_inspect(l, now_ms(), &info));
  CHECK((info.flags & DLM_LEASE_LOST) && info.remaining_ms == 0);
  CHECK_OK(dlm_lease_poll_event(l, &lost));
  CHECK(lost);
  CHECK_OK(dlm_lease_poll_event(l, &lost));
  CHECK(!lost);
  CHECK_STATUS(dlm_lease_extend(l, now_ms(), 1000), DLM_ERR_LOCK_LOST);
  dlm_lease_free(l);

  /* Values: put, get, compare-and-set, the stored text, erase. */
  dlm_request put = req(DLM_CALL_PUT, "sansio-value", 60000);
  put.value = "hello";
  put.value_len = 5;
  CHECK(round_trip(&ca, a, &put));
  CHECK_OK(dlm_wire_read(a, &put, line, line_len, NULL, 0, &ans));
  CHECK((ans.has & DLM_ANSWER_REVISION) && ans.revision == 1);
  dlm_request get = req(DLM_CALL_GET, "sansio-value", 0);
  CHECK(round_trip(&ca, a, &get));
  CHECK_STATUS(dlm_wire_read(a, &get, line, line_len, buf, 2, &ans), DLM_ERR_BUFFER_TOO_SMALL);
  CHECK(ans.data_len == 5);
  CHECK_OK(dlm_wire_read(a, &get, line, line_len, buf, sizeof buf, &ans));
  CHECK(ans.data_len == 5 && memcmp(buf, "hello", 5) == 0 && ans.revision == 1);
  dlm_request stored = get;
  stored.flags = DLM_VALUE_STORED;
  CHECK_OK(dlm_wire_read(a, &stored, line, line_len, buf, sizeof buf, &ans));
  CHECK(ans.data_len > 0 && !(ans.data_len == 5 && memcmp(buf, "hello", 5) == 0));
  CHECK(round_trip(&cb, b, &get));
  CHECK_STATUS(dlm_wire_read(b, &get, line, line_len, buf, sizeof buf, &ans), DLM_ERR_NOT_OWNER);
  dlm_request put_if = put;
  put_if.flags = DLM_PUT_IF;
  put_if.revision = 7;
  CHECK(round_trip(&ca, a, &put_if));
  memset(&ans, 0, sizeof ans);
  CHECK_STATUS(dlm_wire_read(a, &put_if, line, line_len, NULL, 0, &ans), DLM_ERR_CONFLICT);
  CHECK(ans.revision == 1);
  put_if.revision = 1;
  CHECK(round_trip(&ca, a, &put_if));
  CHECK_OK(dlm_wire_read(a, &put_if, line, line_len, NULL, 0, &ans));
  CHECK(ans.revision == 2);
  dlm_request erase = req(DLM_CALL_ERASE, "sansio-value", 0);
  CHECK(round_trip(&ca, a, &erase));
  CHECK_OK(dlm_wire_read(a, &erase, line, line_len, NULL, 0, &ans));
  CHECK(round_trip(&ca, a, &erase));
  CHECK_STATUS(dlm_wire_read(a, &erase, line, line_len, NULL, 0, &ans), DLM_ERR_NOT_FOUND);
  CHECK(round_trip(&ca, a, &get));
  CHECK_STATUS(dlm_wire_read(a, &get, line, line_len, buf, sizeof buf, &ans), DLM_ERR_NOT_FOUND);

  /* Pipelining: three requests in one write, three answers in order. */
  char out[4096];
  size_t at = 0;
  dlm_request pipelined[3] = {put, get, erase};
  for (int i = 0; i < 3; i++) {
    CHECK_OK(dlm_wire_write(a, &pipelined[i], out + at, sizeof out - at, &n));
    at += n;
  }
  CHECK(send_all(&ca, out, at));
  for (int i = 0; i < 3; i++) {
    line_len = recv_line(&ca, line, sizeof line);
    CHECK(line_len > 0);
    CHECK_OK(dlm_wire_read(a, &pipelined[i], line, line_len, buf, sizeof buf, &ans));
  }

  /* Unlock by name, and stats. */
  sent = now_ms();
  CHECK(round_trip(&ca, a, &lock));
  REQUIRE_OK(dlm_lease_new(a, &lock, sent, now_ms(), line, line_len, &l));
  dlm_lease_free(l);
  dlm_request unlock = req(DLM_CALL_UNLOCK, "sansio-lock", 0);
  CHECK(round_trip(&ca, a, &unlock));
  CHECK_OK(dlm_wire_read(a, &unlock, line, line_len, NULL, 0, &ans));
  CHECK(round_trip(&ca, a, &unlock));
  CHECK_STATUS(dlm_wire_read(a, &unlock, line, line_len, NULL, 0, &ans), DLM_ERR_NOT_FOUND);
  dlm_request stats = req(DLM_CALL_STATS, NULL, 0);
  CHECK(round_trip(&ca, a, &stats));
  static char json[8192];
  CHECK_OK(dlm_wire_read(a, &stats, line, line_len, json, sizeof json - 1, &ans));
  json[ans.data_len < sizeof json ? ans.data_len : sizeof json - 1] = '\0';
  CHECK(json[0] == '{');
  CHECK_CONTAINS(json, "\"ALock\":");

  /* What is refused before anything is written. */
  CHECK_STATUS(dlm_wire_write(a, &lock, NULL, 0, &n), DLM_ERR_BUFFER_TOO_SMALL);
  CHECK(n > 0);
  dlm_request bad = req(DLM_CALL_LOCK, "", 1000);
  CHECK_STATUS(dlm_wire_write(a, &bad, out, sizeof out, &n), DLM_ERR_INVALID_ARGUMENT);
  bad = req(DLM_CALL_LOCK, "x", 0);
  CHECK_STATUS(dlm_wire_write(a, &bad, out, sizeof out, &n), DLM_ERR_INVALID_ARGUMENT);
  CHECK(strlen(wire_error(a)) > 0);
  bad = req((dlm_call)99, "x", 1000);
  CHECK_STATUS(dlm_wire_write(a, &bad, out, sizeof out, &n), DLM_ERR_INVALID_ARGUMENT);
  bad = req(DLM_CALL_GET, "x", 0);
  bad.flags = DLM_PUT_IF;
  CHECK_STATUS(dlm_wire_write(a, &bad, out, sizeof out, &n), DLM_ERR_INVALID_ARGUMENT);
  bad = put;
  bad.flags = DLM_VALUE_STORED;
  bad.value = "\xff";
  bad.value_len = 1;
  CHECK_STATUS(dlm_wire_write(a, &bad, out, sizeof out, &n), DLM_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(dlm_wire_write(NULL, &lock, out, sizeof out, &n), DLM_ERR_NULL_PARAMETER);
  CHECK_STATUS(dlm_wire_write(a, NULL, out, sizeof out, &n), DLM_ERR_NULL_PARAMETER);
  CHECK_STATUS(dlm_wire_read(a, &version, S("not a dlm answer\n"), buf, sizeof buf, &ans),
               DLM_ERR_PROTOCOL);
  CHECK(strlen(wire_error(a)) > 0);
  CHECK_STATUS(dlm_wire_read(a, &version, "", 0, buf, sizeof buf, &ans), DLM_ERR_PROTOCOL);
  CHECK_STATUS(dlm_wire_read(a, &lock, S("{}\n"), buf, sizeof buf, &ans),
               DLM_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(dlm_lease_new(a, &get, 0, 0, S("{}\n"), &l), DLM_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(dlm_lease_inspect(NULL, 0, &info), DLM_ERR_NULL_PARAMETER);

  failover_checks(argv[1]);
  shaped_checks(argv[1]);
  multi_and_shared_checks(argv[1]);

  dlm_wire_free(a);
  dlm_wire_free(b);
  close(ca.fd);
  close(cb.fd);
  return checks_done("sansio");
}
