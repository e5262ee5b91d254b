/*
 * dlm.hpp: C++17 wrappers over libdlm (dlm.h), header-only.
 *
 * Every libdlm handle is owned by one move-only object whose destructor
 * frees it (a Lock's destructor releases the lock if still held), every
 * failure is thrown as dlm::Error (the status, its description and what
 * libdlm added: "lock: server unavailable: Connection refused (os error
 * 111)"), and every string argument is a std::string_view: no NUL needed,
 * values may hold any byte.
 *
 *   #include <dlm.hpp>
 *   using namespace std::chrono_literals;
 *
 *   dlm::Client client("127.0.0.1:37373");
 *   dlm::Lock lock = client.lock("backup", dlm::LockOptions().ttl(30s).wait(10s).auto_renew());
 *   std::cout << "fencing token " << lock.token() << "\n";
 *   client.put("status", "running", 300s);
 *   lock.release(); // or let it go out of scope
 *
 * Thread safety is libdlm's: a Client and a Lock may be used from several
 * threads at once, Options and the objects' moves may not. A Lock must be
 * destroyed before the Client that made it. Part of libdlm; see
 * ffi/libdlm/README.md.
 */
#ifndef DLM_HPP
#define DLM_HPP

#include <dlm.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

/* libdlm's lost-lock callback for dlm::Lock: runs the std::function behind
 * `userdata`, and never lets an exception out into libdlm. */
extern "C" inline void dlm_hpp_on_lost(void *userdata) noexcept {
  try {
    (*static_cast<std::function<void()> *>(userdata))();
  } catch (...) {
  }
}

namespace dlm {

/* A failed libdlm call. what() reads "WHAT: DESCRIPTION[: DETAIL]". */
class Error : public std::runtime_error {
public:
  Error(dlm_status status, const std::string &what, const std::string &detail = std::string())
      : std::runtime_error(what + ": " + dlm_status_string(status) +
                           (detail.empty() ? std::string() : ": " + detail)),
        status_(status), detail_(detail) {}
  /* The status libdlm returned (DLM_ERR_...). */
  dlm_status status() const noexcept { return status_; }
  /* What libdlm said beyond the status (may be empty). */
  const std::string &detail() const noexcept { return detail_; }

private:
  dlm_status status_;
  std::string detail_;
};

/* A compare-and-set put found another revision: current() is the stored
 * one (0: there is no entry). */
class Conflict : public Error {
public:
  Conflict(uint64_t current, const std::string &what, const std::string &detail)
      : Error(DLM_ERR_CONFLICT, what, detail), current_(current) {}
  uint64_t current() const noexcept { return current_; }

private:
  uint64_t current_;
};

namespace detail {

inline uint64_t millis(std::chrono::milliseconds d) {
  return d.count() < 0 ? 0 : static_cast<uint64_t>(d.count());
}

/* Text from one of libdlm's copy-into-a-buffer functions, any length. */
template <typename F> dlm_status text(F &&copy, std::string &out) {
  out.assign(64, '\0');
  size_t n = 0;
  dlm_status s = copy(&out[0], out.size(), &n);
  if (s == DLM_ERR_BUFFER_TOO_SMALL) {
    out.assign(n + 1, '\0');
    s = copy(&out[0], out.size(), &n);
  }
  out.resize(s == DLM_OK ? n : 0);
  return s;
}

/* Throws Error for a failed call, with the handle's last error as detail. */
template <typename H>
void check(dlm_status s, const char *what, const H *handle,
           dlm_status (*last_error)(const H *, char *, size_t, size_t *)) {
  if (s == DLM_OK) {
    return;
  }
  std::string why;
  if (handle != nullptr) {
    text([&](char *buf, size_t len, size_t *n) { return last_error(handle, buf, len, n); }, why);
  }
  throw Error(s, what, why);
}

struct FreeOptions {
  void operator()(dlm_options *o) const noexcept { dlm_options_free(o); }
};
struct FreeClient {
  void operator()(dlm_client *c) const noexcept { dlm_client_free(c); }
};
struct FreeLock {
  void operator()(dlm_lock *l) const noexcept { dlm_lock_free(l); }
};
struct FreeCancel {
  void operator()(dlm_cancel *c) const noexcept { dlm_cancel_free(c); }
};
struct FreeSession {
  void operator()(dlm_session *s) const noexcept { dlm_session_free(s); }
};
struct FreeSessionLock {
  void operator()(dlm_session_lock *l) const noexcept { dlm_session_lock_free(l); }
};
struct FreeWatch {
  void operator()(dlm_watch *w) const noexcept { dlm_watch_free(w); }
};

} // namespace detail

/* Settings for a Client, set fluently:
 *   dlm::Options().client_id("me").io_timeout(2s) */
class Options {
public:
  Options() {
    dlm_options *o = nullptr;
    detail::check(dlm_options_new(&o), "options", static_cast<const dlm_options *>(nullptr),
                  dlm_options_last_error);
    ptr_.reset(o);
  }
  /* The owner ID (default: a random one). */
  Options &client_id(std::string_view id) {
    return done(dlm_options_set_client_id(ptr_.get(), id.data(), id.size()), "client id");
  }
  /* How long to wait for a TCP connection (default 5 s). */
  Options &connect_timeout(std::chrono::milliseconds t) {
    return done(dlm_options_set_connect_timeout_ms(ptr_.get(), detail::millis(t)),
                "connect timeout");
  }
  /* How long to wait for an answer, beyond a lock's wait (default 10 s). */
  Options &io_timeout(std::chrono::milliseconds t) {
    return done(dlm_options_set_io_timeout_ms(ptr_.get(), detail::millis(t)), "io timeout");
  }
  /* Talk to a JackrabbitDLM server (its table-encoded framing). */
  Options &legacy_framing(bool on = true) {
    return done(dlm_options_set_legacy_framing(ptr_.get(), on), "legacy framing");
  }
  /* Authenticate every request as identity `name`. */
  Options &credentials(std::string_view name, std::string_view secret) {
    return done(dlm_options_set_credentials(ptr_.get(), name.data(), name.size(), secret.data(),
                                            secret.size()),
                "credentials");
  }
  /* Seal values with XChaCha20-Poly1305 under this 32-byte key. */
  Options &sealed_key(const void *key, size_t len) {
    return done(dlm_options_set_sealed_key(ptr_.get(), key, len), "sealed key");
  }
  /* The handle, for libdlm's own functions. */
  const dlm_options *get() const noexcept { return ptr_.get(); }
  dlm_options *get() noexcept { return ptr_.get(); }

private:
  Options &done(dlm_status s, const char *what) {
    detail::check(s, what, static_cast<const dlm_options *>(ptr_.get()), dlm_options_last_error);
    return *this;
  }
  std::unique_ptr<dlm_options, detail::FreeOptions> ptr_;
};

/* Aborts a waiting Client::lock from another thread: trigger() makes it
 * throw Error with DLM_ERR_CANCELLED. Stays triggered; one per wait. */
class Cancel {
public:
  Cancel() {
    dlm_cancel *c = nullptr;
    detail::check(dlm_cancel_new(&c), "cancel", static_cast<const dlm_client *>(nullptr),
                  dlm_client_last_error);
    ptr_.reset(c);
  }
  void trigger() {
    detail::check(dlm_cancel_trigger(ptr_.get()), "cancel",
                  static_cast<const dlm_client *>(nullptr), dlm_client_last_error);
  }
  const dlm_cancel *get() const noexcept { return ptr_.get(); }

private:
  std::unique_ptr<dlm_cancel, detail::FreeCancel> ptr_;
};

/* How to take a lock: dlm::LockOptions().ttl(30s).wait(10s).auto_renew() */
class LockOptions {
public:
  /* How long the server keeps it unless extended (default 30 s). */
  LockOptions &ttl(std::chrono::milliseconds t) {
    ttl_ = t;
    return *this;
  }
  /* Queue up to this long in the server's fair queue (default 0: one
   * attempt, DLM_ERR_NOT_OWNER if held). */
  LockOptions &wait(std::chrono::milliseconds w) {
    wait_ = w;
    return *this;
  }
  /* Extend it in the background every third of its TTL. */
  LockOptions &auto_renew(bool on = true) {
    auto_renew_ = on;
    return *this;
  }
  /* Lets `c.trigger()` abort the wait; `c` must outlive the call. */
  LockOptions &cancel(const Cancel &c) {
    cancel_ = &c;
    return *this;
  }
  /* Runs once if the lock is found lost, maybe on libdlm's renewal thread;
   * an exception it throws is swallowed. */
  LockOptions &on_lost(std::function<void()> f) {
    on_lost_ = std::move(f);
    return *this;
  }

private:
  friend class Client;
  std::chrono::milliseconds ttl_{30000};
  std::chrono::milliseconds wait_{0};
  bool auto_renew_ = false;
  const Cancel *cancel_ = nullptr;
  std::function<void()> on_lost_;
};

/* A held lock. Destroying it releases the lock if still held (use
 * release() to learn the outcome). Must be destroyed before its Client. */
class Lock {
public:
  Lock(Lock &&other) noexcept = default;
  Lock &operator=(Lock &&other) noexcept {
    if (this != &other) {
      ptr_.reset(); // the old lock first: its callback may still run
      on_lost_ = std::move(other.on_lost_);
      ptr_ = std::move(other.ptr_);
    }
    return *this;
  }
  ~Lock() { ptr_.reset(); }

  /* The grant's fencing token (0 from a server that gives none); of a
   * Client::lock_all, its first name's. */
  uint64_t token() const {
    uint64_t t = 0;
    check(dlm_lock_token(ptr_.get(), &t), "token");
    return t;
  }
  /* Every fencing token, one per name in the order given to
   * Client::lock_all (one for any other lock). */
  std::vector<uint64_t> tokens() const {
    std::vector<uint64_t> out(DLM_MAX_LOCK_ALL);
    size_t n = 0;
    check(dlm_lock_tokens(ptr_.get(), out.data(), out.size(), &n), "tokens");
    out.resize(n);
    return out;
  }
  /* Time left before it expires unless extended; 0 once lost or released. */
  std::chrono::milliseconds remaining() const {
    uint64_t ms = 0;
    check(dlm_lock_remaining_ms(ptr_.get(), &ms), "remaining");
    return std::chrono::milliseconds(static_cast<std::chrono::milliseconds::rep>(ms));
  }
  /* Whether it is known to be lost. */
  bool is_lost() const {
    bool lost = false;
    check(dlm_lock_is_lost(ptr_.get(), &lost), "is_lost");
    return lost;
  }
  /* Extends this grant to `ttl` from now; throws DLM_ERR_LOCK_LOST if gone. */
  void extend(std::chrono::milliseconds ttl) {
    check(dlm_lock_extend(ptr_.get(), detail::millis(ttl)), "extend");
  }
  /* Releases it (again: nothing); throws DLM_ERR_LOCK_LOST if it had expired. */
  void release() { check(dlm_lock_release(ptr_.get()), "release"); }
  /* The handle, for libdlm's own functions. */
  const dlm_lock *get() const noexcept { return ptr_.get(); }

private:
  friend class Client;
  Lock(dlm_lock *l, std::unique_ptr<std::function<void()>> on_lost)
      : on_lost_(std::move(on_lost)), ptr_(l) {}
  void check(dlm_status s, const char *what) const {
    detail::check(s, what, static_cast<const dlm_lock *>(ptr_.get()), dlm_lock_last_error);
  }
  // Declared first, destroyed last: the handle (and its renewal thread)
  // goes before the callback it may call.
  std::unique_ptr<std::function<void()>> on_lost_;
  std::unique_ptr<dlm_lock, detail::FreeLock> ptr_;
};

/* A lock bound to a Session (Session::acquire). Destroying it releases it
 * if still held. */
class SessionLock {
public:
  SessionLock(SessionLock &&) noexcept = default;
  SessionLock &operator=(SessionLock &&) noexcept = default;
  /* The grant's fencing token. */
  uint64_t token() const {
    uint64_t t = 0;
    check(dlm_session_lock_token(ptr_.get(), &t), "token");
    return t;
  }
  /* Releases it (again: nothing); throws DLM_ERR_LOCK_LOST if the session
   * has ended. */
  void release() { check(dlm_session_lock_release(ptr_.get()), "release"); }
  /* The handle, for libdlm's own functions. */
  const dlm_session_lock *get() const noexcept { return ptr_.get(); }

private:
  friend class Session;
  explicit SessionLock(dlm_session_lock *l) : ptr_(l) {}
  void check(dlm_status s, const char *what) const {
    detail::check(s, what, static_cast<const dlm_session_lock *>(ptr_.get()),
                  dlm_session_lock_last_error);
  }
  std::unique_ptr<dlm_session_lock, detail::FreeSessionLock> ptr_;
};

/* A server session (Client::session): locks acquired through it end with
 * it. Destroying it ends it (see dlm_client_session). */
class Session {
public:
  Session(Session &&other) noexcept = default;
  Session &operator=(Session &&other) noexcept {
    if (this != &other) {
      ptr_.reset(); // the old session first: its callback may still run
      on_lost_ = std::move(other.on_lost_);
      ptr_ = std::move(other.ptr_);
    }
    return *this;
  }
  ~Session() { ptr_.reset(); }

  /* Takes `name` bound to the session for `ttl`, waiting up to `wait`;
   * after the session ends nobody may take it for `lock_delay` (at most
   * 60 s). Throws DLM_ERR_NOT_OWNER, DLM_ERR_TIMEOUT, DLM_ERR_LOCK_LOST
   * (the session has ended). */
  SessionLock acquire(std::string_view name, std::chrono::milliseconds ttl,
                      std::chrono::milliseconds wait = std::chrono::milliseconds(0),
                      std::chrono::milliseconds lock_delay = std::chrono::milliseconds(0)) {
    dlm_session_lock *l = nullptr;
    check(dlm_session_acquire(ptr_.get(), name.data(), name.size(), detail::millis(ttl),
                              detail::millis(wait), detail::millis(lock_delay), &l),
          "acquire");
    return SessionLock(l);
  }
  /* Whether it has ended (lost or closed). */
  bool is_lost() const {
    bool lost = true;
    check(dlm_session_is_lost(ptr_.get(), &lost), "is_lost");
    return lost;
  }
  /* Ends it now: the server releases its locks (or closes them for their
   * lock-delay). */
  void close() { check(dlm_session_close(ptr_.get()), "close"); }
  /* The handle, for libdlm's own functions. */
  const dlm_session *get() const noexcept { return ptr_.get(); }

private:
  friend class Client;
  Session(dlm_session *s, std::unique_ptr<std::function<void()>> on_lost)
      : on_lost_(std::move(on_lost)), ptr_(s) {}
  void check(dlm_status s, const char *what) const {
    detail::check(s, what, static_cast<const dlm_session *>(ptr_.get()), dlm_session_last_error);
  }
  std::unique_ptr<std::function<void()>> on_lost_;
  std::unique_ptr<dlm_session, detail::FreeSession> ptr_;
};

/* One change, as a Watch is told it (see dlm_event). */
struct Event {
  uint64_t revision;
  dlm_event_what what;
  dlm_event_kind kind;
  uint32_t permits; /* a semaphore's size */
  uint64_t token;   /* locks and holds */
  uint64_t data_revision;
  std::string name;
  std::optional<std::string> owner; /* if this client may read it */
  std::optional<std::string> value; /* a put's value, if readable */
};

/* A subscription to changes (Client::watch, Client::watch_name). */
class Watch {
public:
  Watch(Watch &&) noexcept = default;
  Watch &operator=(Watch &&) noexcept = default;
  /* The next event, or nothing if none came within `timeout`. Throws
   * Conflict with the current revision if the watch missed changes (read
   * the state again; the next call goes on from there). */
  std::optional<Event> next(std::chrono::milliseconds timeout) {
    dlm_event e;
    dlm_status s = dlm_watch_next(ptr_.get(), detail::millis(timeout), &e);
    if (s == DLM_ERR_TIMEOUT) {
      return std::nullopt;
    }
    if (s == DLM_ERR_CONFLICT) {
      throw Conflict(e.revision, "watch", last_error());
    }
    check(s, "watch");
    Event out{e.revision, e.what, e.kind, e.permits, e.token, e.data_revision,
              std::string(e.name, e.name_len), std::nullopt, std::nullopt};
    if (e.owner != nullptr) {
      out.owner = std::string(e.owner, e.owner_len);
    }
    if (e.value != nullptr) {
      out.value = std::string(static_cast<const char *>(e.value), e.value_len);
    }
    return out;
  }
  /* The last revision delivered: resume from it. */
  uint64_t revision() const {
    uint64_t r = 0;
    check(dlm_watch_revision(ptr_.get(), &r), "revision");
    return r;
  }
  /* The handle, for libdlm's own functions. */
  const dlm_watch *get() const noexcept { return ptr_.get(); }

private:
  friend class Client;
  explicit Watch(dlm_watch *w) : ptr_(w) {}
  std::string last_error() const {
    std::string why;
    detail::text(
        [this](char *buf, size_t len, size_t *n) {
          return dlm_watch_last_error(ptr_.get(), buf, len, n);
        },
        why);
    return why;
  }
  void check(dlm_status s, const char *what) const {
    detail::check(s, what, static_cast<const dlm_watch *>(ptr_.get()), dlm_watch_last_error);
  }
  std::unique_ptr<dlm_watch, detail::FreeWatch> ptr_;
};

/* A value read by Client::get. */
struct Value {
  std::string data;  /* the decoded bytes */
  uint64_t revision; /* 0 from a server that keeps none */
  std::string owner; /* whose value: this client's ID, or the ID of the
                        owner who shared it ("" if the server did not say) */
};

/* What Client::test_lock found. */
struct LockStatus {
  dlm_lock_state state;  /* DLM_LOCK_FREE, DLM_LOCK_MINE or DLM_LOCK_TAKEN */
  uint64_t token;        /* when MINE: the grant's token (0 if none) */
  std::optional<std::chrono::milliseconds> remaining; /* if the server said */
};

/* A client of a dlm server or of a cluster's leader: a pool of
 * connections, one owner ID. */
class Client {
public:
  /* Connects to `addr` ("host:port", or a cluster's members
   * "host:port,host:port,..."); throws DLM_ERR_UNAVAILABLE if no server can
   * be reached. */
  explicit Client(std::string_view addr, const Options &opts = Options()) {
    dlm_client *c = nullptr;
    detail::check(dlm_client_new(addr.data(), addr.size(), opts.get(), &c), "connect", opts.get(),
                  dlm_options_last_error);
    ptr_.reset(c);
  }

  /* The owner ID. */
  std::string id() const {
    std::string out;
    check(detail::text(
              [this](char *buf, size_t len, size_t *n) {
                return dlm_client_id(ptr_.get(), buf, len, n);
              },
              out),
          "id");
    return out;
  }

  /* The server in use now ("host:port"), for logs: the cluster's leader
   * once a member said who leads. */
  std::string server() const {
    std::string out;
    check(detail::text(
              [this](char *buf, size_t len, size_t *n) {
                return dlm_client_server(ptr_.get(), buf, len, n);
              },
              out),
          "server");
    return out;
  }

  /* Takes `name`: throws DLM_ERR_NOT_OWNER (held, no wait), DLM_ERR_TIMEOUT
   * (the wait ran out) or DLM_ERR_CANCELLED. */
  Lock lock(std::string_view name, LockOptions opts = LockOptions()) {
    return acquire(dlm_client_lock, name, std::move(opts), "lock");
  }

  /* Takes every one of `names` (1 to DLM_MAX_LOCK_ALL exclusive locks),
   * all or none: one Lock for the set, whose tokens() are one per name.
   * Throws as lock() does; nothing is taken on failure. */
  Lock lock_all(const std::vector<std::string_view> &names, LockOptions opts = LockOptions()) {
    std::vector<const char *> ptrs;
    std::vector<size_t> lens;
    for (std::string_view n : names) {
      ptrs.push_back(n.data());
      lens.push_back(n.size());
    }
    std::unique_ptr<std::function<void()>> cb = take_callback(opts);
    dlm_lock *l = nullptr;
    check(dlm_client_lock_all(ptr_.get(), ptrs.data(), lens.data(), names.size(),
                              detail::millis(opts.ttl_), detail::millis(opts.wait_),
                              flags_of(opts),
                              opts.cancel_ != nullptr ? opts.cancel_->get() : nullptr,
                              cb ? dlm_hpp_on_lost : nullptr, cb.get(), &l),
          "lock_all");
    return Lock(l, std::move(cb));
  }

  /* One permit of the counting semaphore `name` of `permits` permits: a
   * hold of its own with its own token (see dlm_client_semaphore). */
  Lock semaphore(std::string_view name, uint32_t permits, LockOptions opts = LockOptions()) {
    std::unique_ptr<std::function<void()>> cb = take_callback(opts);
    dlm_lock *l = nullptr;
    check(dlm_client_semaphore(ptr_.get(), name.data(), name.size(), permits,
                               detail::millis(opts.ttl_), detail::millis(opts.wait_),
                               flags_of(opts),
                               opts.cancel_ != nullptr ? opts.cancel_->get() : nullptr,
                               cb ? dlm_hpp_on_lost : nullptr, cb.get(), &l),
          "semaphore");
    return Lock(l, std::move(cb));
  }

  /* The shared (read) side of the read/write lock `name`. */
  Lock read_lock(std::string_view name, LockOptions opts = LockOptions()) {
    return acquire(dlm_client_read_lock, name, std::move(opts), "read_lock");
  }

  /* The exclusive (write) side of the read/write lock `name`. */
  Lock write_lock(std::string_view name, LockOptions opts = LockOptions()) {
    return acquire(dlm_client_write_lock, name, std::move(opts), "write_lock");
  }

  /* One attempt: the lock, or nothing if another owner holds it. */
  std::optional<Lock> try_lock(std::string_view name, std::chrono::milliseconds ttl) {
    try {
      return lock(name, LockOptions().ttl(ttl));
    } catch (const Error &e) {
      if (e.status() == DLM_ERR_NOT_OWNER) {
        return std::nullopt;
      }
      throw;
    }
  }

  /* Whether `name` is locked, and by whom; never acquires. */
  LockStatus test_lock(std::string_view name) const {
    dlm_lock_state state = DLM_LOCK_FREE;
    uint64_t token = 0, left = UINT64_MAX;
    check(dlm_client_test_lock(ptr_.get(), name.data(), name.size(), &state, &token, &left),
          "test_lock");
    LockStatus out{state, token, std::nullopt};
    if (left != UINT64_MAX) {
      out.remaining = std::chrono::milliseconds(static_cast<std::chrono::milliseconds::rep>(left));
    }
    return out;
  }

  /* Releases `name` if this client holds it (token > 0: only that grant);
   * whether a lock was released. */
  bool unlock(std::string_view name, uint64_t token = 0) {
    dlm_status s = dlm_client_unlock(ptr_.get(), name.data(), name.size(), token);
    if (s == DLM_ERR_NOT_FOUND) {
      return false;
    }
    check(s, "unlock");
    return true;
  }

  /* Stores `value` under `name` for `ttl`; its new revision. */
  uint64_t put(std::string_view name, std::string_view value, std::chrono::milliseconds ttl) {
    uint64_t revision = 0;
    check(dlm_client_put(ptr_.get(), name.data(), name.size(), value.data(), value.size(),
                         detail::millis(ttl), &revision),
          "put");
    return revision;
  }

  /* Stores `value` as put() does, readable also by clients authenticated
   * as one of the identities `readers` (see dlm_client_put_shared). */
  uint64_t put_shared(std::string_view name, std::string_view value, std::chrono::milliseconds ttl,
                      const std::vector<std::string_view> &readers) {
    std::vector<const char *> ptrs;
    std::vector<size_t> lens;
    for (std::string_view r : readers) {
      ptrs.push_back(r.data());
      lens.push_back(r.size());
    }
    uint64_t revision = 0;
    check(dlm_client_put_shared(ptr_.get(), name.data(), name.size(), value.data(), value.size(),
                                detail::millis(ttl), ptrs.data(), lens.data(), readers.size(), 0,
                                &revision),
          "put_shared");
    return revision;
  }

  /* Stores `value` as put() does, readable by any client. */
  uint64_t put_shared_any(std::string_view name, std::string_view value,
                          std::chrono::milliseconds ttl) {
    uint64_t revision = 0;
    check(dlm_client_put_shared(ptr_.get(), name.data(), name.size(), value.data(), value.size(),
                                detail::millis(ttl), nullptr, nullptr, 0, DLM_PUT_READERS_ANY,
                                &revision),
          "put_shared");
    return revision;
  }

  /* Compare-and-set: only if the stored revision is `expected` (0: only if
   * absent); throws Conflict with the current revision otherwise. */
  uint64_t put_if(std::string_view name, std::string_view value, std::chrono::milliseconds ttl,
                  uint64_t expected) {
    uint64_t revision = 0;
    dlm_status s = dlm_client_put_if(ptr_.get(), name.data(), name.size(), value.data(),
                                     value.size(), detail::millis(ttl), expected, &revision);
    if (s == DLM_ERR_CONFLICT) {
      throw Conflict(revision, "put_if", last_error());
    }
    check(s, "put_if");
    return revision;
  }

  /* The value of `name` (its own, or another owner's shared with this
   * client), or nothing if there is no entry. */
  std::optional<Value> get(std::string_view name) const {
    Value v{std::string(256, '\0'), 0, std::string(64, '\0')};
    for (;;) {
      size_t n = 0, owner_n = 0;
      dlm_status s = dlm_client_get_with_owner(ptr_.get(), name.data(), name.size(), &v.data[0],
                                               v.data.size(), &n, &v.revision, &v.owner[0],
                                               v.owner.size(), &owner_n);
      if (s == DLM_ERR_BUFFER_TOO_SMALL) {
        // Either may grow again before the next read.
        v.data.assign(n, '\0');
        v.owner.assign(owner_n + 1, '\0');
        continue;
      }
      if (s == DLM_ERR_NOT_FOUND) {
        return std::nullopt;
      }
      check(s, "get");
      v.data.resize(n);
      v.owner.resize(owner_n);
      return v;
    }
  }

  /* Deletes `name`; whether there was an entry. */
  bool erase(std::string_view name) {
    dlm_status s = dlm_client_erase(ptr_.get(), name.data(), name.size());
    if (s == DLM_ERR_NOT_FOUND) {
      return false;
    }
    check(s, "erase");
    return true;
  }

  /* The server's version string. */
  std::string server_version() const {
    std::string out;
    check(detail::text(
              [this](char *buf, size_t len, size_t *n) {
                return dlm_client_server_version(ptr_.get(), buf, len, n);
              },
              out),
          "server_version");
    return out;
  }

  /* The server's statistics as a JSON object. */
  std::string stats_json() const {
    std::string out;
    check(detail::text(
              [this](char *buf, size_t len, size_t *n) {
                return dlm_client_stats_json(ptr_.get(), buf, len, n);
              },
              out),
          "stats");
    return out;
  }

  /* Opens a server session with `ttl` (see dlm_client_session);
   * `on_lost` (may be empty) runs once on libdlm's thread if it is lost. */
  Session session(std::chrono::milliseconds ttl, std::function<void()> on_lost = {}) {
    std::unique_ptr<std::function<void()>> cb;
    if (on_lost) {
      cb.reset(new std::function<void()>(std::move(on_lost)));
    }
    dlm_session *s = nullptr;
    check(dlm_client_session(ptr_.get(), detail::millis(ttl), cb ? dlm_hpp_on_lost : nullptr,
                             cb.get(), &s),
          "session");
    return Session(s, std::move(cb));
  }

  /* Watches every name starting with `prefix`, from now (since 0) or
   * after revision `since`; throws Conflict with the current revision if
   * the server no longer keeps the events since then. */
  Watch watch(std::string_view prefix, uint64_t since = 0) {
    return subscribe(prefix, DLM_WATCH_PREFIX, since);
  }

  /* Watches one name (its lock and its value), as watch() does. */
  Watch watch_name(std::string_view name, uint64_t since = 0) {
    return subscribe(name, 0, since);
  }

  /* The handle, for libdlm's own functions. */
  const dlm_client *get() const noexcept { return ptr_.get(); }

private:
  Watch subscribe(std::string_view scope, uint32_t flags, uint64_t since) {
    dlm_watch *w = nullptr;
    uint64_t current = 0;
    dlm_status s = dlm_client_watch(ptr_.get(), scope.data(), scope.size(),
                                    flags | (since > 0 ? DLM_WATCH_SINCE : 0), since, &current,
                                    &w);
    if (s == DLM_ERR_CONFLICT) {
      throw Conflict(current, "watch", last_error());
    }
    check(s, "watch");
    return Watch(w);
  }

  using acquire_fn = dlm_status (*)(const dlm_client *, const char *, size_t, uint64_t,
                                    uint64_t, uint32_t, const dlm_cancel *, dlm_lost_fn,
                                    void *, dlm_lock **);

  static std::unique_ptr<std::function<void()>> take_callback(LockOptions &opts) {
    std::unique_ptr<std::function<void()>> cb;
    if (opts.on_lost_) {
      cb.reset(new std::function<void()>(std::move(opts.on_lost_)));
    }
    return cb;
  }

  static uint32_t flags_of(const LockOptions &opts) {
    return opts.auto_renew_ ? DLM_LOCK_AUTO_RENEW : 0;
  }

  Lock acquire(acquire_fn take, std::string_view name, LockOptions opts, const char *what) {
    std::unique_ptr<std::function<void()>> cb = take_callback(opts);
    dlm_lock *l = nullptr;
    check(take(ptr_.get(), name.data(), name.size(), detail::millis(opts.ttl_),
               detail::millis(opts.wait_), flags_of(opts),
               opts.cancel_ != nullptr ? opts.cancel_->get() : nullptr,
               cb ? dlm_hpp_on_lost : nullptr, cb.get(), &l),
          what);
    return Lock(l, std::move(cb));
  }

  std::string last_error() const {
    std::string why;
    detail::text(
        [this](char *buf, size_t len, size_t *n) {
          return dlm_client_last_error(ptr_.get(), buf, len, n);
        },
        why);
    return why;
  }
  void check(dlm_status s, const char *what) const {
    detail::check(s, what, static_cast<const dlm_client *>(ptr_.get()), dlm_client_last_error);
  }
  std::unique_ptr<dlm_client, detail::FreeClient> ptr_;
};

} // namespace dlm

#endif /* DLM_HPP */
