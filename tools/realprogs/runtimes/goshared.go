// A Go c-shared library that a C program loads (goshared_main.c): its
// goroutines run on small stacks, and Go installs no handler on the shim's
// signals in this mode (tools/realprogs/runtimes.sh).
package main

import "C"

import (
	"sync/atomic"
	"time"
)

var n atomic.Uint64

func rec(d int, acc uint64) uint64 {
	if d == 0 {
		return acc
	}
	var b [64]byte
	b[d%64] = byte(d)
	return rec(d-1, acc*31+uint64(b[d%64]))
}

//export Start
func Start() {
	for i := 0; i < 8; i++ {
		go func() {
			for {
				n.Add(rec(40, 1) & 1)
			}
		}()
	}
	for i := 0; i < 500; i++ {
		go func() {
			for {
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}
}

//export Count
func Count() uint64 { return n.Load() }

func main() {}
