// dlm.hpp against a real server: ownership (moves, scope exit), errors as
// exceptions with status and detail, string_view arguments with any byte,
// and the wrappers of every call. Prints "hpp: N checks, 0 failed".
//
// Usage: hpp HOST:PORT

#include <dlm.hpp>

#include <cstdio>
#include <string>
#include <type_traits>
#include <utility>

static int checks = 0, failed = 0;

#define CHECK(cond)                                                                            \
  do {                                                                                         \
    ++checks;                                                                                  \
    if (!(cond)) {                                                                             \
      ++failed;                                                                                \
      std::printf("FAILED %s:%d: %s\n", __FILE__, __LINE__, #cond);                            \
    }                                                                                          \
  } while (0)

// Runs `f`, which must throw dlm::Error with `status`; returns its what().
template <typename F> static std::string throws(dlm_status status, F &&f) {
  try {
    f();
  } catch (const dlm::Error &e) {
    CHECK(e.status() == status);
    return e.what();
  }
  CHECK(!"no exception");
  return std::string();
}

static_assert(!std::is_copy_constructible<dlm::Client>::value, "move-only");
static_assert(!std::is_copy_constructible<dlm::Lock>::value, "move-only");
static_assert(std::is_nothrow_move_constructible<dlm::Lock>::value, "movable");
static_assert(std::is_nothrow_move_assignable<dlm::Lock>::value, "movable");
static_assert(std::is_nothrow_move_constructible<dlm::Client>::value, "movable");
static_assert(!std::is_copy_constructible<dlm::Session>::value, "move-only");
static_assert(std::is_nothrow_move_assignable<dlm::Session>::value, "movable");
static_assert(std::is_nothrow_move_constructible<dlm::Watch>::value, "movable");
static_assert(std::is_nothrow_move_constructible<dlm::SessionLock>::value, "movable");

int main(int argc, char **argv) {
  using namespace std::chrono_literals;
  if (argc < 2) {
    std::fprintf(stderr, "usage: hpp HOST:PORT\n");
    return 2;
  }
  const std::string addr = argv[1];
  try {
    dlm::Client a(addr, dlm::Options().client_id("hpp-a").io_timeout(5s));
    dlm::Client b(addr, dlm::Options().client_id("hpp-b"));
    CHECK(a.id() == "hpp-a");
    CHECK(a.server_version().find("JackrabbitDLM") != std::string::npos);

    // A lock: held, seen by test_lock, refused to another owner, moved,
    // and released when its last owner goes out of scope.
    {
      dlm::Lock held = a.lock("hpp-lock", dlm::LockOptions().ttl(30s).auto_renew());
      uint64_t token = held.token();
      CHECK(token > 0);
      CHECK(!held.is_lost());
      CHECK(held.remaining() > 0ms && held.remaining() <= 30s);
      dlm::LockStatus mine = a.test_lock("hpp-lock");
      CHECK(mine.state == DLM_LOCK_MINE && mine.token == token && mine.remaining.has_value());
      CHECK(b.test_lock("hpp-lock").state == DLM_LOCK_TAKEN);
      CHECK(!b.try_lock("hpp-lock", 1s).has_value());
      std::string what = throws(DLM_ERR_NOT_OWNER, [&] { b.lock("hpp-lock"); });
      CHECK(what == "lock: held by another owner");
      dlm::Lock moved = std::move(held);
      CHECK(moved.token() == token);
      held = std::move(moved); // and back
      CHECK(a.test_lock("hpp-lock").state == DLM_LOCK_MINE);
    }
    CHECK(a.test_lock("hpp-lock").state == DLM_LOCK_FREE);

    // Move-assigning over a held lock releases the old one.
    {
      dlm::Lock first = a.lock("hpp-first");
      dlm::Lock second = a.lock("hpp-second");
      first = std::move(second);
      CHECK(a.test_lock("hpp-first").state == DLM_LOCK_FREE);
      CHECK(a.test_lock("hpp-second").state == DLM_LOCK_MINE);
      first.release();
      first.release(); // again: nothing
      CHECK(a.test_lock("hpp-second").state == DLM_LOCK_FREE);
    }

    // A lock found lost: released by name behind the handle's back, so the
    // extension is refused; on_lost runs on this thread, inside the call.
    {
      int lost = 0;
      dlm::Lock l = a.lock("hpp-lost", dlm::LockOptions().ttl(30s).on_lost([&] { ++lost; }));
      CHECK(a.unlock("hpp-lost"));
      CHECK(!a.unlock("hpp-lost"));
      throws(DLM_ERR_LOCK_LOST, [&] { l.extend(30s); });
      CHECK(lost == 1);
      CHECK(l.is_lost());
    }

    // A triggered cancel aborts the wait.
    {
      dlm::Lock held = a.lock("hpp-wait");
      dlm::Cancel cancel;
      cancel.trigger();
      throws(DLM_ERR_CANCELLED,
             [&] { b.lock("hpp-wait", dlm::LockOptions().wait(10s).cancel(cancel)); });
      CHECK(b.try_lock("hpp-other", 1s).has_value());
    }

    // Semaphores and read/write locks: a hold per acquisition, each with
    // its own token, released at scope exit; conflicts say why.
    {
      dlm::Lock p1 = a.semaphore("hpp-pool", 2, dlm::LockOptions().ttl(30s));
      dlm::Lock p2 = a.semaphore("hpp-pool", 2, dlm::LockOptions().ttl(30s).auto_renew());
      CHECK(p1.token() > 0 && p2.token() > p1.token());
      throws(DLM_ERR_NOT_OWNER, [&] { b.semaphore("hpp-pool", 2); });
      std::string what = throws(DLM_ERR_CONFLICT, [&] { b.semaphore("hpp-pool", 3); });
      CHECK(what.find("semaphore of 2 permits") != std::string::npos);
      p1.release();
      dlm::Lock p3 = b.semaphore("hpp-pool", 2);
      CHECK(p3.token() > p2.token());

      dlm::Lock r1 = a.read_lock("hpp-rw");
      dlm::Lock r2 = b.read_lock("hpp-rw");
      throws(DLM_ERR_NOT_OWNER, [&] { b.write_lock("hpp-rw"); });
      throws(DLM_ERR_CONFLICT, [&] { a.write_lock("hpp-pool"); });
      r1.release();
      r2.release();
      dlm::Lock w = b.write_lock("hpp-rw");
      CHECK(w.token() > r2.token());
    }
    CHECK(a.test_lock("hpp-pool").state == DLM_LOCK_FREE);
    CHECK(a.test_lock("hpp-rw").state == DLM_LOCK_FREE);

    // A multi-lock: all or none, a token per name, released at scope exit.
    {
      dlm::Lock one = b.lock("hpp-m2");
      throws(DLM_ERR_NOT_OWNER, [&] { a.lock_all({"hpp-m1", "hpp-m2"}); });
      CHECK(b.test_lock("hpp-m1").state == DLM_LOCK_FREE);
      one.release();
      dlm::Lock both = a.lock_all({"hpp-m1", "hpp-m2"}, dlm::LockOptions().ttl(30s));
      std::vector<uint64_t> tokens = both.tokens();
      CHECK(tokens.size() == 2 && tokens[0] > one.token() && tokens[1] > tokens[0]);
      CHECK(both.token() == tokens[0]);
      CHECK(one.tokens().size() == 1);
      CHECK(b.test_lock("hpp-m2").state == DLM_LOCK_TAKEN);
    }
    CHECK(b.test_lock("hpp-m1").state == DLM_LOCK_FREE);
    CHECK(b.test_lock("hpp-m2").state == DLM_LOCK_FREE);

    // A value shared with any client: read with its owner's ID.
    {
      a.put_shared_any("hpp-shared", "for all", 30s);
      std::optional<dlm::Value> v = b.get("hpp-shared");
      CHECK(v && v->data == "for all" && v->owner == "hpp-a");
      a.put_shared("hpp-shared", "for nobody here", 30s, {"someone-else"});
      throws(DLM_ERR_NOT_OWNER, [&] { b.get("hpp-shared"); });
      CHECK(a.get("hpp-shared")->owner == "hpp-a");
      CHECK(a.erase("hpp-shared"));
    }

    // Values: any bytes through string_view, growing buffers, revisions,
    // compare-and-set.
    {
      const std::string binary("a\0b\xff\n\"", 6);
      uint64_t r1 = a.put("hpp-value", binary, 30s);
      CHECK(r1 > 0);
      std::optional<dlm::Value> v = a.get("hpp-value");
      CHECK(v && v->data == binary && v->revision == r1);
      const std::string big(5000, 'x');
      uint64_t r2 = a.put("hpp-value", big, 30s);
      CHECK(r2 > r1);
      v = a.get("hpp-value");
      CHECK(v && v->data == big);
      try {
        a.put_if("hpp-value", "stale", 30s, r1);
        CHECK(!"no conflict");
      } catch (const dlm::Conflict &e) {
        CHECK(e.current() == r2);
        CHECK(e.status() == DLM_ERR_CONFLICT);
        CHECK(e.detail() == "current revision " + std::to_string(r2));
      }
      CHECK(a.put_if("hpp-value", "fresh", 30s, r2) > r2);
      CHECK(a.erase("hpp-value"));
      CHECK(!a.erase("hpp-value"));
      CHECK(!a.get("hpp-value").has_value());
      throws(DLM_ERR_INVALID_ARGUMENT, [&] { a.put("", "x", 1s); });
    }
    CHECK(a.stats_json().front() == '{');

    // Errors carry libdlm's detail: a port nobody listens on.
    {
      std::string what = throws(DLM_ERR_UNAVAILABLE, [] {
        dlm::Client nobody("127.0.0.1:1", dlm::Options().connect_timeout(1s));
      });
      CHECK(what.rfind("connect: server unavailable: ", 0) == 0);
      throws(DLM_ERR_INVALID_ARGUMENT, [] { dlm::Options().client_id(""); });
      const unsigned char short_key[3] = {1, 2, 3};
      throws(DLM_ERR_INVALID_ARGUMENT,
             [&] { dlm::Options().sealed_key(short_key, sizeof short_key); });
    }
    // A session: its lock is released when it closes; a watch sees it
    // granted and released, then a value, and resumes from a revision.
    {
      dlm::Watch w = b.watch("hpp-s/");
      uint64_t start = w.revision();
      uint64_t token = 0;
      {
        dlm::Session s = a.session(10s);
        dlm::SessionLock l = s.acquire("hpp-s/lock", 60s, 0ms, 0ms);
        token = l.token();
        CHECK(!b.try_lock("hpp-s/lock", 5s).has_value());
        CHECK(!s.is_lost());
        s.close();
        CHECK(s.is_lost());
        throws(DLM_ERR_LOCK_LOST, [&] { s.acquire("hpp-s/more", 1s); });
      }
      std::optional<dlm::Event> granted = w.next(10s);
      std::optional<dlm::Event> released = w.next(10s);
      CHECK(granted && granted->what == DLM_EVENT_GRANTED && granted->name == "hpp-s/lock" &&
            granted->token == token && !granted->owner && granted->revision > start);
      CHECK(released && released->what == DLM_EVENT_RELEASED &&
            released->revision > granted->revision);
      b.put("hpp-s/v", std::string("a\0b", 3), 30s);
      std::optional<dlm::Event> put = w.next(10s);
      CHECK(put && put->kind == DLM_KIND_DATA && put->value == std::string("a\0b", 3) &&
            put->owner == std::string("hpp-b"));
      CHECK(!w.next(10ms).has_value());
      CHECK(w.revision() == put->revision);
      dlm::Watch again = b.watch_name("hpp-s/lock", start);
      std::optional<dlm::Event> first = again.next(10s);
      CHECK(first && first->revision == granted->revision);
      try {
        b.watch("hpp-s/", UINT64_MAX / 2);
        CHECK(!"no conflict");
      } catch (const dlm::Conflict &e) {
        CHECK(e.current() >= put->revision && e.current() < UINT64_MAX / 2);
      }
      b.unlock("hpp-s/lock");
    }
    // Moving a client keeps its connection.
    dlm::Client c = std::move(b);
    CHECK(c.id() == "hpp-b");
  } catch (const dlm::Error &e) {
    std::printf("FAILED: unexpected %s\n", e.what());
    ++failed;
  }
  std::printf("hpp: %d checks, %d failed\n", checks, failed);
  return failed == 0 ? 0 : 1;
}
