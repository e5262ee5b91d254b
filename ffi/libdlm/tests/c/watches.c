/*
 * Watches through libdlm's C ABI (dlm_client_watch, dlm_watch_next,
 * dlm_wire_event): a prefix watch sees a lock granted and released and a
 * value put and erased, in order, with increasing revisions, owner and
 * value shown to their owner only; a watch resumed after a revision sees
 * every event after it and nothing before; a name watch sees only its
 * name; a timeout is DLM_ERR_TIMEOUT; a watcher that reads too slowly is
 * cut off by the server and, its events no longer kept, told to read the
 * state again (DLM_ERR_CONFLICT with the current revision), then goes on;
 * the sans-I/O reading of event lines; the argument checks.
 *
 * Usage: watches ADDR TIGHT_ADDR (the second server keeps 16 changes and
 * lets a watcher leave 4 KiB unread)
 */
#define _POSIX_C_SOURCE 200809L

#include "check.h"

#define SENTINEL ((void *)(uintptr_t)0x5eed)

static const char *addr;
static const char *tight;

static const char *watch_error(const dlm_watch *w) {
  static char buf[512];
  size_t n = 0;
  if (dlm_watch_last_error(w, buf, sizeof buf, &n) != DLM_OK) {
    return "(dlm_watch_last_error failed)";
  }
  return buf;
}

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

static int name_is(const dlm_event *e, const char *name) {
  return e->name_len == strlen(name) && memcmp(e->name, name, e->name_len) == 0;
}

/* The next event, waiting up to 10 s. */
static int next(const dlm_watch *w, dlm_event *e) {
  return CHECK_OK(dlm_watch_next(w, 10000, e));
}

struct seen {
  uint64_t revision;
  dlm_event_what what;
  dlm_event_kind kind;
  uint64_t token;
};

static void a_prefix_watch_sees_every_change_in_order(void) {
  dlm_client *me = connect_as(addr, "watch-me");
  dlm_client *other = connect_as(addr, "watch-other");
  dlm_watch *w = NULL, *again = NULL, *later = NULL, *one = NULL;
  dlm_lock *l = NULL;
  struct seen seen[5];
  if (!CHECK(me != NULL && other != NULL)) {
    goto out;
  }
  uint64_t start = 0;
  if (!CHECK_OK(dlm_client_watch(me, S("w/"), DLM_WATCH_PREFIX, 0, &start, &w))) {
    goto out;
  }
  CHECK(start > 0);
  uint64_t rev = 0;
  CHECK_OK(dlm_watch_revision(w, &rev));
  CHECK(rev == start);
  uint64_t token = 0;
  if (CHECK_OK(dlm_client_lock(me, S("w/lock"), 5000, 0, 0, NULL, NULL, NULL, &l))) {
    CHECK_OK(dlm_lock_token(l, &token));
    CHECK_OK(dlm_lock_release(l));
  }
  uint64_t vrev = 0;
  CHECK_OK(dlm_client_put(me, S("w/value"), S("hello"), 5000, &vrev));
  CHECK_OK(dlm_client_erase(me, S("w/value")));
  CHECK_OK(dlm_client_put(other, S("w/theirs"), S("secret"), 5000, NULL));
  /* Not watched. */
  CHECK_OK(dlm_client_put(me, S("elsewhere"), S("x"), 5000, NULL));

  dlm_event e;
  uint64_t last = start;
  for (int i = 0; i < 5; i++) {
    if (!next(w, &e)) {
      goto out;
    }
    CHECK(e.revision > last);
    last = e.revision;
    seen[i] = (struct seen){e.revision, e.what, e.kind, e.token};
    switch (i) {
    case 0:
    case 1:
      CHECK(e.what == (i == 0 ? DLM_EVENT_GRANTED : DLM_EVENT_RELEASED));
      CHECK(e.kind == DLM_KIND_LOCK);
      CHECK(name_is(&e, "w/lock"));
      CHECK((e.has & DLM_EVENT_HAS_TOKEN) && e.token == token);
      CHECK((e.has & DLM_EVENT_HAS_OWNER) && e.owner_len == strlen("watch-me") &&
            memcmp(e.owner, "watch-me", e.owner_len) == 0);
      break;
    case 2:
      CHECK(e.what == DLM_EVENT_PUT && e.kind == DLM_KIND_DATA);
      CHECK(name_is(&e, "w/value"));
      CHECK((e.has & DLM_EVENT_HAS_VALUE) && e.value_len == 5 &&
            memcmp(e.value, "hello", 5) == 0);
      CHECK((e.has & DLM_EVENT_HAS_DATA_REVISION) && e.data_revision == vrev);
      break;
    case 3:
      CHECK(e.what == DLM_EVENT_ERASED && name_is(&e, "w/value"));
      CHECK(e.value == NULL);
      break;
    case 4:
      /* Another owner's value: told that it changed, not what it holds. */
      CHECK(e.what == DLM_EVENT_PUT && name_is(&e, "w/theirs"));
      CHECK(!(e.has & DLM_EVENT_HAS_VALUE) && e.value == NULL);
      CHECK(!(e.has & DLM_EVENT_HAS_OWNER) && e.owner == NULL);
      break;
    }
  }
  CHECK_OK(dlm_watch_revision(w, &rev));
  CHECK(rev == last);
  /* Nothing more: the put elsewhere was not for this watch. */
  CHECK_STATUS(dlm_watch_next(w, 50, &e), DLM_ERR_TIMEOUT);
  CHECK_STATUS(dlm_watch_next(w, 0, &e), DLM_ERR_TIMEOUT);

  /* Resumed after the start: the same events, the same revisions. */
  uint64_t from = 0;
  if (CHECK_OK(dlm_client_watch(me, S("w/"), DLM_WATCH_PREFIX | DLM_WATCH_SINCE, start, &from,
                                &again))) {
    CHECK(from == start);
    for (int i = 0; i < 5; i++) {
      if (!next(again, &e)) {
        break;
      }
      CHECK(e.revision == seen[i].revision && e.what == seen[i].what &&
            e.kind == seen[i].kind && e.token == seen[i].token);
    }
    CHECK_STATUS(dlm_watch_next(again, 50, &e), DLM_ERR_TIMEOUT);
  }
  /* Resumed after the second: the three after it, nothing before. */
  if (CHECK_OK(dlm_client_watch(me, S("w/"), DLM_WATCH_PREFIX | DLM_WATCH_SINCE,
                                seen[1].revision, NULL, &later))) {
    for (int i = 2; i < 5; i++) {
      if (next(later, &e)) {
        CHECK(e.revision == seen[i].revision);
      }
    }
    /* And the live ones after them. */
    CHECK_OK(dlm_client_put(me, S("w/live"), S("1"), 5000, NULL));
    if (next(later, &e)) {
      CHECK(e.revision > seen[4].revision && name_is(&e, "w/live"));
    }
  }
  /* One name: its changes only. */
  if (CHECK_OK(dlm_client_watch(me, S("w/one"), 0, 0, NULL, &one))) {
    CHECK_OK(dlm_client_put(me, S("w/other"), S("2"), 5000, NULL));
    CHECK_OK(dlm_client_put(me, S("w/one"), S("3"), 5000, NULL));
    if (next(one, &e)) {
      CHECK(name_is(&e, "w/one") && e.what == DLM_EVENT_PUT);
    }
  }
out:
  dlm_lock_free(l);
  dlm_watch_free(w);
  dlm_watch_free(again);
  dlm_watch_free(later);
  dlm_watch_free(one);
  dlm_client_free(me);
  dlm_client_free(other);
}

/*
 * On a server that lets a watcher leave 4 KiB unread and keeps 16
 * changes: a watcher that reads nothing while 16 KiB values are put is
 * cut off; once more changes than the server keeps have been made, it
 * reads again: it gets what had reached it, in order, then
 * DLM_ERR_CONFLICT (its events since are gone) with the current revision,
 * then goes on from there.
 */
static void a_slow_watcher_is_told_to_read_again(void) {
  dlm_client *me = connect_as(tight, "watch-slow");
  dlm_watch *w = NULL;
  /* 8 KiB, 16 KiB once encoded: the server's default limit on a value. */
  enum { SIZE = 8 * 1024 };
  char *value = malloc(SIZE);
  if (!CHECK(me != NULL && value != NULL)) {
    goto out;
  }
  memset(value, 'v', SIZE);
  uint64_t start = 0;
  if (!CHECK_OK(dlm_client_watch(me, S("big/"), DLM_WATCH_PREFIX, 0, &start, &w))) {
    goto out;
  }
  /* Bounded: at most 4,000 puts of 16 KiB (64 MiB through loopback). */
  int puts = 0, cut = 0;
  uint64_t cut_before = stat_of(me, "WatchCutOff");
  while (!cut && puts < 4000) {
    for (int i = 0; i < 20; i++, puts++) {
      if (!CHECK_OK(dlm_client_put(me, S("big/k"), value, SIZE, 5000, NULL))) {
        goto out;
      }
    }
    cut = stat_of(me, "WatchCutOff") > cut_before;
  }
  if (!CHECK(cut)) {
    goto out;
  }
  /* Then more changes than the server keeps: those after the last event
   * the watch was sent are gone by the time it resumes. */
  for (int i = 0; i < 20; i++, puts++) {
    CHECK_OK(dlm_client_put(me, S("big/k"), S("small"), 5000, NULL));
  }
  dlm_event e;
  uint64_t last = start;
  dlm_status s = DLM_OK;
  int events = 0;
  while ((s = dlm_watch_next(w, 10000, &e)) == DLM_OK && events < 8000) {
    CHECK(e.revision == last + 1);
    last = e.revision;
    events++;
  }
  CHECK_STATUS(s, DLM_ERR_CONFLICT);
  CHECK(events < puts);
  CHECK(e.revision >= start + (uint64_t)puts);
  CHECK_CONTAINS(watch_error(w), "read the state again");
  /* It goes on from the current revision: the next call subscribes again
   * (here with nothing to wait for), then changes come. */
  CHECK_STATUS(dlm_watch_next(w, 0, &e), DLM_ERR_TIMEOUT);
  CHECK_OK(dlm_client_put(me, S("big/after"), S("x"), 5000, NULL));
  if (CHECK_OK(dlm_watch_next(w, 10000, &e))) {
    CHECK(name_is(&e, "big/after"));
  }
out:
  free(value);
  dlm_watch_free(w);
  dlm_client_free(me);
}

/* A resume from a revision the server never had: read the state again. */
static void an_unknown_revision_is_a_conflict(void) {
  dlm_client *me = connect_as(addr, "watch-ahead");
  dlm_watch *w = SENTINEL;
  if (!CHECK(me != NULL)) {
    return;
  }
  uint64_t current = 0;
  CHECK_OK(dlm_client_put(me, S("ahead"), S("x"), 5000, NULL));
  CHECK_STATUS(dlm_client_watch(me, S(""), DLM_WATCH_PREFIX | DLM_WATCH_SINCE, UINT64_MAX / 2,
                                &current, &w),
               DLM_ERR_CONFLICT);
  CHECK(w == SENTINEL);
  CHECK(current > 0 && current < UINT64_MAX / 2);
  CHECK_CONTAINS(client_error(me), "read the state again");
  dlm_client_free(me);
}

/* dlm_wire_event reads event lines a program received itself. */
static void event_lines_without_sockets(void) {
  dlm_wire *wire = NULL;
  if (!CHECK_OK(dlm_wire_new(NULL, &wire))) {
    return;
  }
  /* "hi" through the table codec is "aIa0". */
  const char line[] = "{\"Status\":\"Event\",\"Event\":\"Put\",\"Kind\":\"Data\","
                      "\"FileName\":\"k\",\"Revision\":7,\"ID\":\"me\","
                      "\"DataStore\":\"aIa0\",\"DataRevision\":2}\n";
  char data[64];
  size_t needed = 0;
  dlm_event e;
  memset(&e, 0, sizeof e);
  CHECK_STATUS(dlm_wire_event(wire, 0, S(line), data, 2, &e, &needed),
               DLM_ERR_BUFFER_TOO_SMALL);
  CHECK(needed == 1 + 2 + 2);
  if (CHECK_OK(dlm_wire_event(wire, 0, S(line), data, sizeof data, &e, &needed))) {
    CHECK(e.revision == 7 && e.what == DLM_EVENT_PUT && e.kind == DLM_KIND_DATA);
    CHECK(name_is(&e, "k"));
    CHECK(e.owner_len == 2 && memcmp(e.owner, "me", 2) == 0);
    CHECK((e.has & DLM_EVENT_HAS_DATA_REVISION) && e.data_revision == 2);
    CHECK(e.value_len == 2 && memcmp(e.value, "hi", 2) == 0);
    CHECK((const char *)e.name >= data && (const char *)e.name < data + sizeof data);
  }
  if (CHECK_OK(dlm_wire_event(wire, DLM_VALUE_STORED, S(line), data, sizeof data, &e, NULL))) {
    CHECK(e.value_len == 4 && memcmp(e.value, "aIa0", 4) == 0);
  }
  const char sem[] = "{\"Status\":\"Event\",\"Event\":\"Granted\",\"Kind\":\"Semaphore\","
                     "\"Permits\":3,\"FileName\":\"pool\",\"Revision\":9,\"Token\":5}\n";
  if (CHECK_OK(dlm_wire_event(wire, 0, S(sem), data, sizeof data, &e, NULL))) {
    CHECK(e.kind == DLM_KIND_SEMAPHORE && e.permits == 3 && e.token == 5);
    CHECK(e.what == DLM_EVENT_GRANTED && e.owner == NULL && e.value == NULL);
  }
  /* The server's last word: cut off, with the last revision sent. */
  const char cut[] = "{\"Status\":\"NO\",\"Error\":\"watch cut off: too many events unread\","
                     "\"Revision\":41}\n";
  memset(&e, 0, sizeof e);
  CHECK_STATUS(dlm_wire_event(wire, 0, S(cut), data, sizeof data, &e, NULL),
               DLM_ERR_UNAVAILABLE);
  CHECK(e.revision == 41);
  char why[256];
  size_t n = 0;
  CHECK_OK(dlm_wire_last_error(wire, why, sizeof why, &n));
  CHECK_CONTAINS(why, "cut off");
  CHECK_STATUS(dlm_wire_event(wire, 0, S("{\"Status\":\"Event\",\"Event\":1}\n"), data,
                              sizeof data, &e, NULL),
               DLM_ERR_PROTOCOL);
  CHECK_STATUS(dlm_wire_event(wire, 0, S("garbage\n"), data, sizeof data, &e, NULL),
               DLM_ERR_UNAVAILABLE);
  CHECK_STATUS(dlm_wire_event(wire, 0, NULL, 3, data, sizeof data, &e, NULL),
               DLM_ERR_NULL_PARAMETER);
  CHECK_STATUS(dlm_wire_event(wire, 0, NULL, 0, data, sizeof data, &e, NULL), DLM_ERR_PROTOCOL);
  CHECK_STATUS(dlm_wire_event(wire, 0, S(line), NULL, 4, &e, NULL), DLM_ERR_NULL_PARAMETER);
  CHECK_STATUS(dlm_wire_event(wire, 0, S(line), data, sizeof data, NULL, NULL),
               DLM_ERR_NULL_PARAMETER);
  CHECK_STATUS(dlm_wire_event(wire, 1, S(line), data, sizeof data, &e, NULL),
               DLM_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(dlm_wire_event(NULL, 0, S(line), data, sizeof data, &e, NULL),
               DLM_ERR_NULL_PARAMETER);

  /* The requests: a session, a watch resuming after a revision. */
  char buf[256];
  dlm_request req;
  memset(&req, 0, sizeof req);
  req.call = DLM_CALL_SESSION;
  req.ttl_ms = 1500;
  if (CHECK_OK(dlm_wire_write(wire, &req, buf, sizeof buf, &n))) {
    buf[n] = 0;
    CHECK_CONTAINS(buf, "\"Action\":\"Session\"");
  }
  memset(&req, 0, sizeof req);
  req.call = DLM_CALL_WATCH;
  req.flags = DLM_WATCH_PREFIX | DLM_WATCH_SINCE;
  req.revision = 12;
  if (CHECK_OK(dlm_wire_write(wire, &req, buf, sizeof buf, &n))) {
    buf[n] = 0;
    CHECK_CONTAINS(buf, "\"Action\":\"Watch\"");
    CHECK_CONTAINS(buf, "\"Prefix\":\"\"");
    CHECK_CONTAINS(buf, "\"Revision\":12");
  }
  memset(&req, 0, sizeof req);
  req.call = DLM_CALL_LOCK;
  req.flags = DLM_LOCK_SESSION;
  req.name = "n";
  req.name_len = 1;
  req.ttl_ms = 1000;
  req.lock_delay_ms = 2500;
  if (CHECK_OK(dlm_wire_write(wire, &req, buf, sizeof buf, &n))) {
    buf[n] = 0;
    CHECK_CONTAINS(buf, "\"Session\":true");
    CHECK_CONTAINS(buf, "\"LockDelay\":");
  }
  req.lock_delay_ms = DLM_MAX_LOCK_DELAY_MS + 1;
  CHECK_STATUS(dlm_wire_write(wire, &req, buf, sizeof buf, &n), DLM_ERR_INVALID_ARGUMENT);
  /* A watch answered: its revision, or read the state again. */
  memset(&req, 0, sizeof req);
  req.call = DLM_CALL_WATCH;
  req.flags = DLM_WATCH_PREFIX;
  dlm_answer ans;
  memset(&ans, 0, sizeof ans);
  CHECK_OK(dlm_wire_read(wire, &req, S("{\"Status\":\"Done\",\"Revision\":33}\n"), NULL, 0, &ans));
  CHECK((ans.has & DLM_ANSWER_REVISION) && ans.revision == 33);
  CHECK_STATUS(dlm_wire_read(wire, &req,
                             S("{\"Status\":\"Conflict\",\"Revision\":50,"
                               "\"Error\":\"history compacted\"}\n"),
                             NULL, 0, &ans),
               DLM_ERR_CONFLICT);
  CHECK(ans.revision == 50);
  dlm_wire_free(wire);
}

static void arguments_are_checked(void) {
  dlm_client *me = connect_as(addr, "watch-args");
  dlm_watch *w = SENTINEL;
  dlm_event e;
  uint64_t r = 0;
  if (!CHECK(me != NULL)) {
    return;
  }
  CHECK_STATUS(dlm_client_watch(NULL, S("x"), 0, 0, NULL, &w), DLM_ERR_NULL_PARAMETER);
  CHECK_STATUS(dlm_client_watch(me, S("x"), 0, 0, NULL, NULL), DLM_ERR_NULL_PARAMETER);
  CHECK_STATUS(dlm_client_watch(me, "", 0, 0, 0, NULL, &w), DLM_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(dlm_client_watch(me, NULL, 2, DLM_WATCH_PREFIX, 0, NULL, &w),
               DLM_ERR_NULL_PARAMETER);
  CHECK_STATUS(dlm_client_watch(me, S("x"), 64, 0, NULL, &w), DLM_ERR_INVALID_ARGUMENT);
  CHECK_STATUS(dlm_client_watch(me, "\xff", 1, 0, 0, NULL, &w), DLM_ERR_INVALID_ARGUMENT);
  CHECK(w == SENTINEL);
  CHECK_STATUS(dlm_watch_next(NULL, 0, &e), DLM_ERR_NULL_PARAMETER);
  CHECK_STATUS(dlm_watch_revision(NULL, &r), DLM_ERR_NULL_PARAMETER);
  w = NULL;
  if (CHECK_OK(dlm_client_watch(me, NULL, 0, DLM_WATCH_PREFIX, 0, NULL, &w))) {
    CHECK_STATUS(dlm_watch_next(w, 0, NULL), DLM_ERR_NULL_PARAMETER);
    CHECK_STATUS(dlm_watch_revision(w, NULL), DLM_ERR_NULL_PARAMETER);
  }
  dlm_watch_free(w);
  dlm_watch_free(NULL);
  dlm_client_free(me);
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: watches ADDR TIGHT_ADDR\n");
    return 2;
  }
  addr = argv[1];
  tight = argv[2];
  a_prefix_watch_sees_every_change_in_order();
  a_slow_watcher_is_told_to_read_again();
  an_unknown_revision_is_a_conflict();
  event_lines_without_sockets();
  arguments_are_checked();
  return checks_done("watches");
}
