// C++ threads to be ended: std::thread with RAII objects whose destructors
// must run, a namespaced std::atomic<bool> stop variable, and the public
// header used from C++.
//
// stdout: "main tid=T", "ready"; "started I KIND tid=T"; "dtor I" when thread
//         I's guard is destroyed; "joined I"; "got I" when thread I read a
//         byte "poke I" sent it; "caught I" from a catch (...).
// stdin:  spawn KIND | join I | poke I | check | quit
// Kinds:  api     loops until killshim_stop_requested()
//         atomic  loops while app::keep_going (std::atomic<bool>, shared)
//         read    blocked in read, retrying on EINTR
//         sleep   std::this_thread::sleep_for in a loop
//         noexcept-read, noexcept-poll
//                 blocked in read (or poll) below a noexcept function, which
//                 a cancellation's unwind must never cross; reads the bytes
//                 poke sends (EINTR is retried) and returns after a byte if
//                 killshim_stop_requested()
//         noexcepttry-read  the same below a noexcept function that holds a
//                 try block (catch (const std::runtime_error&))
//         catchall-read  the same below a catch (...) that does not rethrow
//         cvwait  std::condition_variable::wait forever, its std::unique_lock
//                 on cv_mu (whose destructor releases cv_mu on the way out)
//         rawlock a C-style pthread mutex (raw_mu) taken in a function without
//                 destructors, then blocked in read below a frame that has
//                 some (the Guard): nothing on the way out releases raw_mu
#include <poll.h>
#include <pthread.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <iostream>
#include <map>
#include <memory>
#include <stdexcept>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "shim/killshim.h"

namespace app {
std::atomic<bool> keep_going{true};
}

namespace {

std::mutex out_mu;
std::mutex shared_mu;
std::mutex cv_mu;
std::condition_variable cv;
pthread_mutex_t raw_mu = PTHREAD_MUTEX_INITIALIZER;
std::atomic<long> ticks{0};

void Say(const std::string& s) {
  std::lock_guard<std::mutex> g(out_mu);
  std::cout << s << std::endl;
}

struct Guard {
  int idx;
  ~Guard() { Say("dtor " + std::to_string(idx)); }
};

void Nap() { std::this_thread::sleep_for(std::chrono::milliseconds(2)); }

std::mutex poke_mu;
std::map<int, int> poke_fd;  // victim -> write end of the pipe it reads

// A flag's wake (EINTR) is retried: only a byte lets the loop look at the flag.
__attribute__((noinline)) char ReadByte(int fd) {
  char c = 0;
  while (read(fd, &c, 1) != 1) {
  }
  return c;
}

__attribute__((noinline)) char PollByte(int fd) {
  struct pollfd p = {fd, POLLIN, 0};
  while (poll(&p, 1, -1) != 1) {
  }
  return ReadByte(fd);
}

__attribute__((noinline)) void Serve(int idx, int fd, bool use_poll) {
  for (;;) {
    use_poll ? PollByte(fd) : ReadByte(fd);
    Say("got " + std::to_string(idx));
    if (killshim_stop_requested()) return;
  }
}

// An unwind through here calls std::terminate.
__attribute__((noinline)) void ServeNoexcept(int idx, int fd, bool use_poll) noexcept {
  Serve(idx, fd, use_poll);
}

// noexcept around a try block: the handler entry for the call reads as a
// cleanup, whose landing pad calls std::terminate once the catch does not
// match (a cancellation's unwind never does).
__attribute__((noinline)) void ServeNoexceptTry(int idx, int fd) noexcept {
  try {
    Serve(idx, fd, false);
  } catch (const std::runtime_error&) {
    Say("caught " + std::to_string(idx));
  }
}

// Catches a cancellation's unwind and does not rethrow: glibc aborts.
__attribute__((noinline)) void ServeCatchAll(int idx, int fd) {
  try {
    Serve(idx, fd, false);
  } catch (...) {
    Say("caught " + std::to_string(idx));
  }
}

// As a C library would: lock, then block (here for good) while holding it.
// No local of these frames has its address taken: under AddressSanitizer
// their redzones would stay poisoned when a cancellation unwinds past them
// (glibc's forced unwind does not tell ASan, as a C++ throw does), and the
// destructors that run next, in the same stack, would trip over them.
int raw_pipe[2];
char raw_byte;

__attribute__((noinline)) void LockAndRead() {
  if (pipe(raw_pipe) != 0) return;
  pthread_mutex_lock(&raw_mu);
  while (read(raw_pipe[0], &raw_byte, 1) != 1) {
  }
  pthread_mutex_unlock(&raw_mu);
}

int PipeFor(int idx) {
  int p[2];
  if (pipe(p) != 0) return -1;
  std::lock_guard<std::mutex> g(poke_mu);
  poke_fd[idx] = p[1];
  return p[0];
}

void Victim(int idx, std::string kind, int fd) {
  Guard g{idx};
  auto heap = std::make_unique<std::vector<int>>(1000, idx);  // freed by unwinding too
  Say("started " + std::to_string(idx) + " " + kind + " tid=" + std::to_string(gettid()));
  if (kind == "api") {
    while (!killshim_stop_requested()) Nap();
  } else if (kind == "atomic") {
    while (app::keep_going.load()) Nap();
  } else if (kind == "read") {
    int p[2];
    if (pipe(p) != 0) return;
    char c;
    while (read(p[0], &c, 1) < 0) {
    }
  } else if (kind == "sleep") {
    for (;;) std::this_thread::sleep_for(std::chrono::seconds(1000));
  } else if (kind == "noexcept-read" || kind == "noexcept-poll") {
    ServeNoexcept(idx, fd, kind == "noexcept-poll");
  } else if (kind == "noexcepttry-read") {
    // Through a pointer of a type that may throw: this frame gets a handler
    // entry for the call, so only ServeNoexceptTry's own pad stands in the
    // way of the cancellation.
    void (*volatile serve)(int, int) = ServeNoexceptTry;
    serve(idx, fd);
  } else if (kind == "catchall-read") {
    ServeCatchAll(idx, fd);
  } else if (kind == "cvwait") {
    std::unique_lock<std::mutex> l(cv_mu);
    for (;;) cv.wait(l);
  } else if (kind == "rawlock") {
    LockAndRead();
  }
}

void Ticker() {
  for (;;) {
    {
      std::lock_guard<std::mutex> g(shared_mu);
      auto v = std::make_unique<std::string>(100 + ticks % 1000, 'x');
      ticks++;
    }
    Nap();
  }
}

void Check() {
  long t0 = ticks;
  for (int i = 0; i < 2500 && ticks < t0 + 5; i++) Nap();
  std::unique_lock<std::mutex> l(shared_mu, std::defer_lock), c(cv_mu, std::defer_lock);
  bool locked = false;
  for (int i = 0; i < 2500 && !(locked = l.try_lock() && c.try_lock()); i++) {
    if (l.owns_lock()) l.unlock();
    Nap();
  }
  std::vector<std::unique_ptr<char[]>> blocks;
  for (int i = 0; i < 512; i++) blocks.emplace_back(new char[i * 97 % 20000 + 1]);
  std::thread t([] {});
  t.join();
  if (ticks < t0 + 5 || !locked)
    Say("check FAIL");
  else
    Say("check ok ticks=" + std::to_string(ticks.load()));
}

}  // namespace

int main() {
  Say("main tid=" + std::to_string(gettid()));
  std::thread(Ticker).detach();
  Say("ready");
  std::vector<std::thread> threads;
  std::string cmd;
  while (std::cin >> cmd) {
    if (cmd == "spawn") {
      std::string kind;
      std::cin >> kind;
      int idx = (int)threads.size();
      threads.emplace_back(Victim, idx, kind, PipeFor(idx));
    } else if (cmd == "join") {
      size_t i;
      std::cin >> i;
      if (i < threads.size()) {
        threads[i].join();
        Say("joined " + std::to_string(i));
      }
    } else if (cmd == "poke") {
      int i;
      std::cin >> i;
      std::lock_guard<std::mutex> g(poke_mu);
      if (poke_fd.count(i) && write(poke_fd[i], "x", 1) != 1) Say("poke FAIL");
    } else if (cmd == "check") {
      Check();
    } else if (cmd == "quit") {
      break;
    }
  }
  for (auto& t : threads)
    if (t.joinable()) t.detach();
  return 0;
}
