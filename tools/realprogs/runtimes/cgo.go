// A cgo program (tools/realprogs/runtimes.sh): goroutines that spin, sleep,
// make system calls, allocate and call C, and 2,000 on small stacks.
// Prints "ok ..." with a checksum that is the same in every run.
package main

/*
#include <unistd.h>
static int cpid(void) { return getpid(); }
*/
import "C"

import (
	"crypto/sha256"
	"fmt"
	"os"
	"os/user"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// deep recursion keeps goroutine stacks small and varied; the checksum
// must come out the same with and without the shim.
func rec(n int, acc uint64) uint64 {
	if n == 0 {
		return acc
	}
	var b [64]byte
	b[n%64] = byte(n)
	return rec(n-1, acc*31+uint64(b[n%64]))
}

func main() {
	secs := 5
	if len(os.Args) > 1 {
		secs, _ = strconv.Atoi(os.Args[1])
	}
	u, _ := user.Current()
	_ = u
	fmt.Println("pid", int(C.cpid()))
	var stop atomic.Bool
	var wg sync.WaitGroup
	var spins, sleeps, sys, allocs, cgo atomic.Uint64
	var sum atomic.Uint64
	for i := 0; i < 8; i++ {
		wg.Add(5)
		go func() { // spin
			defer wg.Done()
			for !stop.Load() {
				sum.Add(rec(50, 1) & 1)
				spins.Add(1)
			}
		}()
		go func() { // sleep
			defer wg.Done()
			for !stop.Load() {
				time.Sleep(time.Millisecond)
				sleeps.Add(1)
			}
		}()
		go func() { // syscalls
			defer wg.Done()
			for !stop.Load() {
				os.Stat("/")
				os.Getpid()
				sys.Add(1)
			}
		}()
		go func() { // alloc
			defer wg.Done()
			var keep [][]byte
			for !stop.Load() {
				b := make([]byte, 1024+int(allocs.Load()%4096))
				h := sha256.Sum256(b)
				if h[0] == 0xff && h[1] == 0xff {
					fmt.Print("")
				}
				keep = append(keep, b)
				if len(keep) > 1000 {
					keep = nil
				}
				allocs.Add(1)
			}
		}()
		go func() { // cgo calls
			defer wg.Done()
			for !stop.Load() {
				C.cpid()
				cgo.Add(1)
			}
		}()
	}
	// many goroutines sitting on tiny stacks
	for i := 0; i < 2000; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				time.Sleep(5 * time.Millisecond)
				runtime.Gosched()
			}
		}()
	}
	time.Sleep(time.Duration(secs) * time.Second)
	stop.Store(true)
	wg.Wait()
	runtime.GC()
	fmt.Println("ok", spins.Load() > 0, sleeps.Load() > 0, sys.Load() > 0, allocs.Load() > 0, cgo.Load() > 0, rec(50, 1))
}
