# Threads that share a lock and a condition variable, and a pool: the sums
# are the same however the threads interleave. tools/realprogs.sh runs it
# with and without the shim and compares what it prints.
import concurrent.futures
import os
import sys
import threading
import time

N, ROUNDS = 8, 20000
total = 0
lock = threading.Lock()
cv = threading.Condition(lock)
done = 0


def work(k):
    global total, done
    for i in range(ROUNDS):
        with lock:
            total += (i * k) % 7
    with cv:
        done += 1
        cv.notify_all()


if sys.argv[1:2] == ["--serve"]:
    # The ends group: workers that run until the file argv[2] exists, and a
    # main thread that prints a beat every 0.1 s meanwhile (its "answer").
    stop = sys.argv[2]

    def spin(k):
        global total
        while not os.path.exists(stop):
            with lock:
                total += k
            time.sleep(0.01)

    workers = [threading.Thread(target=spin, args=(k,), name=f"worker{k}") for k in range(4)]
    for t in workers:
        t.start()
    while not os.path.exists(stop):
        print("beat", flush=True)
        time.sleep(0.1)
    for t in workers:
        t.join(5)
    sys.exit(0)

threads = [threading.Thread(target=work, args=(k,)) for k in range(N)]
for t in threads:
    t.start()
with cv:
    cv.wait_for(lambda: done == N)
for t in threads:
    t.join()
with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
    squares = sum(pool.map(lambda x: x * x, range(10000)))
print(f"total={total} squares={squares} threads={N}")
