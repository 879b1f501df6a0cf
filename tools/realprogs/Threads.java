// Threads that share a synchronized counter, a pool and a latch: the results
// are the same however they interleave (tools/realprogs.sh runs it with and
// without the shim: `java Threads.java`).
import java.util.concurrent.*;
import java.util.concurrent.atomic.AtomicLong;

public class Threads {
    static long total = 0;

    public static void main(String[] args) throws Exception {
        Object lock = new Object();
        if (args.length == 2 && args[0].equals("--serve")) {
            // The ends group: workers that run until the file args[1] exists,
            // and a main thread that prints a beat every 0.1 s meanwhile.
            java.io.File stop = new java.io.File(args[1]);
            for (int k = 1; k <= 4; k++) {
                final int kk = k;
                new Thread(() -> {
                    while (!stop.exists()) {
                        synchronized (lock) { total += kk; }
                        try { Thread.sleep(10); } catch (InterruptedException e) { return; }
                    }
                }, "worker" + k).start();
            }
            while (!stop.exists()) { System.out.println("beat"); Thread.sleep(100); }
            System.exit(0);
        }
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
