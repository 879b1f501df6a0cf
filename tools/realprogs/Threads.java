// Threads that share a synchronized counter, a pool and a latch: the results
// are the same however they interleave (tools/realprogs.sh runs it with and
// without the shim: `java Threads.java`).
import java.util.concurrent.*;
import java.util.concurrent.atomic.AtomicLong;

public class Threads {
    static long total = 0;

    public static void main(String[] args) throws Exception {
        Object lock = new Object();
        CountDownLatch done = new CountDownLatch(8);
        for (int k = 1; k <= 8; k++) {
            final int kk = k;
            new Thread(() -> {
                for (int i = 0; i < 20000; i++) synchronized (lock) { total += (i * kk) % 7; }
                done.countDown();
            }).start();
        }
        done.await();
        ExecutorService pool = Executors.newFixedThreadPool(4);
        AtomicLong squares = new AtomicLong();
        for (int x = 0; x < 10000; x++) {
            final long xx = x;
            pool.submit(() -> squares.addAndGet(xx * xx));
        }
        pool.shutdown();
        pool.awaitTermination(60, TimeUnit.SECONDS);
        System.out.println("total=" + total + " squares=" + squares.get());
    }
}
