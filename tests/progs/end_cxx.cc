// C++ threads to be ended: std::thread with RAII objects whose destructors
// must run, a namespaced std::atomic<bool> stop variable, and the public
// header used from C++.
//
// stdout: "main tid=T", "ready"; "started I KIND tid=T"; "dtor I" when thread
//         I's guard is destroyed; "joined I".
// stdin:  spawn KIND | join I | check | quit
// Kinds:  api     loops until killshim_stop_requested()
//         atomic  loops while app::keep_going (std::atomic<bool>, shared)
//         read    blocked in read, retrying on EINTR
//         sleep   std::this_thread::sleep_for in a loop
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>
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

void Victim(int idx, std::string kind) {
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
  std::unique_lock<std::mutex> l(shared_mu, std::defer_lock);
  bool locked = false;
  for (int i = 0; i < 2500 && !(locked = l.try_lock()); i++) Nap();
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
      threads.emplace_back(Victim, (int)threads.size(), kind);
    } else if (cmd == "join") {
      size_t i;
      std::cin >> i;
      if (i < threads.size()) {
        threads[i].join();
        Say("joined " + std::to_string(i));
      }
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
