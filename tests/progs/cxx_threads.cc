// C++ threading as programs use it: std::thread, std::async and a thread
// pool of std::thread workers fed through a std::mutex and a
// std::condition_variable. Knows nothing of killshim.
// stdout: "pool N" when its N workers run, "async tid=T" from a running
// std::async task, "ready".
// stdin:  "run N"  (N tasks through the pool; prints "ran N sum=S"),
//         "hold"   (one pool task takes a std::mutex and keeps it; prints
//                   "holding tid=T"), "release", "quit".
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <functional>
#include <future>
#include <iostream>
#include <mutex>
#include <queue>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

class Pool {
 public:
  explicit Pool(int n) {
    for (int i = 0; i < n; i++) workers_.emplace_back([this] { Work(); });
  }
  ~Pool() {
    {
      std::lock_guard<std::mutex> g(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
  }
  void Submit(std::function<void()> f) {
    {
      std::lock_guard<std::mutex> g(mu_);
      q_.push(std::move(f));
    }
    cv_.notify_one();
  }

 private:
  void Work() {
    for (;;) {
      std::function<void()> f;
      {
        std::unique_lock<std::mutex> l(mu_);
        cv_.wait(l, [this] { return stop_ || !q_.empty(); });
        if (stop_ && q_.empty()) return;
        f = std::move(q_.front());
        q_.pop();
      }
      f();
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::queue<std::function<void()>> q_;
  std::vector<std::thread> workers_;
  bool stop_ = false;
};

std::mutex print_mu;
void Say(const std::string& s) {
  std::lock_guard<std::mutex> g(print_mu);
  std::cout << s << std::endl;
}

}  // namespace

int main() {
  Pool pool(4);
  Say("pool 4");
  std::promise<void> async_go;
  std::shared_future<void> go = async_go.get_future().share();
  std::promise<void> async_up;
  auto async_task = std::async(std::launch::async, [go, &async_up] {
    Say("async tid=" + std::to_string(gettid()));
    async_up.set_value();
    go.wait();
    return 42;
  });
  async_up.get_future().wait();
  std::mutex held;
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  Say("ready");
  std::string line;
  while (std::getline(std::cin, line)) {
    if (line.rfind("run ", 0) == 0) {
      int n = std::stoi(line.substr(4));
      std::atomic<long> sum{0};
      std::atomic<int> done{0};
      std::mutex dm;
      std::condition_variable dcv;
      for (int i = 1; i <= n; i++)
        pool.Submit([i, &sum, &done, &dm, &dcv] {
          sum += i;
          std::lock_guard<std::mutex> g(dm);
          done++;
          dcv.notify_one();
        });
      std::unique_lock<std::mutex> l(dm);
      dcv.wait(l, [&] { return done.load() == n; });
      Say("ran " + std::to_string(n) + " sum=" + std::to_string(sum.load()));
    } else if (line == "hold") {
      pool.Submit([&held, released] {
        std::lock_guard<std::mutex> g(held);
        Say("holding tid=" + std::to_string(gettid()));
        released.wait();
      });
    } else if (line.rfind("throw ", 0) == 0) {
      int n = std::stoi(line.substr(6));
      std::atomic<int> caught{0}, done{0};
      for (int i = 0; i < n; i++)
        pool.Submit([&caught, &done] {
          try {
            throw std::runtime_error("task");
          } catch (const std::runtime_error&) {
            caught++;
          }
          done++;
        });
      auto f = std::async(std::launch::async, [] {
        throw std::logic_error("async");
        return 0;
      });
      try {
        f.get();
      } catch (const std::logic_error&) {
        caught++;
      }
      while (done.load() < n) std::this_thread::yield();
      Say("caught " + std::to_string(caught.load()));
    } else if (line == "release") {
      release.set_value();
    } else if (line == "quit") {
      break;
    }
  }
  async_go.set_value();
  return async_task.get() == 42 ? 0 : 1;
}
