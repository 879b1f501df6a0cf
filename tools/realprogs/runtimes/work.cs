// Mono threads (SGen GC, which stops the world with signals): six that
// compute, allocate and sleep (tools/realprogs/runtimes.sh).
using System;
using System.Threading;
using System.Collections.Generic;
class W {
    static int Fib(int n) { return n < 2 ? n : Fib(n - 1) + Fib(n - 2); }
    static void Main(string[] a) {
        int secs = a.Length > 0 ? int.Parse(a[0]) : 5;
        var end = DateTime.UtcNow.AddSeconds(secs);
        var ts = new List<Thread>();
        long[] rounds = new long[6];
        for (int i = 0; i < 6; i++) {
            int k = i;
            var t = new Thread(() => {
                while (DateTime.UtcNow < end) {
                    Fib(18);
                    var l = new List<int[]>();
                    for (int j = 0; j < 200; j++) l.Add(new int[100]);
                    Thread.Sleep(1);
                    rounds[k]++;
                }
            });
            t.Start(); ts.Add(t);
        }
        foreach (var t in ts) t.Join();
        GC.Collect();
        foreach (var r in rounds) Console.Write(r > 0 ? "T" : "F");
        Console.WriteLine(" " + Fib(20));
    }
}
