// SPDX-License-Identifier: MIT

// chan_pingpong - Go's peer of bench/sync.c's queue_pingpong: two
// goroutines hand a counter back and forth over two unbuffered channels
// (main sends on ping and receives on pong; the other receives on ping
// and sends on pong), ROUNDS round trips of two hand-offs each. Best of
// REPS runs, ns per hand-off, in the benchmarks' "name value unit" form:
//
//	go_chan_pingpong                   <ns per hand-off, GOMAXPROCS=1>         ns/op
//	go_chan_pingpong_maxprocs_default  <the same with Go's default GOMAXPROCS>  ns/op
//
// GOMAXPROCS=1 is the comparison: like coil's loop, one thread runs both
// sides. The default (one P per CPU, or $GOMAXPROCS) is printed for
// reference; there the two goroutines may run on two threads and wake
// each other across cores. A wrong value handed back is reported on
// stderr and the program exits 1 without printing.
package main

import (
	"fmt"
	"os"
	"runtime"
	"time"
)

const (
	rounds = 1000000
	reps   = 5
)

// run does one measurement: ns per hand-off.
func run() float64 {
	ping := make(chan int)
	pong := make(chan int)
	done := make(chan struct{})
	go func() {
		for v := range ping {
			pong <- v + 1
		}
		close(done)
	}()
	start := time.Now()
	for i := 0; i < rounds; i++ {
		ping <- i
		if v := <-pong; v != i+1 {
			fmt.Fprintf(os.Stderr, "bench: go_chan_pingpong: got %d back for %d\n", v, i)
			os.Exit(1)
		}
	}
	elapsed := time.Since(start)
	close(ping)
	<-done
	return float64(elapsed.Nanoseconds()) / (2 * rounds)
}

func best() float64 {
	b := 0.0
	for r := 0; r < reps; r++ {
		if ns := run(); r == 0 || ns < b {
			b = ns
		}
	}
	return b
}

func main() {
	procs := runtime.GOMAXPROCS(1)
	fmt.Printf("go_chan_pingpong %.1f ns/op\n", best())
	runtime.GOMAXPROCS(procs)
	fmt.Printf("go_chan_pingpong_maxprocs_default %.1f ns/op\n", best())
	fmt.Fprintf(os.Stderr, "bench: go_chan_pingpong_maxprocs_default ran with GOMAXPROCS=%d (%s)\n",
		procs, runtime.Version())
}
