// For unit tests that sample what a thread is doing from a signal handler:
// a wall-clock timer that interrupts the thread that made it, every PERIOD_NS,
// with SIGNO handled by HANDLER (SA_SIGINFO, SA_RESTART). A CPU-time timer
// ticks with the scheduler's clock, a few ms: too coarse.
#ifndef KS_TESTS_UNIT_THREAD_TICKER_H
#define KS_TESTS_UNIT_THREAD_TICKER_H

#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

namespace ks::test {

class ThreadTicker {
 public:
  ThreadTicker(int signo, void (*handler)(int, siginfo_t *, void *), long period_ns)
      : signo_(signo) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = handler;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (sigaction(signo, &sa, &old_) != 0) return;
    struct sigevent sev;
    memset(&sev, 0, sizeof sev);
    sev.sigev_notify = SIGEV_THREAD_ID;
    sev.sigev_signo = signo;
    sev._sigev_un._tid = gettid();
    if (timer_create(CLOCK_MONOTONIC, &sev, &timer_) != 0) return;
    struct itimerspec it = {{0, period_ns}, {0, period_ns}};
    ok_ = timer_settime(timer_, 0, &it, nullptr) == 0;
    made_ = true;
  }
  ~ThreadTicker() {
    if (made_) timer_delete(timer_);
    sigaction(signo_, &old_, nullptr);
  }
  ThreadTicker(const ThreadTicker &) = delete;
  ThreadTicker &operator=(const ThreadTicker &) = delete;
  bool ok() const { return ok_; }

 private:
  int signo_;
  struct sigaction old_ = {};
  timer_t timer_ = {};
  bool made_ = false, ok_ = false;
};

}  // namespace ks::test

#endif
