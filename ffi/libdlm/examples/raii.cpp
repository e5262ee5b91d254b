// dlm.hpp, libdlm's C++17 wrappers: every handle is a move-only object that
// frees itself, failures are exceptions (dlm::Error, with the status and
// libdlm's message), and a Lock releases itself when it goes out of scope.
//
// Build:  c++ -std=c++17 raii.cpp $(pkg-config --cflags --libs dlm) -o raii
// Run:    ./raii [HOST:PORT]                 (default 127.0.0.1:37373)

#include <dlm.hpp>

#include <iostream>
#include <string>

int main(int argc, char **argv) {
  using namespace std::chrono_literals;
  std::string addr = argc > 1 ? argv[1] : "127.0.0.1:37373";
  try {
    dlm::Client alice(addr, dlm::Options().client_id("alice").connect_timeout(2s));
    dlm::Client bob(addr, dlm::Options().client_id("bob"));
    std::cout << "connected as " << alice.id() << "\n";
    {
      dlm::Lock lock = alice.lock("cpp-lock", dlm::LockOptions().ttl(30s).wait(5s).auto_renew());
      std::cout << "alice holds cpp-lock with token " << lock.token() << "\n";
      try {
        bob.lock("cpp-lock", dlm::LockOptions().ttl(1s));
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
    dlm::Lock bobs = bob.lock("cpp-lock", dlm::LockOptions().ttl(1s));
    std::cout << "bob holds cpp-lock with token " << bobs.token() << "\n";
    bobs.release();

    std::optional<dlm::Value> value = alice.get("cpp-key");
    if (!value || value->data != std::string(100, 'v')) {
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
