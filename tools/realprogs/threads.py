# Threads that share a lock and a condition variable, and a pool: the sums
# are the same however the threads interleave. tools/realprogs.sh runs it
# with and without the shim and compares what it prints.
import concurrent.futures
import threading

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
