// RAII for libdlm in C++17: each handle is owned by a std::unique_ptr with
// a deleter that calls its `_free`, failures become exceptions carrying
// the status and libdlm's message, and a Lock releases itself when it goes
// out of scope. Small enough to copy into a project and grow.
//
// Build:  c++ -std=c++17 raii.cpp $(pkg-config --cflags --libs dlm) -o raii
// Run:    ./raii [HOST:PORT]                 (default 127.0.0.1:37373)

#include <dlm.h>

#include <chrono>
#include <cstdint>
#include <iostream>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace dlm {

using std::chrono::milliseconds;

// A failed libdlm call: what failed, its status, and what libdlm added (the
// detail of the last error, if any), e.g. "connect: server unavailable:
// Connection refused (os error 111)".
class Error : public std::runtime_error {
public:
  Error(dlm_status status, const std::string &what, const std::string &detail = "")
      : std::runtime_error(what + ": " + dlm_status_string(status) +
                           (detail.empty() ? "" : ": " + detail)),
        status_(status) {}
  dlm_status status() const noexcept { return status_; }

private:
  dlm_status status_;
};

struct OptionsFree {
  void operator()(dlm_options *o) const noexcept { dlm_options_free(o); }
};
struct ClientFree {
  void operator()(dlm_client *c) const noexcept { dlm_client_free(c); }
};
struct LockFree {
  void operator()(dlm_lock *l) const noexcept { dlm_lock_free(l); }
};

inline const uint8_t *bytes(std::string_view s) {
  return reinterpret_cast<const uint8_t *>(s.data());
}

// Text from one of libdlm's "copy into buf" functions, any length: on
// BUFFER_TOO_SMALL, `n` is the length without the NUL, so ask again with
// one byte more.
template <typename F> std::string text(F &&copy) {
  std::string out(64, '\0');
  size_t n = 0;
  dlm_status s = copy(out.data(), out.size(), &n);
  if (s == DLM_ERR_BUFFER_TOO_SMALL) {
    out.resize(n + 1);
    s = copy(out.data(), out.size(), &n);
  }
  if (s != DLM_OK) {
    throw Error(s, "reading text");
  }
  out.resize(n);
  return out;
}

inline void check(dlm_status s, const char *what) {
  if (s != DLM_OK) {
    throw Error(s, what);
  }
}

class Options {
public:
  Options() {
    dlm_options *o = nullptr;
    check(dlm_options_new(&o), "dlm_options_new");
    ptr_.reset(o);
  }
  Options &client_id(std::string_view id) {
    check(dlm_options_set_client_id(ptr_.get(), bytes(id), id.size()), "client id");
    return *this;
  }
  Options &connect_timeout(milliseconds t) {
    check(dlm_options_set_connect_timeout_ms(ptr_.get(), static_cast<uint64_t>(t.count())),
          "connect timeout");
    return *this;
  }
  const dlm_options *get() const noexcept { return ptr_.get(); }

private:
  std::unique_ptr<dlm_options, OptionsFree> ptr_;
};

// A held lock; destroying it releases it. Must not outlive its Client.
class Lock {
public:
  explicit Lock(dlm_lock *l) : ptr_(l) {}
  uint64_t token() const {
    uint64_t t = 0;
    check(dlm_lock_token(ptr_.get(), &t), "dlm_lock_token");
    return t;
  }
  void extend(milliseconds ttl) { fail_if(dlm_lock_extend(ptr_.get(), ms(ttl)), "extend"); }
  void release() { fail_if(dlm_lock_release(ptr_.get()), "release"); }

private:
  static uint64_t ms(milliseconds t) { return static_cast<uint64_t>(t.count()); }
  void fail_if(dlm_status s, const char *what) const {
    if (s != DLM_OK) {
      std::string message = text([this](char *buf, size_t len, size_t *n) {
        return dlm_lock_last_error(ptr_.get(), buf, len, n);
      });
      throw Error(s, what, message);
    }
  }
  std::unique_ptr<dlm_lock, LockFree> ptr_;
};

class Client {
public:
  explicit Client(std::string_view addr, const Options &opts = Options()) {
    dlm_client *c = nullptr;
    check(dlm_client_new(bytes(addr), addr.size(), opts.get(), &c), "connect");
    ptr_.reset(c);
  }

  std::string id() const {
    return text([this](char *buf, size_t len, size_t *n) {
      return dlm_client_id(ptr_.get(), buf, len, n);
    });
  }

  // Waits up to `wait` (0: one attempt) in the server's queue.
  Lock lock(std::string_view name, milliseconds ttl, milliseconds wait = milliseconds(0),
            bool auto_renew = false) {
    dlm_lock *l = nullptr;
    uint32_t flags = auto_renew ? DLM_LOCK_AUTO_RENEW : 0;
    fail_if(dlm_client_lock(ptr_.get(), bytes(name), name.size(), ms(ttl), ms(wait), flags,
                            nullptr, nullptr, nullptr, &l),
            "lock");
    return Lock(l);
  }

  uint64_t put(std::string_view name, std::string_view value, milliseconds ttl) {
    uint64_t revision = 0;
    fail_if(dlm_client_put(ptr_.get(), bytes(name), name.size(), bytes(value), value.size(),
                           ms(ttl), &revision),
            "put");
    return revision;
  }

  // The value, or nothing if there is no entry.
  std::optional<std::string> get(std::string_view name) {
    std::string value(64, '\0');
    size_t n = 0;
    auto read = [&] {
      return dlm_client_get(ptr_.get(), bytes(name), name.size(),
                            reinterpret_cast<uint8_t *>(value.data()), value.size(), &n, nullptr);
    };
    dlm_status s = read();
    if (s == DLM_ERR_BUFFER_TOO_SMALL) {
      value.resize(n);
      s = read();
    }
    if (s == DLM_ERR_NOT_FOUND) {
      return std::nullopt;
    }
    fail_if(s, "get");
    value.resize(n);
    return value;
  }

private:
  static uint64_t ms(milliseconds t) { return static_cast<uint64_t>(t.count()); }
  void fail_if(dlm_status s, const char *what) const {
    if (s != DLM_OK) {
      std::string message = text([this](char *buf, size_t len, size_t *n) {
        return dlm_client_last_error(ptr_.get(), buf, len, n);
      });
      throw Error(s, what, message);
    }
  }
  std::unique_ptr<dlm_client, ClientFree> ptr_;
};

} // namespace dlm

int main(int argc, char **argv) {
  using namespace std::chrono_literals;
  std::string addr = argc > 1 ? argv[1] : "127.0.0.1:37373";
  try {
    dlm::Client alice(addr, dlm::Options().client_id("alice").connect_timeout(2s));
    dlm::Client bob(addr, dlm::Options().client_id("bob"));
    std::cout << "connected as " << alice.id() << "\n";
    {
      dlm::Lock lock = alice.lock("cpp-lock", 30s, 5s, true);
      std::cout << "alice holds cpp-lock with token " << lock.token() << "\n";
      try {
        bob.lock("cpp-lock", 1s);
        std::cerr << "bob got a lock alice holds\n";
        return 1;
      } catch (const dlm::Error &e) {
        if (e.status() != DLM_ERR_NOT_OWNER) {
          throw;
        }
        std::cout << "bob refused: " << e.what() << "\n";
      }
      alice.put("cpp-key", std::string(100, 'v'), 10s);
      lock.extend(60s);
    } // alice's lock is released here
    dlm::Lock bobs = bob.lock("cpp-lock", 1s);
    std::cout << "bob holds cpp-lock with token " << bobs.token() << "\n";
    bobs.release();

    std::optional<std::string> value = alice.get("cpp-key");
    if (!value || *value != std::string(100, 'v')) {
      std::cerr << "wrong value\n";
      return 1;
    }
    if (alice.get("no-such-key")) {
      std::cerr << "found a missing key\n";
      return 1;
    }
    std::cout << "ok\n";
    return 0;
  } catch (const dlm::Error &e) {
    std::cerr << "dlm error " << e.status() << ": " << e.what() << "\n";
    return 1;
  }
}
