/*
 * libdlm: the C ABI of dlm, a distributed lock manager.
 *
 * Generated from ffi/libdlm/src by cbindgen; do not edit. See ffi/libdlm/README.md
 * for the conventions (ownership, errors, threads).
 */

#ifndef DLM_H
#define DLM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#define DLM_VERSION_MAJOR 0
#define DLM_VERSION_MINOR 1
#define DLM_VERSION_PATCH 0
#define DLM_VERSION_STRING "0.1.0"

// Longest `host:port` the failover hands out, in bytes; a buffer of one
// more byte always holds it (with its NUL).
#define DLM_FAILOVER_ADDRESS_MAX 255

// Bit of `dlm_lease_info.flags`: the grant has a fencing token.
#define DLM_LEASE_HAS_TOKEN 1

// Bit of `dlm_lease_info.flags`: `next_timeout_ms` is set.
#define DLM_LEASE_HAS_TIMEOUT 2

// Bit of `dlm_lease_info.flags`: the lock is lost (its deadline passed
// without a confirmed extension, or the server said it is gone).
#define DLM_LEASE_LOST 4

// Bit of `dlm_lease_info.flags`: the server confirmed the release.
#define DLM_LEASE_RELEASED 8

// Bit of `dlm_lease_info.flags`: the lease renews itself (until released
// or lost).
#define DLM_LEASE_RENEWING 16

// Bit of `dlm_lease_info.flags`: a request waits to be handed out by
// `dlm_lease_poll_request`.
#define DLM_LEASE_HAS_REQUEST 32

// The most names `dlm_client_lock_all` takes at once.
#define DLM_MAX_LOCK_ALL 16

// Flag for `dlm_client_lock`: extend the lock in the background every
// third of its TTL until it is released or freed.
#define DLM_LOCK_AUTO_RENEW 1

// Bit of `dlm_event.has`: the event carries the grant's fencing token.
#define DLM_EVENT_HAS_TOKEN 1

// Bit of `dlm_event.has`: the owner (`owner`) is shown (this client may
// read it: its own entries).
#define DLM_EVENT_HAS_OWNER 2

// Bit of `dlm_event.has`: the value (`value`) is shown (a put this
// client may read).
#define DLM_EVENT_HAS_VALUE 4

// Bit of `dlm_event.has`: the value's own revision (`data_revision`).
#define DLM_EVENT_HAS_DATA_REVISION 8

// Flag of a `DLM_CALL_PUT` request: compare-and-set, storing the value
// only if the stored revision is the request's `revision` (0: only if
// there is none).
#define DLM_PUT_IF 2

// Flag of a `DLM_CALL_PUT` or `DLM_CALL_GET` request: skip the wire's
// encoder. A put's `value` is then the text to store as it is (UTF-8), and
// a get hands back the stored text undecoded, for a program that encodes
// values itself.
#define DLM_VALUE_STORED 4

// Flag of an acquiring request (`DLM_CALL_LOCK`, `DLM_CALL_SEMAPHORE`,
// `DLM_CALL_READ_LOCK`, `DLM_CALL_WRITE_LOCK`): bind the grant to the
// session of the connection it is sent on (opened by `DLM_CALL_SESSION`
// there), so that it ends when the session does, or, with a non-zero
// `lock_delay_ms`, stays closed to everyone for that long first. A
// server that ignores the binding (JackrabbitDLM) makes `dlm_lease_new`
// fail with `DLM_ERR_BAD_REQUEST`. On `DLM_CALL_SESSION`: a keep-alive
// (see there).
#define DLM_LOCK_SESSION 8

// Flag of a `DLM_CALL_WATCH` request: `name` is a prefix (empty: every
// name), not one name.
#define DLM_WATCH_PREFIX 16

// Flag of a `DLM_CALL_WATCH` request: resume after `revision` (every
// event after it first), instead of starting from now.
#define DLM_WATCH_SINCE 32

// Flag of a `DLM_CALL_PUT` request (and of `dlm_client_put_shared`): any
// client may read the value (PROTOCOL.md section 8, "Shared values").
#define DLM_PUT_READERS_ANY 64

// Flag of a `DLM_CALL_PUT` request: the `readers_count` identities
// `readers` may read the value (at most `DLM_MAX_READERS`). Without it,
// or `DLM_PUT_READERS_ANY`, the value is its owner's alone.
#define DLM_PUT_READERS 128

// The most identities a shared value names as readers.
#define DLM_MAX_READERS 32

// The longest lock-delay a server accepts, in milliseconds.
#define DLM_MAX_LOCK_DELAY_MS 60000

// Bit of `dlm_answer.has`: the server sent a fencing token (`token`).
#define DLM_ANSWER_TOKEN 1

// Bit of `dlm_answer.has`: the server said how long is left (`ttl_ms`).
#define DLM_ANSWER_TTL 2

// Bit of `dlm_answer.has`: the server sent a revision (`revision`).
#define DLM_ANSWER_REVISION 4

// The result of every libdlm call. Values are stable and never reused;
// each failure is one of dlm-core's error kinds, with its number.
enum dlm_status
#if defined(__cplusplus) || __STDC_VERSION__ >= 202311L
  : uint32_t
#endif // defined(__cplusplus) || __STDC_VERSION__ >= 202311L
 {
  // Success.
  DLM_OK = 0,
  // A required pointer argument was NULL.
  DLM_ERR_NULL_PARAMETER = 1,
  // An argument was invalid (empty name, zero TTL, bad UTF-8, ...).
  DLM_ERR_INVALID_ARGUMENT = 2,
  // A bug inside libdlm (a caught panic). The handle remains usable.
  DLM_ERR_PANIC = 3,
  // The server could not be reached, or the connection failed.
  DLM_ERR_UNAVAILABLE = 4,
  // A waiting lock's wait ran out.
  DLM_ERR_TIMEOUT = 5,
  // A blocking call was cancelled with `dlm_cancel_trigger`.
  DLM_ERR_CANCELLED = 6,
  // Another owner holds the lock or entry.
  DLM_ERR_NOT_OWNER = 7,
  // No such data entry.
  DLM_ERR_NOT_FOUND = 8,
  // A compare-and-set put found another revision.
  DLM_ERR_CONFLICT = 9,
  // The server refused the request as malformed or over a limit, or
  // does not know the action.
  DLM_ERR_BAD_REQUEST = 10,
  // The server is out of memory for new entries.
  DLM_ERR_NO_MEMORY = 11,
  // The server answered something that makes no sense.
  DLM_ERR_PROTOCOL = 12,
  // The lock was lost (expired, or taken after expiring).
  DLM_ERR_LOCK_LOST = 13,
  // The output buffer is too small; the needed size was reported.
  DLM_ERR_BUFFER_TOO_SMALL = 14,
  // A value could not be encoded or decoded (wrong encoder or key).
  DLM_ERR_ENCODING = 15,
  // The operating system refused a resource libdlm needs (a thread for
  // auto-renewal, random bytes).
  DLM_ERR_SYSTEM = 16,
};
#ifndef __cplusplus
#if __STDC_VERSION__ >= 202311L
typedef enum dlm_status dlm_status;
#else
typedef uint32_t dlm_status;
#endif // __STDC_VERSION__ >= 202311L
#endif // __cplusplus

// What `dlm_client_test_lock` found.
enum dlm_lock_state
#if defined(__cplusplus) || __STDC_VERSION__ >= 202311L
  : uint32_t
#endif // defined(__cplusplus) || __STDC_VERSION__ >= 202311L
 {
  // Nobody holds the lock.
  DLM_LOCK_FREE = 0,
  // This client holds it.
  DLM_LOCK_MINE = 1,
  // Another owner holds it.
  DLM_LOCK_TAKEN = 2,
};
#ifndef __cplusplus
#if __STDC_VERSION__ >= 202311L
typedef enum dlm_lock_state dlm_lock_state;
#else
typedef uint32_t dlm_lock_state;
#endif // __STDC_VERSION__ >= 202311L
#endif // __cplusplus

// What a request handed out by `dlm_lease_poll_request` asks.
enum dlm_lease_action
#if defined(__cplusplus) || __STDC_VERSION__ >= 202311L
  : uint32_t
#endif // defined(__cplusplus) || __STDC_VERSION__ >= 202311L
 {
  // Nothing to send.
  DLM_LEASE_SEND_NONE = 0,
  // Extend the grant (asked by `dlm_lease_extend`, or the renewal).
  DLM_LEASE_SEND_EXTEND = 1,
  // Release the grant (asked by `dlm_lease_release`).
  DLM_LEASE_SEND_RELEASE = 2,
};
#ifndef __cplusplus
#if __STDC_VERSION__ >= 202311L
typedef enum dlm_lease_action dlm_lease_action;
#else
typedef uint32_t dlm_lease_action;
#endif // __STDC_VERSION__ >= 202311L
#endif // __cplusplus

// What `dlm_failover_poll_connect` tells the caller to do.
enum dlm_failover_step_kind
#if defined(__cplusplus) || __STDC_VERSION__ >= 202311L
  : uint32_t
#endif // defined(__cplusplus) || __STDC_VERSION__ >= 202311L
 {
  // Connect to the address written, within `within_ms` (and the
  // caller's own connect timeout); the connection belongs to `epoch`.
  DLM_FAILOVER_CONNECT = 1,
  // Sleep until `until_ms` (backoff), then ask again.
  DLM_FAILOVER_WAIT = 2,
};
#ifndef __cplusplus
#if __STDC_VERSION__ >= 202311L
typedef enum dlm_failover_step_kind dlm_failover_step_kind;
#else
typedef uint32_t dlm_failover_step_kind;
#endif // __STDC_VERSION__ >= 202311L
#endif // __cplusplus

// What an answered request did (`dlm_lease_handle_response`).
enum dlm_lease_done
#if defined(__cplusplus) || __STDC_VERSION__ >= 202311L
  : uint32_t
#endif // defined(__cplusplus) || __STDC_VERSION__ >= 202311L
 {
  // The grant was extended.
  DLM_LEASE_DONE_EXTENDED = 1,
  // The grant was released.
  DLM_LEASE_DONE_RELEASED = 2,
};
#ifndef __cplusplus
#if __STDC_VERSION__ >= 202311L
typedef enum dlm_lease_done dlm_lease_done;
#else
typedef uint32_t dlm_lease_done;
#endif // __STDC_VERSION__ >= 202311L
#endif // __cplusplus

// What happened, in a `dlm_event`.
enum dlm_event_what
#if defined(__cplusplus) || __STDC_VERSION__ >= 202311L
  : uint32_t
#endif // defined(__cplusplus) || __STDC_VERSION__ >= 202311L
 {
  // A lock, a semaphore permit or a read/write hold was granted (at
  // once or to a waiter).
  DLM_EVENT_GRANTED = 1,
  // It was released (by its holder, an administrator, or taken back
  // from a client that had gone).
  DLM_EVENT_RELEASED = 2,
  // Its TTL (or lock-delay) ran out.
  DLM_EVENT_EXPIRED = 3,
  // A value was stored (created or replaced).
  DLM_EVENT_PUT = 4,
  // A value was erased by its owner.
  DLM_EVENT_ERASED = 5,
};
#ifndef __cplusplus
#if __STDC_VERSION__ >= 202311L
typedef enum dlm_event_what dlm_event_what;
#else
typedef uint32_t dlm_event_what;
#endif // __STDC_VERSION__ >= 202311L
#endif // __cplusplus

// To what kind of name it happened, in a `dlm_event`.
enum dlm_event_kind
#if defined(__cplusplus) || __STDC_VERSION__ >= 202311L
  : uint32_t
#endif // defined(__cplusplus) || __STDC_VERSION__ >= 202311L
 {
  // An exclusive lock.
  DLM_KIND_LOCK = 1,
  // A permit of a semaphore (of `permits` permits).
  DLM_KIND_SEMAPHORE = 2,
  // The shared (read) side of a read/write lock.
  DLM_KIND_READ = 3,
  // The exclusive (write) side of a read/write lock.
  DLM_KIND_WRITE = 4,
  // A data entry (a value).
  DLM_KIND_DATA = 5,
};
#ifndef __cplusplus
#if __STDC_VERSION__ >= 202311L
typedef enum dlm_event_kind dlm_event_kind;
#else
typedef uint32_t dlm_event_kind;
#endif // __STDC_VERSION__ >= 202311L
#endif // __cplusplus

// Which call a `dlm_request` makes (its `call` field).
enum dlm_call
#if defined(__cplusplus) || __STDC_VERSION__ >= 202311L
  : uint32_t
#endif // defined(__cplusplus) || __STDC_VERSION__ >= 202311L
 {
  // Acquire `name` for `ttl_ms`, waiting up to `wait_ms` in the server's
  // queue (0: one attempt). Read its answer with `dlm_lease_new`.
  DLM_CALL_LOCK = 1,
  // Release `name` by name (fenced to `token` if it is not 0).
  DLM_CALL_UNLOCK = 2,
  // Ask who holds `name`.
  DLM_CALL_TEST_LOCK = 3,
  // Store `value` under `name` for `ttl_ms` (compare-and-set against
  // `revision` with `DLM_PUT_IF`).
  DLM_CALL_PUT = 4,
  // Read `name`.
  DLM_CALL_GET = 5,
  // Delete `name`.
  DLM_CALL_ERASE = 6,
  // The server's version string.
  DLM_CALL_VERSION = 7,
  // The server's statistics.
  DLM_CALL_STATS = 8,
  // Take one permit of the counting semaphore `name` of `permits`
  // permits for `ttl_ms`, waiting up to `wait_ms` (as `DLM_CALL_LOCK`).
  // Each acquisition is a hold of its own with its own token. Read its
  // answer with `dlm_lease_new`.
  DLM_CALL_SEMAPHORE = 9,
  // Take the shared (read) side of the read/write lock `name` (as
  // `DLM_CALL_LOCK`). Read its answer with `dlm_lease_new`.
  DLM_CALL_READ_LOCK = 10,
  // Take the exclusive (write) side of the read/write lock `name` (as
  // `DLM_CALL_LOCK`). Read its answer with `dlm_lease_new`.
  DLM_CALL_WRITE_LOCK = 11,
  // Open the connection's server session with a TTL of `ttl_ms`, or,
  // if it has one, keep it alive (PROTOCOL.md section 8, "Sessions and
  // lock-delay"). Send it on the connection the session is to live on,
  // at least once per TTL; `DLM_LOCK_SESSION` binds a lock sent on that
  // connection to it. No `name`. A server without sessions
  // (JackrabbitDLM) is `DLM_ERR_BAD_REQUEST`. With `DLM_LOCK_SESSION`
  // it is a keep-alive, which never opens a session: if the server
  // ended it (its TTL passed), the answer is `DLM_ERR_BAD_REQUEST` (the
  // session and its grants are lost) instead of a new session.
  DLM_CALL_SESSION = 12,
  // Watch `name` (its lock and its value), or, with `DLM_WATCH_PREFIX`,
  // every name that starts with `name` (which may then be empty), from
  // now, or after `revision` with `DLM_WATCH_SINCE` (PROTOCOL.md
  // section 8, "Watches"). Send it on a connection of its own, with no
  // request in flight: the connection then only carries event lines
  // (read each with `dlm_wire_event`). Its answer, read by
  // `dlm_wire_read`, is the revision the watch starts after
  // (`out->revision`), or `DLM_ERR_CONFLICT` with the current revision
  // in `out->revision` if the server no longer keeps the events since
  // `revision` (read the state again, then watch from there), or
  // `DLM_ERR_UNAVAILABLE` if this member cannot serve a watch now
  // (try another, or again later).
  DLM_CALL_WATCH = 13,
  // Take the `names_count` exclusive locks `names` for `ttl_ms`, all or
  // none, waiting up to `wait_ms` in every name's queue at once (0: one
  // attempt); PROTOCOL.md section 8, "Multi-locks". No `name`. Read its
  // answer with `dlm_lease_new_all`: one lease per name, each extended
  // and released as a single lock's. A server without multi-locks
  // (JackrabbitDLM) is `DLM_ERR_BAD_REQUEST`.
  DLM_CALL_LOCK_ALL = 14,
};
#ifndef __cplusplus
#if __STDC_VERSION__ >= 202311L
typedef enum dlm_call dlm_call;
#else
typedef uint32_t dlm_call;
#endif // __STDC_VERSION__ >= 202311L
#endif // __cplusplus

// What became of one attempt of a call (`dlm_failover_handle`'s
// `outcome`).
enum dlm_failover_outcome
#if defined(__cplusplus) || __STDC_VERSION__ >= 202311L
  : uint32_t
#endif // defined(__cplusplus) || __STDC_VERSION__ >= 202311L
 {
  // Connecting failed (refused, unreachable, timed out): nothing sent.
  DLM_OUTCOME_CONNECT_FAILED = 1,
  // The connection failed before any byte of the request was written
  // (or while asking it who leads).
  DLM_OUTCOME_NOT_SENT = 2,
  // The connection failed after the request was (perhaps partly)
  // written, before a whole answer: it may have been applied.
  DLM_OUTCOME_CLOSED = 3,
  // No whole answer within the call's time: it may have been applied.
  DLM_OUTCOME_TIMED_OUT = 4,
  // An answer line came (pass it): a member's refusal to serve now (no
  // leader, not the leader, full, stopping) is told apart here.
  DLM_OUTCOME_ANSWERED = 5,
};
#ifndef __cplusplus
#if __STDC_VERSION__ >= 202311L
typedef enum dlm_failover_outcome dlm_failover_outcome;
#else
typedef uint32_t dlm_failover_outcome;
#endif // __STDC_VERSION__ >= 202311L
#endif // __cplusplus

// A cancellation handle for `dlm_client_lock`'s wait. **Thread-safe**:
// `dlm_cancel_trigger` may be called from any thread while another waits.
// Once triggered it stays triggered; use a new one per wait you may cancel.
typedef struct dlm_cancel dlm_cancel;

// A client of a dlm server or cluster. **Thread-safe**: every function taking a
// `dlm_client` may be called from several threads at once (calls run side
// by side on a small pool of connections). Error messages are kept per
// thread.
typedef struct dlm_client dlm_client;

// The failover state of one client: the servers given and learned, the
// one in use, the backoff. Made by `dlm_failover_new`; not thread-safe.
typedef struct dlm_failover dlm_failover;

// One request's passage through the failover (its deadline, resend rule
// and request ID), made by `dlm_failover_start`, `dlm_failover_start_lease`
// or `dlm_failover_start_connect`; freed with `dlm_failover_call_free`.
typedef struct dlm_failover_call dlm_failover_call;

// A held lock's lease. **Not thread-safe**: one call at a time (the
// caller serialises them, e.g. under a mutex). Times are milliseconds on
// any monotonic clock of the caller's, the same one for every call.
typedef struct dlm_lease dlm_lease;

// A held lock, or several taken together by `dlm_client_lock_all`.
// **Thread-safe**: its functions may be called from several threads
// (they take turns). Freeing it releases the lock (every lock) if still
// held.
typedef struct dlm_lock dlm_lock;

// Options for `dlm_client_new`. Not thread-safe: set it up on one thread,
// then it may be used (read-only) by `dlm_client_new` from any thread.
typedef struct dlm_options dlm_options;

// A server session: a connection of its own, kept alive by a libdlm
// thread (a keep-alive every third of its TTL) until it is closed or
// freed. Locks taken with `dlm_session_acquire` are bound to it: when it
// ends (closed, freed, its connection lost, or this process stopped or
// paused past its TTL), the server releases them, or keeps their names
// closed to everyone for their lock-delay first. There is no failover: a
// session lives and dies with its connection; once lost, take its locks
// as gone and open a new one. **Thread-safe**; its calls take turns.
typedef struct dlm_session dlm_session;

// A lock bound to a `dlm_session`. **Thread-safe**; its calls take
// turns. Freeing it releases it if still held.
typedef struct dlm_session_lock dlm_session_lock;

// A watch: a subscription to the changes of a name or a prefix, over a
// connection of its own (see `dlm_client_watch`). Its calls take turns;
// an event read by `dlm_watch_next` points into it until the next call
// on it.
typedef struct dlm_watch dlm_watch;

// dlm's client without sockets: one owner ID, its framing, credentials
// and value encoder. Immutable once made, so **thread-safe**: any number
// of threads may write and read with it at once.
typedef struct dlm_wire dlm_wire;

// The failover's settings (`dlm_failover_new`); zero-initialise it for
// dlm-core's defaults, or set what differs.
typedef struct dlm_failover_config {
  // The first pause once every known member failed in a row, in
  // milliseconds (0: 25).
  uint64_t backoff_min_ms;
  // The longest pause, in milliseconds (0: 1000).
  uint64_t backoff_max_ms;
  // A call gives up after this many failed connections per known server
  // (0: 3).
  uint32_t connect_rounds;
  // Non-zero: do not ask new connections who leads (for JackrabbitDLM
  // servers, which have no `Cluster` action).
  uint32_t no_discovery;
} dlm_failover_config;

// One call, as `dlm_wire_write` writes it and `dlm_wire_read` reads its
// answer (pass the same request to both). Zero-initialise it and set what
// the call needs; the other fields are ignored.
typedef struct dlm_request {
  // Which call: a `dlm_call` value.
  uint32_t call;
  // `DLM_LOCK_AUTO_RENEW` (a lock; read by `dlm_lease_new`),
  // `DLM_PUT_IF` (a put), `DLM_VALUE_STORED` (a put or get); 0 for none.
  uint32_t flags;
  // The lock's name or data key (UTF-8, not empty; not NUL-terminated).
  const char *name;
  // Length of `name` in bytes.
  size_t name_len;
  // A put's value (any bytes; UTF-8 with `DLM_VALUE_STORED`).
  const void *value;
  // Length of `value` in bytes.
  size_t value_len;
  // Time to live of a lock or put, in milliseconds (> 0).
  uint64_t ttl_ms;
  // How long a lock may wait in the server's queue, in milliseconds
  // (0: one attempt).
  uint64_t wait_ms;
  // An unlock's grant (0: whichever grant this owner holds).
  uint64_t token;
  // The revision a `DLM_PUT_IF` put expects, or the one a
  // `DLM_WATCH_SINCE` watch resumes after.
  uint64_t revision;
  // A `DLM_CALL_SEMAPHORE`'s number of permits (>= 1). Read by that
  // call only, so a program built before this field existed (whose
  // requests end at `revision`) is read as it was.
  uint32_t permits;
  // With `DLM_LOCK_SESSION`, how long after the session ends nobody may
  // take the name, in milliseconds (0: released at once; at most
  // `DLM_MAX_LOCK_DELAY_MS`). Read with that flag only, so a program
  // built before this field existed is read as it was.
  uint64_t lock_delay_ms;
  // A `DLM_CALL_LOCK_ALL`'s lock names (`names_count` pointers, each
  // to UTF-8 text of `name_lens[i]` bytes). This and the next two are
  // read by that call only, so a program built before they existed is
  // read as it was.
  const char *const *names;
  // The lengths of `names`, in bytes.
  const size_t *name_lens;
  // How many `names` (1 to `DLM_MAX_LOCK_ALL`).
  size_t names_count;
  // With `DLM_PUT_READERS`, the identity names that may read the value
  // (`readers_count` pointers, each of `reader_lens[i]` bytes). This and
  // the next two are read with that flag only.
  const char *const *readers;
  // The lengths of `readers`, in bytes.
  const size_t *reader_lens;
  // How many `readers`.
  size_t readers_count;
} dlm_request;

// The step `dlm_failover_poll_connect` says to take.
typedef struct dlm_failover_step {
  // Connect or wait.
  dlm_failover_step_kind kind;
  // The epoch a new connection belongs to (`DLM_FAILOVER_CONNECT`).
  uint64_t epoch;
  // What is left of the call's time (`DLM_FAILOVER_CONNECT`).
  uint64_t within_ms;
  // Until when to sleep (`DLM_FAILOVER_WAIT`).
  uint64_t until_ms;
} dlm_failover_step;

// A lease's state at one instant (`dlm_lease_inspect`).
typedef struct dlm_lease_info {
  // `DLM_LEASE_*` bits.
  uint32_t flags;
  // The fencing token (0 without `DLM_LEASE_HAS_TOKEN`: JackrabbitDLM
  // gives none; then extensions are plain re-locks, never sent once the
  // deadline has passed).
  uint64_t token;
  // The TTL extensions ask for, in milliseconds.
  uint64_t ttl_ms;
  // When the lock expires at the latest unless extended (no later than
  // the server's deadline).
  uint64_t deadline_ms;
  // Milliseconds left at the given time; 0 once lost or released.
  uint64_t remaining_ms;
  // When to call `dlm_lease_handle_timeout` next (with
  // `DLM_LEASE_HAS_TIMEOUT`; none once released or lost).
  uint64_t next_timeout_ms;
} dlm_lease_info;

// Called once when the lock is found lost: on libdlm's renewal thread when
// auto-renewal fails for good, or on the calling thread inside the
// `dlm_lock_*` call that finds the lock gone (an extension or release the
// server refused, or any call after the lock's deadline passed). Must not
// call back into the same `dlm_lock`.
typedef void (*dlm_lost_fn)(void *userdata);

// A custom value encoder or decoder. libdlm calls it with the data key
// `name` (UTF-8, `name_len` bytes, not NUL-terminated), the input bytes,
// and an output buffer of `out_cap` bytes. It
// writes the output and its length to `*out_len` and returns `DLM_OK`; if
// the buffer is too small it sets `*out_len` to the size it needs and
// returns `DLM_ERR_BUFFER_TOO_SMALL` (libdlm calls again with a larger
// buffer); any other status fails the call with `DLM_ERR_ENCODING`. An
// encoder's output must be printable text (it is stored as a JSON
// string). It may be called from several threads at once.
typedef uint32_t (*dlm_encode_fn)(void *userdata,
                                  const char *name,
                                  size_t name_len,
                                  const uint8_t *input,
                                  size_t input_len,
                                  uint8_t *out,
                                  size_t out_cap,
                                  size_t *out_len);

// A custom decoder; same contract as [`dlm_encode_fn`].
typedef dlm_encode_fn dlm_decode_fn;

// One change, as a watcher is told it. Text and value are not
// NUL-terminated; they point into the buffer given to `dlm_wire_event`,
// or into the `dlm_watch` that read it (valid until the next call on it).
typedef struct dlm_event {
  // The change's revision: the same on every member of a cluster, and
  // greater than every revision before it. Resume after it.
  uint64_t revision;
  // What happened.
  dlm_event_what what;
  // To what kind of name.
  dlm_event_kind kind;
  // `DLM_EVENT_HAS_*` bits: which of the optional fields are set.
  uint32_t has;
  // A semaphore's number of permits (`DLM_KIND_SEMAPHORE`; else 0).
  uint32_t permits;
  // The grant's fencing token (locks and holds).
  uint64_t token;
  // The value's own revision (`DLM_EVENT_PUT`).
  uint64_t data_revision;
  // The lock name or data key (UTF-8).
  const char *name;
  // Length of `name` in bytes.
  size_t name_len;
  // The owner ID (UTF-8), if shown; else NULL.
  const char *owner;
  // Length of `owner` in bytes.
  size_t owner_len;
  // The value, decoded by the encoder (or the stored text with
  // `DLM_VALUE_STORED`), if shown; else NULL.
  const void *value;
  // Length of `value` in bytes.
  size_t value_len;
} dlm_event;

// What an answer said, as `dlm_wire_read` reads it. Which fields mean
// something depends on the call; `has` says which of the optional ones
// the server sent (JackrabbitDLM sends no tokens, revisions or TTLs).
typedef struct dlm_answer {
  // `DLM_ANSWER_TOKEN`, `DLM_ANSWER_TTL` and `DLM_ANSWER_REVISION` bits.
  uint32_t has;
  // A test-lock's finding.
  dlm_lock_state state;
  // A test-lock's token, when the lock is this owner's (else 0).
  uint64_t token;
  // A put's new revision or a get's revision (0 if the server keeps
  // none); after `DLM_ERR_CONFLICT`, the current revision (0: no entry).
  uint64_t revision;
  // The time left, in milliseconds, of a test-lock's lock or of a put's
  // or get's value, when the server said (else 0).
  uint64_t ttl_ms;
  // How many bytes of `data` a get, version or stats answer filled (the
  // needed size after `DLM_ERR_BUFFER_TOO_SMALL`).
  size_t data_len;
} dlm_answer;

#ifdef __cplusplus
extern "C" {
#endif // __cplusplus

// A static, NUL-terminated description of `status` (never NULL; an
// unknown value is described as an invalid argument).
const char *dlm_status_string(uint32_t status);

// The library's version, `MAJOR.MINOR.PATCH`, static and NUL-terminated.
// It matches the header's `DLM_VERSION_STRING` when header and library
// come from the same build.
const char *dlm_version(void);

// Creates a cancellation handle.
//
// # Safety
// `out` must be writable.
dlm_status dlm_cancel_new(struct dlm_cancel **out);

// Aborts every wait using this handle, now and later: each returns
// `DLM_ERR_CANCELLED` at once and the server drops it from its queue.
//
// # Safety
// `cancel` must be a live handle.
dlm_status dlm_cancel_trigger(const struct dlm_cancel *cancel);

// Frees a cancellation handle. NULL is accepted. A wait still using it
// keeps its own reference, so freeing early is safe.
//
// # Safety
// `cancel` must be NULL or a pointer from `dlm_cancel_new` not yet freed.
void dlm_cancel_free(struct dlm_cancel *cancel);

// Connects to `addr` (`host:port`), or to a cluster's members
// (`host:port,host:port,...`; one is enough, the others are learned from
// it), with `opts` (NULL for defaults). Requests go to the cluster's
// leader and follow it when it changes, within each call's timeout. One
// connection is opened now, so an unreachable server is reported here
// (`DLM_ERR_UNAVAILABLE`: no member answered). `opts` may be freed
// afterwards.
//
// # Safety
// `addr` must point to `addr_len` readable bytes; `opts` must be NULL or a
// live pointer from `dlm_options_new`; `out` must be writable.
dlm_status dlm_client_new(const char *addr,
                          size_t addr_len,
                          const struct dlm_options *opts,
                          struct dlm_client **out);

// Frees a client. Locks made by it must be freed first. NULL is accepted.
//
// # Safety
// `client` must be NULL or a pointer from `dlm_client_new` not yet freed,
// with no call on it still running.
void dlm_client_free(struct dlm_client *client);

// Copies into `buf` (NUL-terminated) what the calling thread's most
// recent libdlm call said beyond its status, if that call was on this
// client and failed: e.g. `Connection refused (os error 111)` for
// `DLM_ERR_UNAVAILABLE`. Empty if that call succeeded, was on another
// handle, or its status says it all. Reading it records nothing.
//
// # Safety
// `client` must be a live client; `buf` must hold `len` writable bytes;
// `out_n` must be writable.
dlm_status dlm_client_last_error(const struct dlm_client *client,
                                 char *buf,
                                 size_t len,
                                 size_t *out_n);

// Copies the client's owner ID (NUL-terminated) into `buf`.
//
// # Safety
// As for `dlm_client_last_error`.
dlm_status dlm_client_id(const struct dlm_client *client,
                         char *buf,
                         size_t len,
                         size_t *out_n);

// Copies the server the client talks to now (`host:port`,
// NUL-terminated) into `buf`: the cluster's leader once a member said who
// leads. For logs: it changes when the client moves on after a failure.
//
// # Safety
// As for `dlm_client_last_error`.
dlm_status dlm_client_server(const struct dlm_client *client,
                             char *buf,
                             size_t len,
                             size_t *out_n);

// Asks whether `name` is locked, without acquiring it. Writes the state,
// and (each may be NULL) the token if this client holds it (0 if the
// server gives no tokens) and the remaining milliseconds if the server
// said.
//
// # Safety
// `client` must be a live client; `name` must point to `name_len` readable
// bytes; out-pointers must be writable (or NULL where allowed).
dlm_status dlm_client_test_lock(const struct dlm_client *client,
                                const char *name,
                                size_t name_len,
                                dlm_lock_state *out_state,
                                uint64_t *out_token,
                                uint64_t *out_remaining_ms);

// Releases `name` if this client holds it; with `token` > 0, only the
// grant with that token. `DLM_ERR_NOT_FOUND` if no lock was live,
// `DLM_ERR_NOT_OWNER` if another owner (or grant) holds it. Prefer
// `dlm_lock_release` on a lock handle; this is for recovering by name.
//
// # Safety
// `client` must be a live client; `name` must point to `name_len` bytes.
dlm_status dlm_client_unlock(const struct dlm_client *client,
                             const char *name,
                             size_t name_len,
                             uint64_t token);

// Stores `value` under `name` for `ttl_ms` milliseconds, encoded by the
// client's encoder. Writes the new revision to `out_revision` (may be
// NULL; 0 from a server that keeps no revisions, JackrabbitDLM).
//
// # Safety
// `client` must be a live client; `name` and `value` must point to their
// lengths in readable bytes; `out_revision` NULL or writable.
dlm_status dlm_client_put(const struct dlm_client *client,
                          const char *name,
                          size_t name_len,
                          const void *value,
                          size_t value_len,
                          uint64_t ttl_ms,
                          uint64_t *out_revision);

// Stores `value` under `name` for `ttl_ms` milliseconds, as
// `dlm_client_put` does, shared with readers (PROTOCOL.md section 8,
// "Shared values"): the `readers_count` identity names `readers` (each
// `reader_lens[i]` bytes; at most 32, each 1 to 255 ASCII letters,
// digits, `-`, `_` or `.`, not starting with `.`) may then read it with
// `dlm_client_get` of the same name, whatever their client ID; with
// `DLM_PUT_READERS_ANY` in `flags` (and no names), any client may. No
// names and no flag: its owner alone, as `dlm_client_put`. Writing stays
// the owner's, and each put says its readers anew. A JackrabbitDLM
// server ignores readers (the value stays its owner's).
//
// # Safety
// As for `dlm_client_put`; `readers` and `reader_lens` must point to
// `readers_count` elements (or be NULL with 0), each name to its length
// in readable bytes.
dlm_status dlm_client_put_shared(const struct dlm_client *client,
                                 const char *name,
                                 size_t name_len,
                                 const void *value,
                                 size_t value_len,
                                 uint64_t ttl_ms,
                                 const char *const *readers,
                                 const size_t *reader_lens,
                                 size_t readers_count,
                                 uint32_t flags,
                                 uint64_t *out_revision);

// Compare-and-set: stores `value` only if the stored revision is
// `expected` (0: only if there is no entry). On `DLM_OK`, the new revision
// goes to `out_revision`; on `DLM_ERR_CONFLICT`, the *current* revision
// does (0 if there is no entry) — the one exception to out-parameters
// being written only on success. A server without compare-and-set
// (JackrabbitDLM) writes the value anyway: `DLM_ERR_PROTOCOL` says so.
//
// # Safety
// As for `dlm_client_put`.
dlm_status dlm_client_put_if(const struct dlm_client *client,
                             const char *name,
                             size_t name_len,
                             const void *value,
                             size_t value_len,
                             uint64_t ttl_ms,
                             uint64_t expected,
                             uint64_t *out_revision);

// Reads `name` into `buf` (decoded by the client's encoder; not
// NUL-terminated), its length into `out_len`, and (if not NULL) its
// revision into `out_revision` (0 from a server that keeps none).
// `DLM_ERR_NOT_FOUND` if there is no entry. If `buf` is too small, returns
// `DLM_ERR_BUFFER_TOO_SMALL` with the needed length in `out_len` and
// nothing else written.
//
// # Safety
// `client` must be a live client; `name` must point to `name_len` bytes;
// `buf` to `buf_len` writable bytes (or NULL with 0); `out_len` writable.
dlm_status dlm_client_get(const struct dlm_client *client,
                          const char *name,
                          size_t name_len,
                          void *buf,
                          size_t buf_len,
                          size_t *out_len,
                          uint64_t *out_revision);

// Reads `name` as `dlm_client_get` does, and also whose value it is: its
// owner's client ID (NUL-terminated) into `owner` (`owner_cap` bytes),
// its length into `out_owner_len` (0 if the server did not say:
// JackrabbitDLM). For a value another owner shared with this client
// (`dlm_client_put_shared`), that owner's ID; for this client's own, its
// own. If either buffer is too small, returns `DLM_ERR_BUFFER_TOO_SMALL`
// with both needed lengths (`out_len`, `out_owner_len`, without the NUL)
// written and nothing else.
//
// # Safety
// As for `dlm_client_get`; `owner` must hold `owner_cap` writable bytes
// (or be NULL with 0); `out_owner_len` writable.
dlm_status dlm_client_get_with_owner(const struct dlm_client *client,
                                     const char *name,
                                     size_t name_len,
                                     void *buf,
                                     size_t buf_len,
                                     size_t *out_len,
                                     uint64_t *out_revision,
                                     char *owner,
                                     size_t owner_cap,
                                     size_t *out_owner_len);

// Deletes `name`. `DLM_ERR_NOT_FOUND` if there was no entry.
//
// # Safety
// `client` must be a live client; `name` must point to `name_len` bytes.
dlm_status dlm_client_erase(const struct dlm_client *client,
                            const char *name,
                            size_t name_len);

// Copies the server's version string (NUL-terminated; it contains
// "JackrabbitDLM") into `buf`.
//
// # Safety
// As for `dlm_client_last_error`.
dlm_status dlm_client_server_version(const struct dlm_client *client,
                                     char *buf,
                                     size_t len,
                                     size_t *out_n);

// Copies the server's statistics as a JSON object (NUL-terminated), e.g.
// `{"ALock":3,"Lock":12,...}`, into `buf`.
//
// # Safety
// As for `dlm_client_last_error`.
dlm_status dlm_client_stats_json(const struct dlm_client *client,
                                 char *buf,
                                 size_t len,
                                 size_t *out_n);

// Makes the failover over `servers` (`"host:port"`, or several separated
// by commas, as `DLM_SERVER` holds them), with `config` (NULL for the
// defaults) and 16 random bytes at `seed` (the backoff's jitter and the
// request IDs come from them; draw them from the system's generator).
// `DLM_ERR_INVALID_ARGUMENT` if the list is not valid; what is wrong
// with it is read with `dlm_failover_last_error(NULL, ...)` (the call was
// on no failover yet).
//
// # Safety
// `servers` must point to `servers_len` readable bytes; `config` must be
// NULL or readable; `seed` must point to 16 readable bytes; `out` must be
// writable. Free the failover with `dlm_failover_free`.
dlm_status dlm_failover_new(const char *servers,
                            size_t servers_len,
                            const struct dlm_failover_config *config,
                            const uint8_t *seed,
                            struct dlm_failover **out);

// Frees a failover. Its calls need not be freed first (they do not point
// at it). NULL is accepted.
//
// # Safety
// `fo` must be NULL or a pointer from `dlm_failover_new` not yet freed,
// with no call on it still running.
void dlm_failover_free(struct dlm_failover *fo);

// Frees a call. NULL is accepted.
//
// # Safety
// `call` must be NULL or a pointer from a `dlm_failover_start*` function
// not yet freed, not in use by another thread.
void dlm_failover_call_free(struct dlm_failover_call *call);

// Copies into `buf` (NUL-terminated) what the calling thread's most
// recent call on this failover (or on NULL: `dlm_failover_new`) said
// beyond its status: why a call gave up, what is wrong with a server
// list. Reading it records nothing.
//
// # Safety
// `buf` must hold `len` writable bytes; `out_n` must be writable.
dlm_status dlm_failover_last_error(const struct dlm_failover *fo,
                                   char *buf,
                                   size_t len,
                                   size_t *out_n);

// Copies the server in use (`host:port`, NUL-terminated) into `buf`: the
// cluster's leader once a member said who it is. For logs.
//
// # Safety
// `fo` must be a live failover; `buf` must hold `len` writable bytes;
// `out_n` must be writable.
dlm_status dlm_failover_server(struct dlm_failover *fo,
                               char *buf,
                               size_t len,
                               size_t *out_n);

// Writes the current epoch to `out`: a connection made at another epoch
// is to a server no longer in use (close it rather than pool it).
//
// # Safety
// `fo` must be a live failover; `out` must be writable.
dlm_status dlm_failover_epoch(struct dlm_failover *fo,
                              uint64_t *out);

// Starts a call of `req` (a `dlm_request`, as for `dlm_wire_write`) at
// `now_ms`, to be over by `now_ms + timeout_ms` (plus a lock's wait). A
// put, erase or unlock gets a request ID here, so that the server applies
// it once however often it is sent; a put's value is encoded here, once.
// Write each attempt with `dlm_failover_call_write`.
//
// # Safety
// `fo` and `wire` must be live; `req` must point to a valid
// `dlm_request`; `out` must be writable. Free the call with
// `dlm_failover_call_free`.
dlm_status dlm_failover_start(struct dlm_failover *fo,
                              const struct dlm_wire *wire,
                              const struct dlm_request *req,
                              uint64_t now_ms,
                              uint64_t timeout_ms,
                              struct dlm_failover_call **out);

// Starts a call of the request the lease wants sent (an extension or a
// release; `out_action` says which, and `*out` is NULL with
// `DLM_LEASE_SEND_NONE` if there is none). The request is then in flight:
// answer it with `dlm_lease_handle_response` (an accepted answer) or
// `dlm_lease_handle_failure` (the call gave up). An extension's call ends
// by the lease's deadline at the latest (past it the lock is lost
// anyway); a release carries the grant's own request ID, so asking for
// it again after a failed call still releases it once.
//
// # Safety
// `fo`, `lease` and `wire` must be live (the wire the lock was requested
// with), none in use by another thread; `out` must be writable;
// `out_action` NULL or writable.
dlm_status dlm_failover_start_lease(struct dlm_failover *fo,
                                    struct dlm_lease *lease,
                                    const struct dlm_wire *wire,
                                    uint64_t now_ms,
                                    uint64_t timeout_ms,
                                    struct dlm_failover_call **out,
                                    dlm_lease_action *out_action);

// Starts a call that only connects (and asks who leads), to be over by
// `now_ms + timeout_ms`: for a client that opens a connection up front.
//
// # Safety
// `fo` must be live; `out` must be writable.
dlm_status dlm_failover_start_connect(struct dlm_failover *fo,
                                      uint64_t now_ms,
                                      uint64_t timeout_ms,
                                      struct dlm_failover_call **out);

// Says what to do to get a connection for `call` at `now_ms`, in `out`:
// connect to the address written into `addr` (NUL-terminated; `addr_len`
// must be at least `DLM_FAILOVER_ADDRESS_MAX + 1`), or wait. Giving up is
// the call's error status (`DLM_ERR_UNAVAILABLE`: no member answered
// within the time), its detail in `dlm_failover_last_error`.
//
// # Safety
// `fo` and `call` must be live; `addr` must hold `addr_len` writable
// bytes; `out` must be writable.
dlm_status dlm_failover_poll_connect(struct dlm_failover *fo,
                                     struct dlm_failover_call *call,
                                     uint64_t now_ms,
                                     char *addr,
                                     size_t addr_len,
                                     struct dlm_failover_step *out);

// A connection made for `epoch` is up: writes to `out_ask` whether to
// ask it who leads first (send `dlm_failover_discovery_line`, hand the
// answer to `dlm_failover_discovered`).
//
// # Safety
// `fo` must be live; `out_ask` must be writable.
dlm_status dlm_failover_connected(struct dlm_failover *fo,
                                  uint64_t epoch,
                                  bool *out_ask);

// Writes the request that asks a member who leads (`{"Action":"Cluster"}`
// with the wire's credentials) into `buf`, its length into `out_n`
// (`DLM_ERR_BUFFER_TOO_SMALL` with the needed length if it does not fit).
//
// # Safety
// `wire` must be live; `buf` must hold `len` writable bytes (or be NULL
// with `len` 0); `out_n` must be writable.
dlm_status dlm_failover_discovery_line(const struct dlm_wire *wire,
                                       char *buf,
                                       size_t len,
                                       size_t *out_n);

// What the member reached at `epoch` answered (`line`) to the discovery
// request, for `call` at `now_ms`. Writes to `out_stay` whether to use
// this connection for the call: false if the leader is another member
// (the epoch moved there), or the member could not say (a server without
// the action may close the connection: open another), or it refused to
// serve now; then close it and go back to `dlm_failover_poll_connect`.
// A refusal that ends the call is its error status.
//
// # Safety
// `fo` and `call` must be live; `line` must point to `line_len` readable
// bytes; `out_stay` must be writable.
dlm_status dlm_failover_discovered(struct dlm_failover *fo,
                                   struct dlm_failover_call *call,
                                   uint64_t epoch,
                                   const char *line,
                                   size_t line_len,
                                   uint64_t now_ms,
                                   bool *out_stay);

// Writes the line of this attempt of `call` at `now_ms` (its request ID,
// a lock's wait cut to what is left of it) into `buf`, its length into
// `out_n` (`DLM_ERR_BUFFER_TOO_SMALL` with the needed length if it does
// not fit), and what is left of the call's time into `out_remaining_ms`
// (may be NULL): the most the answer may take. `wire` must be the one the
// call was started with.
//
// # Safety
// `call` and `wire` must be live; `buf` must hold `len` writable bytes
// (or be NULL with `len` 0); `out_n` must be writable; `out_remaining_ms`
// NULL or writable.
dlm_status dlm_failover_call_write(struct dlm_failover_call *call,
                                   const struct dlm_wire *wire,
                                   uint64_t now_ms,
                                   char *buf,
                                   size_t len,
                                   size_t *out_n,
                                   uint64_t *out_remaining_ms);

// What is left of `call`'s time at `now_ms`, into `out_ms`.
//
// # Safety
// `call` must be live; `out_ms` must be writable.
dlm_status dlm_failover_call_remaining(const struct dlm_failover_call *call,
                                       uint64_t now_ms,
                                       uint64_t *out_ms);

// Reports what became of an attempt of `call` on a connection of
// `epoch`, at `now_ms` (with the answer `line` for
// `DLM_OUTCOME_ANSWERED`; NULL otherwise), and writes to `out_retry`
// whether to send it again (back to `dlm_failover_poll_connect`; false:
// read the answer, the call is over). Giving up is the call's error
// status (`DLM_ERR_UNAVAILABLE`), its detail in `dlm_failover_last_error`:
// no member answered in time, or the request may have been applied and
// cannot be sent again.
//
// # Safety
// `fo` and `call` must be live; `line` must be NULL (with `line_len` 0)
// or point to `line_len` readable bytes; `out_retry` must be writable.
dlm_status dlm_failover_handle(struct dlm_failover *fo,
                               struct dlm_failover_call *call,
                               uint64_t epoch,
                               uint32_t outcome,
                               const char *line,
                               size_t line_len,
                               uint64_t now_ms,
                               bool *out_retry);

// Reads the server's answer `line` to the lock request `req` (a
// `DLM_CALL_LOCK`, `DLM_CALL_SEMAPHORE`, `DLM_CALL_READ_LOCK` or
// `DLM_CALL_WRITE_LOCK`, sent at `sent_ms` and answered at `now_ms`) and
// makes the lease of the grant (of the hold, which the lease extends and
// releases by its token). `DLM_LOCK_AUTO_RENEW` in the request's flags
// makes the lease renew itself. A refusal is `DLM_ERR_NOT_OWNER` after one
// attempt, `DLM_ERR_TIMEOUT` after a wait that ran out (`NOT_OWNER` if
// the server answered before the wait could have: it has no queue), and
// so on; its detail is in `dlm_wire_last_error`. `line` is not modified.
//
// # Safety
// `wire` must be a live wire; `req` must point to a valid `dlm_request`;
// `line` to `line_len` readable bytes; `out` must be writable. Free the
// lease with `dlm_lease_free`. A semaphore of another size, or a name
// that is another kind of lock, is `DLM_ERR_CONFLICT`.
dlm_status dlm_lease_new(const struct dlm_wire *wire,
                         const struct dlm_request *req,
                         uint64_t sent_ms,
                         uint64_t now_ms,
                         const char *line,
                         size_t line_len,
                         struct dlm_lease **out);

// Reads the server's answer `line` to the multi-lock request `req` (a
// `DLM_CALL_LOCK_ALL`, sent at `sent_ms` and answered at `now_ms`) and
// makes one lease per name, in the order of `req->names`, into `out`
// (`cap` elements; `req->names_count` are written). Each is an ordinary
// lock's lease, extended and released by its own token (dlm's clients
// extend and release them together); `DLM_LOCK_AUTO_RENEW` makes each
// renew itself. A refusal is `DLM_ERR_NOT_OWNER` after one attempt (no
// name is taken), `DLM_ERR_TIMEOUT` after a wait that ran out,
// `DLM_ERR_CONFLICT` for a name that is a semaphore or read/write lock,
// `DLM_ERR_BAD_REQUEST` from a server without multi-locks; its detail is
// in `dlm_wire_last_error`. If `cap` is smaller than `req->names_count`,
// `DLM_ERR_BUFFER_TOO_SMALL` and nothing is made (the locks stay granted:
// call again with room). `line` is not modified.
//
// # Safety
// `wire` must be a live wire; `req` must point to a valid `dlm_request`;
// `line` to `line_len` readable bytes; `out` to `cap` writable pointers.
// Free each lease with `dlm_lease_free`.
dlm_status dlm_lease_new_all(const struct dlm_wire *wire,
                             const struct dlm_request *req,
                             uint64_t sent_ms,
                             uint64_t now_ms,
                             const char *line,
                             size_t line_len,
                             struct dlm_lease **out,
                             size_t cap);

// Frees a lease. Nothing is sent: release the grant first
// (`dlm_lease_release`) unless it is meant to expire. NULL is accepted.
//
// # Safety
// `lease` must be NULL or a pointer from `dlm_lease_new` not yet freed,
// with no call on it still running.
void dlm_lease_free(struct dlm_lease *lease);

// Copies into `buf` (NUL-terminated) what the calling thread's most
// recent libdlm call said beyond its status, if that call was on this
// lease and failed (see `dlm_client_last_error`). Reading it records
// nothing.
//
// # Safety
// `lease` must be a live lease; `buf` must hold `len` writable bytes;
// `out_n` must be writable.
dlm_status dlm_lease_last_error(const struct dlm_lease *lease,
                                char *buf,
                                size_t len,
                                size_t *out_n);

// Writes the lease's state at `now_ms` to `out`. It changes nothing (call
// `dlm_lease_handle_timeout` first to let a passed deadline lose it).
//
// # Safety
// `lease` must be a live lease; `out` must be writable.
dlm_status dlm_lease_inspect(const struct dlm_lease *lease,
                             uint64_t now_ms,
                             struct dlm_lease_info *out);

// Advances the lease to `now_ms`: a passed deadline loses the lock, a due
// renewal queues an extension (hand it out with `dlm_lease_poll_request`).
//
// # Safety
// `lease` must be a live lease.
dlm_status dlm_lease_handle_timeout(struct dlm_lease *lease,
                                    uint64_t now_ms);

// Asks to extend the grant to `ttl_ms` from when the request is sent
// (and makes it the TTL renewals ask for); hand the request out with
// `dlm_lease_poll_request`. `DLM_ERR_LOCK_LOST` if the lock is lost or
// released (an extension never re-acquires), `DLM_ERR_INVALID_ARGUMENT`
// for a zero TTL.
//
// # Safety
// `lease` must be a live lease.
dlm_status dlm_lease_extend(struct dlm_lease *lease,
                            uint64_t now_ms,
                            uint64_t ttl_ms);

// Asks to release the grant (also after it was found lost: the server may
// still hold it) and stops the renewal; hand the request out with
// `dlm_lease_poll_request`. Writes to `out_queued` (may be NULL) whether
// there is a release to send: false once the server confirmed one.
//
// # Safety
// `lease` must be a live lease; `out_queued` NULL or writable.
dlm_status dlm_lease_release(struct dlm_lease *lease,
                             uint64_t now_ms,
                             bool *out_queued);

// Writes the next request line the lease wants sent (ending in `\n`, not
// NUL-terminated) into `buf`, its length into `out_n` and what it asks
// into `out_action` (may be NULL); `out_n` is 0 and the action
// `DLM_LEASE_SEND_NONE` if there is nothing to send (one request is in flight
// at a time). The request is then in flight: answer it with
// `dlm_lease_handle_response` or `dlm_lease_handle_failure`. If `buf` is
// too small, returns `DLM_ERR_BUFFER_TOO_SMALL` with the needed length in
// `out_n`, and the next call hands out the same line. `wire` must be the
// wire the lock was requested with (the owner ID, framing and credentials
// of the request).
//
// # Safety
// `lease` and `wire` must be live; `buf` must hold `len` writable bytes
// (or be NULL with `len` 0); `out_n` writable; `out_action` NULL or
// writable.
dlm_status dlm_lease_poll_request(struct dlm_lease *lease,
                                  const struct dlm_wire *wire,
                                  uint64_t now_ms,
                                  char *buf,
                                  size_t len,
                                  size_t *out_n,
                                  dlm_lease_action *out_action);

// Reads the server's answer `line` to the request in flight, received at
// `now_ms`, and writes what it did to `out_done` (may be NULL). A refusal
// is its error status, its detail in `dlm_lease_last_error`:
// `DLM_ERR_LOCK_LOST` if the grant is gone (the lease is then lost). A
// refused renewal that is not a loss is retried by the lease. `line` is
// not modified.
//
// # Safety
// `lease` must be a live lease; `line` must point to `line_len` readable
// bytes; `out_done` NULL or writable.
dlm_status dlm_lease_handle_response(struct dlm_lease *lease,
                                     uint64_t now_ms,
                                     const char *line,
                                     size_t line_len,
                                     dlm_lease_done *out_done);

// Tells the lease the request in flight got no answer (the connection
// failed or timed out) at `now_ms`. A failed renewal is retried until the
// deadline; a failed release may be asked for again.
//
// # Safety
// `lease` must be a live lease.
dlm_status dlm_lease_handle_failure(struct dlm_lease *lease,
                                    uint64_t now_ms);

// Writes to `out_lost` whether the lock was lost since the last call:
// true once, when the loss is first reported (a host runs its "lost"
// callback then).
//
// # Safety
// `lease` must be a live lease; `out_lost` must be writable.
dlm_status dlm_lease_poll_event(struct dlm_lease *lease,
                                bool *out_lost);

// Acquires `name` for `ttl_ms` milliseconds.
//
// With `wait_ms` 0, one attempt: `DLM_ERR_NOT_OWNER` if another owner
// holds it. Otherwise the call waits in the server's first-come,
// first-served queue up to `wait_ms`, then fails with `DLM_ERR_TIMEOUT`;
// another thread can abort the wait with `dlm_cancel_trigger` on `cancel`
// (`DLM_ERR_CANCELLED`). `flags` may hold `DLM_LOCK_AUTO_RENEW`.
// `on_lost(userdata)` (may be NULL) runs once if the lock is found lost
// (see [`dlm_lost_fn`]).
//
// # Safety
// `client` must be a live client; `name` must point to `name_len` bytes;
// `cancel` NULL or a live cancel handle; `on_lost` and `userdata` usable
// from another thread until the lock is freed; `out` writable.
dlm_status dlm_client_lock(const struct dlm_client *client,
                           const char *name,
                           size_t name_len,
                           uint64_t ttl_ms,
                           uint64_t wait_ms,
                           uint32_t flags,
                           const struct dlm_cancel *cancel,
                           dlm_lost_fn on_lost,
                           void *userdata,
                           struct dlm_lock **out);

// Takes one permit of the counting semaphore `name` of `permits` permits
// (at least 1) for `ttl_ms` milliseconds, as `dlm_client_lock` takes a
// lock (the same wait, cancel, flags and lost callback). Each acquisition
// is a hold of its own with its own fencing token (the same client may
// hold several permits); its `dlm_lock` extends and releases that hold
// only. Waiters are served first come, first served. The size is fixed by
// the first use while anyone holds or waits: another size, or a name that
// is another kind of lock, fails with `DLM_ERR_CONFLICT` (its detail in
// `dlm_client_last_error`); `permits` 0 is `DLM_ERR_INVALID_ARGUMENT`.
//
// # Safety
// As for `dlm_client_lock`.
dlm_status dlm_client_semaphore(const struct dlm_client *client,
                                const char *name,
                                size_t name_len,
                                uint32_t permits,
                                uint64_t ttl_ms,
                                uint64_t wait_ms,
                                uint32_t flags,
                                const struct dlm_cancel *cancel,
                                dlm_lost_fn on_lost,
                                void *userdata,
                                struct dlm_lock **out);

// Takes the shared (read) side of the read/write lock `name`, as
// `dlm_client_lock` takes a lock: held beside other readers, never beside
// a writer. Waiters form one first-come, first-served queue, so a writer
// that waits is served before readers that come after it. A name that is
// another kind of lock fails with `DLM_ERR_CONFLICT`.
//
// # Safety
// As for `dlm_client_lock`.
dlm_status dlm_client_read_lock(const struct dlm_client *client,
                                const char *name,
                                size_t name_len,
                                uint64_t ttl_ms,
                                uint64_t wait_ms,
                                uint32_t flags,
                                const struct dlm_cancel *cancel,
                                dlm_lost_fn on_lost,
                                void *userdata,
                                struct dlm_lock **out);

// Takes the exclusive (write) side of the read/write lock `name`, as
// `dlm_client_lock` takes a lock: held alone. A name that is another kind
// of lock fails with `DLM_ERR_CONFLICT`.
//
// # Safety
// As for `dlm_client_lock`.
dlm_status dlm_client_write_lock(const struct dlm_client *client,
                                 const char *name,
                                 size_t name_len,
                                 uint64_t ttl_ms,
                                 uint64_t wait_ms,
                                 uint32_t flags,
                                 const struct dlm_cancel *cancel,
                                 dlm_lost_fn on_lost,
                                 void *userdata,
                                 struct dlm_lock **out);

// Takes the `count` exclusive locks `names` (each `name_lens[i]` bytes)
// for `ttl_ms` milliseconds, **all or none** (PROTOCOL.md section 8,
// "Multi-locks"): one `dlm_lock` for the set, whose fencing tokens, one
// per name in the order given, `dlm_lock_tokens` reads (distinct, and
// above every token before them). Each name is then an ordinary lock of
// its own; `dlm_lock_extend` extends every one (each by its token),
// `dlm_lock_release` and `dlm_lock_free` release every one.
//
// With `wait_ms` 0, one attempt: `DLM_ERR_NOT_OWNER` (nothing taken) if
// any name is held or awaited by another, or already held by this
// client. Otherwise the set waits in every name's queue at once, and is
// granted all together when first in line on each, up to `wait_ms`
// (`DLM_ERR_TIMEOUT`); `cancel` aborts the wait (`DLM_ERR_CANCELLED`).
// `flags` may hold `DLM_LOCK_AUTO_RENEW` (every lock renewed); `on_lost`
// runs once if any of them is found lost. From 1 to `DLM_MAX_LOCK_ALL`
// distinct names, else `DLM_ERR_INVALID_ARGUMENT`; a name that is a
// semaphore or read/write lock is `DLM_ERR_CONFLICT`; a server without
// multi-locks (JackrabbitDLM) is `DLM_ERR_BAD_REQUEST`.
//
// # Safety
// `client` must be a live client; `names` and `name_lens` must point to
// `count` elements, each name to its length in readable bytes; `cancel`,
// `on_lost`, `userdata` and `out` as for `dlm_client_lock`.
dlm_status dlm_client_lock_all(const struct dlm_client *client,
                               const char *const *names,
                               const size_t *name_lens,
                               size_t count,
                               uint64_t ttl_ms,
                               uint64_t wait_ms,
                               uint32_t flags,
                               const struct dlm_cancel *cancel,
                               dlm_lost_fn on_lost,
                               void *userdata,
                               struct dlm_lock **out);

// The grant's fencing token: pass it to whatever the lock protects. 0 if
// the server gives no tokens (JackrabbitDLM): nothing can fence then, and
// extensions are plain re-locks, sent only before the lock's deadline.
// Of a multi-lock, its first name's (see `dlm_lock_tokens`).
//
// # Safety
// `lock` must be a live lock; `out` writable.
dlm_status dlm_lock_token(const struct dlm_lock *lock,
                          uint64_t *out);

// Copies the fencing tokens into `out` (`cap` elements), one per name in
// the order given to `dlm_client_lock_all` (one for any other lock), and
// their number into `out_count`. If `cap` is too small, returns
// `DLM_ERR_BUFFER_TOO_SMALL` with only `out_count` written.
//
// # Safety
// `lock` must be a live lock; `out` must hold `cap` writable elements
// (or be NULL with `cap` 0); `out_count` writable.
dlm_status dlm_lock_tokens(const struct dlm_lock *lock,
                           uint64_t *out,
                           size_t cap,
                           size_t *out_count);

// Milliseconds left before the lock (of a multi-lock, the first of its
// locks) expires unless extended, by this process's clock; 0 once lost
// or released.
//
// # Safety
// `lock` must be a live lock; `out` writable.
dlm_status dlm_lock_remaining_ms(const struct dlm_lock *lock,
                                 uint64_t *out);

// Whether the lock (of a multi-lock, any of its locks) is known lost: its
// deadline passed without a confirmed extension (auto-renewal failing, or
// none asked for), or an extension or release found it gone.
//
// # Safety
// `lock` must be a live lock; `out` writable.
dlm_status dlm_lock_is_lost(const struct dlm_lock *lock,
                            bool *out);

// Extends this grant to `ttl_ms` from now. Never re-acquires: a lock that
// expired or was released gives `DLM_ERR_LOCK_LOST`. A multi-lock
// extends every lock, each by its token, and returns the first failure.
//
// # Safety
// `lock` must be a live lock.
dlm_status dlm_lock_extend(const struct dlm_lock *lock,
                           uint64_t ttl_ms);

// Releases the lock (every lock of a multi-lock, returning the first
// failure). Idempotent: releasing again returns `DLM_OK`.
// `DLM_ERR_LOCK_LOST` if it had expired before this release.
//
// # Safety
// `lock` must be a live lock.
dlm_status dlm_lock_release(const struct dlm_lock *lock);

// Copies into `buf` (NUL-terminated) what the calling thread's most
// recent libdlm call said beyond its status, if that call was on this lock
// and failed (see `dlm_client_last_error`). Reading it records nothing.
//
// # Safety
// `lock` must be a live lock; `buf` must hold `len` writable bytes;
// `out_n` writable.
dlm_status dlm_lock_last_error(const struct dlm_lock *lock,
                               char *buf,
                               size_t len,
                               size_t *out_n);

// Frees the lock handle, releasing the lock first if still held (best
// effort; use `dlm_lock_release` to learn the outcome). NULL is accepted.
//
// # Safety
// `lock` must be NULL or a pointer from `dlm_client_lock` (or
// `dlm_client_semaphore`, `dlm_client_read_lock`, `dlm_client_write_lock`,
// `dlm_client_lock_all`)
// not yet freed, with no call on it still running.
void dlm_lock_free(struct dlm_lock *lock);

// Creates options with the defaults: 5 s connect timeout, 10 s I/O
// timeout, a random client ID, plain JSON framing, the table encoder.
//
// # Safety
// `out` must be NULL or valid for writes.
dlm_status dlm_options_new(struct dlm_options **out);

// Frees options. NULL is accepted.
//
// # Safety
// `opts` must be NULL or a pointer from `dlm_options_new` not yet freed.
void dlm_options_free(struct dlm_options *opts);

// How long to wait for a TCP connection, in milliseconds (> 0).
//
// # Safety
// `opts` must be a live pointer from `dlm_options_new`.
dlm_status dlm_options_set_connect_timeout_ms(struct dlm_options *opts,
                                              uint64_t ms);

// How long to wait for an answer, in milliseconds (> 0), beyond a lock's
// own wait.
//
// # Safety
// `opts` must be a live pointer from `dlm_options_new`.
dlm_status dlm_options_set_io_timeout_ms(struct dlm_options *opts,
                                         uint64_t ms);

// The owner ID to use (UTF-8, not empty), instead of a random one.
//
// # Safety
// `opts` must be a live pointer from `dlm_options_new`; `id` must point
// to `id_len` readable bytes.
dlm_status dlm_options_set_client_id(struct dlm_options *opts,
                                     const char *id,
                                     size_t id_len);

// Sends JackrabbitDLM's table-encoded framing instead of plain JSON, to
// talk to a JackrabbitDLM server. Every request then gets a connection of
// its own, closed after the answer, as that server closes it.
//
// # Safety
// `opts` must be a live pointer from `dlm_options_new`.
dlm_status dlm_options_set_legacy_framing(struct dlm_options *opts,
                                          bool legacy);

// Authenticates every request as the identity `name` with `secret`.
//
// # Safety
// `opts` must be a live pointer from `dlm_options_new`; the strings must
// point to their lengths in readable bytes.
dlm_status dlm_options_set_credentials(struct dlm_options *opts,
                                       const char *name,
                                       size_t name_len,
                                       const char *secret,
                                       size_t secret_len);

// Seals values with XChaCha20-Poly1305 under this 32-byte key (the server
// then stores only ciphertext). The key is copied.
//
// # Safety
// `opts` must be a live pointer from `dlm_options_new`; `key` must point
// to `key_len` readable bytes.
dlm_status dlm_options_set_sealed_key(struct dlm_options *opts,
                                      const void *key,
                                      size_t key_len);

// Encodes values with your own functions (see [`dlm_encode_fn`]).
// `userdata` is passed to both and must stay valid, and usable from any
// thread, for as long as any client made with these options exists.
//
// # Safety
// `opts` must be a live pointer from `dlm_options_new`; the functions must
// follow the [`dlm_encode_fn`] contract.
dlm_status dlm_options_set_encoder(struct dlm_options *opts,
                                   dlm_encode_fn encode,
                                   dlm_decode_fn decode,
                                   void *userdata);

// Connects with TLS. `ca_file` is a PEM file of the CA certificates to
// trust (NULL or empty: the system's trusted roots); `server_name` the
// name the server's certificate must be valid for (NULL or empty: the
// host of the address given to `dlm_client_new`). Both are UTF-8, not
// NUL-terminated. The files are read by `dlm_client_new`, whose error
// (see `dlm_options_last_error`) says why a handshake failed: an unknown
// CA, a name mismatch, an expired certificate.
//
// # Safety
// `opts` must be a live pointer from `dlm_options_new`; each string must
// be NULL or point to its length in readable bytes.
dlm_status dlm_options_set_tls(struct dlm_options *opts,
                               const char *ca_file,
                               size_t ca_file_len,
                               const char *server_name,
                               size_t server_name_len);

// Presents this client certificate chain and key (PEM files; UTF-8
// paths, not NUL-terminated) to servers that ask for one; turns TLS on
// (trusting the system's roots) if `dlm_options_set_tls` was not called.
// A server with client certificates may take the certificate's CN for an
// identity: then set credentials with that name and any secret.
//
// # Safety
// `opts` must be a live pointer from `dlm_options_new`; the strings must
// point to their lengths in readable bytes.
dlm_status dlm_options_set_tls_client_cert(struct dlm_options *opts,
                                           const char *cert_file,
                                           size_t cert_file_len,
                                           const char *key_file,
                                           size_t key_file_len);

// Copies into `buf` (NUL-terminated) what the calling thread's most
// recent libdlm call said beyond its status, if that call was made with
// these options and failed: a `dlm_options_set_*`, or a `dlm_client_new`
// (why the server could not be reached, for example). Reading it records
// nothing.
//
// # Safety
// `opts` must be a live pointer from `dlm_options_new`; `buf` must hold
// `len` writable bytes; `out_n` must be writable.
dlm_status dlm_options_last_error(const struct dlm_options *opts,
                                  char *buf,
                                  size_t len,
                                  size_t *out_n);

// Opens a server session with a TTL of `ttl_ms` on a connection of its
// own (to the cluster's leader). libdlm keeps it alive, every third of
// the TTL, on a thread of its own; the server ends it, releasing its
// locks, when that connection closes or nothing reaches it for `ttl_ms`.
// `on_lost(userdata)` (may be NULL) runs once, on that thread, if a
// keep-alive finds the session lost. A server without sessions
// (JackrabbitDLM) is `DLM_ERR_BAD_REQUEST`.
//
// # Safety
// `client` must be a live client; `on_lost` and `userdata` usable from
// another thread until the session is freed; `out` writable. Free the
// session with `dlm_session_free` before the client.
dlm_status dlm_client_session(const struct dlm_client *client,
                              uint64_t ttl_ms,
                              dlm_lost_fn on_lost,
                              void *userdata,
                              struct dlm_session **out);

// Acquires `name` for `ttl_ms`, bound to the session: it ends at the
// first of its TTL and the session's end (it is not renewed: ask a TTL
// as long as you need it). With `wait_ms` 0 one attempt
// (`DLM_ERR_NOT_OWNER` if held); otherwise it waits up to `wait_ms` in
// the server's queue (`DLM_ERR_TIMEOUT`); keep the wait shorter than the
// session's TTL, since the keep-alive waits for it. `lock_delay_ms` (at
// most 60000): after the session ends, nobody may take the name for that
// long, not even this client. `DLM_ERR_LOCK_LOST` if the session is
// lost or closed; `DLM_ERR_BAD_REQUEST` if the server ignored the
// binding (JackrabbitDLM).
//
// # Safety
// `session` must be a live session; `name` must point to `name_len`
// bytes; `out` writable. Free the lock with `dlm_session_lock_free`.
dlm_status dlm_session_acquire(const struct dlm_session *session,
                               const char *name,
                               size_t name_len,
                               uint64_t ttl_ms,
                               uint64_t wait_ms,
                               uint64_t lock_delay_ms,
                               struct dlm_session_lock **out);

// Whether the session is lost: its connection broke or a keep-alive
// failed (the server ends it, if it has not yet, and its locks with it),
// or it was closed.
//
// # Safety
// `session` must be a live session; `out` writable.
dlm_status dlm_session_is_lost(const struct dlm_session *session,
                               bool *out);

// Ends the session now: its keep-alive stops and its connection closes,
// so the server releases every lock bound to it (or closes each for its
// lock-delay). Waits for a call on the session in progress. Idempotent;
// later acquisitions fail with `DLM_ERR_LOCK_LOST`.
//
// # Safety
// `session` must be a live session.
dlm_status dlm_session_close(const struct dlm_session *session);

// Copies into `buf` (NUL-terminated) what the calling thread's most
// recent libdlm call said beyond its status, if that call was on this
// session and failed (see `dlm_client_last_error`).
//
// # Safety
// `session` must be a live session; `buf` must hold `len` writable
// bytes; `out_n` writable.
dlm_status dlm_session_last_error(const struct dlm_session *session,
                                  char *buf,
                                  size_t len,
                                  size_t *out_n);

// Ends the session (as `dlm_session_close`) and frees it. Its locks'
// handles may be freed before or after. NULL is accepted.
//
// # Safety
// `session` must be NULL or a pointer from `dlm_client_session` not yet
// freed, with no call on it still running.
void dlm_session_free(struct dlm_session *session);

// The grant's fencing token: pass it to whatever the lock protects.
//
// # Safety
// `lock` must be a live session lock; `out` writable.
dlm_status dlm_session_lock_token(const struct dlm_session_lock *lock,
                                  uint64_t *out);

// Releases the lock (by its token, on the session's connection).
// Idempotent: releasing again returns `DLM_OK`. `DLM_ERR_LOCK_LOST` if
// the session is lost or closed (the server releases it, or keeps it
// closed for its lock-delay), `DLM_ERR_NOT_OWNER` if it had expired.
//
// # Safety
// `lock` must be a live session lock.
dlm_status dlm_session_lock_release(const struct dlm_session_lock *lock);

// Copies into `buf` (NUL-terminated) what the calling thread's most
// recent libdlm call said beyond its status, if that call was on this
// lock and failed (see `dlm_client_last_error`).
//
// # Safety
// `lock` must be a live session lock; `buf` must hold `len` writable
// bytes; `out_n` writable.
dlm_status dlm_session_lock_last_error(const struct dlm_session_lock *lock,
                                       char *buf,
                                       size_t len,
                                       size_t *out_n);

// Frees the lock handle, releasing the lock first if still held (best
// effort; use `dlm_session_lock_release` to learn the outcome). NULL is
// accepted.
//
// # Safety
// `lock` must be NULL or a pointer from `dlm_session_acquire` not yet
// freed, with no call on it still running.
void dlm_session_lock_free(struct dlm_session_lock *lock);

// Reads one line from a watching connection (after the answer to its
// `DLM_CALL_WATCH`): an event, written to `out`, its name, owner and
// value copied one after the other into `data` (which `out`'s pointers
// then point into; `out->name_len + out->owner_len + out->value_len`
// bytes). A value is decoded by the wire's encoder, or, with
// `DLM_VALUE_STORED` in `flags`, left as the stored text. If `data` is
// too small, returns `DLM_ERR_BUFFER_TOO_SMALL` with the needed size in
// `*out_needed` (with the built-in encoders, `line_len` bytes are always
// enough). `line` is not modified.
//
// A line that is not an event is the server's last word on the watch:
// `DLM_ERR_UNAVAILABLE` with its reason in `dlm_wire_last_error` (a
// watcher that read too slowly is cut off, "watch cut off: too many
// events unread"; a member that installed a snapshot or is stopping says
// so), and, if the line says it, the last revision sent in
// `out->revision`. The connection then closes: resume on a new one with
// `DLM_WATCH_SINCE` and the last revision read.
//
// # Safety
// `wire` must be a live wire; `line` must point to `line_len` readable
// bytes; `data` to `data_cap` writable bytes (or be NULL with `data_cap`
// 0); `out` and `out_needed` must be writable (`out_needed` may be NULL).
dlm_status dlm_wire_event(const struct dlm_wire *wire,
                          uint32_t flags,
                          const char *line,
                          size_t line_len,
                          void *data,
                          size_t data_cap,
                          struct dlm_event *out,
                          size_t *out_needed);

// Subscribes to the changes of `scope` (a name, or with
// `DLM_WATCH_PREFIX` in `flags` every name that starts with it; an
// empty prefix is every name): locks, semaphore permits and read/write
// holds granted, released or expired, values put, erased or expired,
// each with its revision. With `DLM_WATCH_SINCE`, every event after
// `since` comes first (resuming without a gap), else only changes from
// now. The watch has a connection of its own, to any member of the
// client's servers (a follower serves watches too).
//
// On success `*out_revision` (if not NULL) is the revision the watch
// starts after. If the server no longer keeps the events since `since`
// (or `since` is ahead of it), the call fails with `DLM_ERR_CONFLICT`
// and `*out_revision` is the current revision: read the state again,
// then watch from that revision. A server without watches is
// `DLM_ERR_BAD_REQUEST`; no server reachable `DLM_ERR_UNAVAILABLE`.
//
// # Safety
// `client` must be a live client; `scope` must point to `scope_len`
// bytes (or be NULL with `scope_len` 0); `out_revision` NULL or
// writable; `out` writable. Free the watch with `dlm_watch_free` before
// the client.
dlm_status dlm_client_watch(const struct dlm_client *client,
                            const char *scope,
                            size_t scope_len,
                            uint32_t flags,
                            uint64_t since,
                            uint64_t *out_revision,
                            struct dlm_watch **out);

// Waits up to `timeout_ms` for the watch's next event and writes it to
// `out` (its name, owner and value point into the watch, valid until the
// next call on it). `UINT64_MAX` waits as long as it takes; 0 only
// takes an event already received. Events come in the order of their
// revisions, each once.
//
// `DLM_ERR_TIMEOUT`: none came in time (call again). When the
// connection fails, or the server cuts the watcher off because it read
// too slowly, the watch reconnects (to any of the client's servers) and
// resumes after the last revision it gave, by itself, missing nothing.
// If the server no longer keeps those events, the call fails with
// `DLM_ERR_CONFLICT` and `out->revision` is the current revision: the
// watch has missed changes, so read the state again; the next call goes
// on from the current revision. `DLM_ERR_UNAVAILABLE` if no server took
// the watch again (the next call tries again).
//
// # Safety
// `watch` must be a live watch; `out` writable.
dlm_status dlm_watch_next(const struct dlm_watch *watch,
                          uint64_t timeout_ms,
                          struct dlm_event *out);

// The last revision the watch gave (or, before its first event, the one
// it started after): what to resume from with `DLM_WATCH_SINCE`. 0 after
// `DLM_ERR_CONFLICT` until the watch is subscribed again.
//
// # Safety
// `watch` must be a live watch; `out` writable.
dlm_status dlm_watch_revision(const struct dlm_watch *watch,
                              uint64_t *out);

// Copies into `buf` (NUL-terminated) what the calling thread's most
// recent libdlm call said beyond its status, if that call was on this
// watch and failed (see `dlm_client_last_error`).
//
// # Safety
// `watch` must be a live watch; `buf` must hold `len` writable bytes;
// `out_n` writable.
dlm_status dlm_watch_last_error(const struct dlm_watch *watch,
                                char *buf,
                                size_t len,
                                size_t *out_n);

// Ends the watch (its connection closes) and frees it. NULL is accepted.
//
// # Safety
// `watch` must be NULL or a pointer from `dlm_client_watch` not yet
// freed, with no call on it still running.
void dlm_watch_free(struct dlm_watch *watch);

// Makes a wire from `opts` (NULL for the defaults): its client ID (a
// random one if none was set), framing, credentials and value encoder.
// The options' timeouts are not used: the caller does the I/O. `opts` may
// be freed afterwards.
//
// # Safety
// `opts` must be NULL or a live pointer from `dlm_options_new`; `out` must
// be writable.
dlm_status dlm_wire_new(const struct dlm_options *opts,
                        struct dlm_wire **out);

// Frees a wire. Leases read with it need not be freed first. NULL is
// accepted.
//
// # Safety
// `wire` must be NULL or a pointer from `dlm_wire_new` not yet freed, with
// no call on it still running.
void dlm_wire_free(struct dlm_wire *wire);

// Copies into `buf` (NUL-terminated) what the calling thread's most
// recent libdlm call said beyond its status, if that call was on this
// wire (`dlm_wire_*`, `dlm_lease_new`) and failed: the server's reason
// for a bad request, what is wrong with an answer line, ... (see
// `dlm_client_last_error`). Reading it records nothing.
//
// # Safety
// `wire` must be a live wire; `buf` must hold `len` writable bytes;
// `out_n` must be writable.
dlm_status dlm_wire_last_error(const struct dlm_wire *wire,
                               char *buf,
                               size_t len,
                               size_t *out_n);

// Copies the wire's owner ID (NUL-terminated) into `buf`.
//
// # Safety
// As for `dlm_wire_last_error`.
dlm_status dlm_wire_id(const struct dlm_wire *wire,
                       char *buf,
                       size_t len,
                       size_t *out_n);

// Writes the request line of `req` (ending in `\n`, not NUL-terminated)
// into `buf`, and its length into `out_n`. If `buf` is too small, returns
// `DLM_ERR_BUFFER_TOO_SMALL` with the needed length in `out_n`. A put's
// value is encoded by the wire's encoder here (unless `DLM_VALUE_STORED`).
// Nothing is written for an invalid request (empty name, zero TTL, ...).
//
// Send the line on a connection to the server; a request the server
// answers at once may be pipelined behind others on the same connection
// (answers come back in order), but a lock that waits
// (`wait_ms` > 0) holds back every answer behind it: give it a
// connection of its own.
//
// # Safety
// `wire` must be a live wire; `req` must point to a valid `dlm_request`;
// `buf` must hold `len` writable bytes (or be NULL with `len` 0); `out_n`
// must be writable.
dlm_status dlm_wire_write(const struct dlm_wire *wire,
                          const struct dlm_request *req,
                          char *buf,
                          size_t len,
                          size_t *out_n);

// Copies whose value the answer `line` to the get `req` carries: its
// owner's client ID (NUL-terminated) into `buf`, its length into `out_n`
// (0, the empty string, if the server did not say: JackrabbitDLM). For a
// value another owner shared with this wire's identity, that owner's ID
// (PROTOCOL.md section 8, "Shared values"). Read the value itself with
// `dlm_wire_read`; a refusal is the same status it returns.
//
// # Safety
// `wire` must be a live wire; `req` must point to a valid `dlm_request`
// (a `DLM_CALL_GET`); `line` to `line_len` readable bytes; `buf` to `len`
// writable bytes (or NULL with 0); `out_n` writable.
dlm_status dlm_wire_owner(const struct dlm_wire *wire,
                          const struct dlm_request *req,
                          const char *line,
                          size_t line_len,
                          char *buf,
                          size_t len,
                          size_t *out_n);

// Reads the server's answer `line` (one line, with or without its `\n`)
// to the request `req` (the one given to `dlm_wire_write`), by the rules
// every dlm client follows, and writes what it said to `out`. `line` is
// not modified.
//
// A get's value (decoded by the wire's encoder, or the stored text with
// `DLM_VALUE_STORED`), a version string and the statistics (a JSON object,
// e.g. `{"ALock":3,"Lock":12}`) go to `data` (not NUL-terminated), their
// length to `out->data_len`. With the built-in encoders `line_len` bytes
// of `data` are always enough; if `data` is too small, returns
// `DLM_ERR_BUFFER_TOO_SMALL` with only `out->data_len` written (call again
// with the same line and a larger buffer).
//
// A refusal is the call's error status (`DLM_ERR_NOT_OWNER`,
// `DLM_ERR_NOT_FOUND` for a get, erase or unlock of nothing,
// `DLM_ERR_CONFLICT` with the current revision in `out->revision`, ...),
// its detail in `dlm_wire_last_error`; an answer that is not a dlm answer
// is `DLM_ERR_PROTOCOL`. The answer to a lock (or a semaphore's or
// read/write lock's acquisition) is read by `dlm_lease_new`.
//
// # Safety
// `wire` must be a live wire; `req` must point to a valid `dlm_request`;
// `line` to `line_len` readable bytes; `data` to `data_cap` writable bytes
// (or be NULL with `data_cap` 0); `out` must be writable.
dlm_status dlm_wire_read(const struct dlm_wire *wire,
                         const struct dlm_request *req,
                         const char *line,
                         size_t line_len,
                         void *data,
                         size_t data_cap,
                         struct dlm_answer *out);

#ifdef __cplusplus
}  // extern "C"
#endif  // __cplusplus

#endif  /* DLM_H */
