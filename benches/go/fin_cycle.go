// The Go twin of fing's 1 000 000-object finalizer cycle (benches/finalizers.rs,
// examples/fin_cycle.rs), a peer for side-by-side timing: 1 000 000 objects of 16 bytes
// with one pointer field, a finalizer each that bumps a global counter; allocate and set,
// drop, collect until all ran. With Go 1.24 or later, `cleanup` does the same with
// runtime.AddCleanup (fin_cycle_cleanup.go).
//
//	cd benches/go && go run . [n] [rounds] [finalizer|cleanup]
//
// Each round prints the same phases as the Rust example; the last line is the median.
package main

import (
	"fmt"
	"os"
	"runtime"
	"sort"
	"strconv"
	"sync/atomic"
	"time"
)

// T is 16 bytes with one pointer field, as fing's `Linked`.
type T struct {
	next *T
	id   int64
}

var ran int64

// modes maps a mode name to the function that arms one object.
var modes = map[string]func(*T){
	"finalizer": func(o *T) {
		runtime.SetFinalizer(o, func(*T) { atomic.AddInt64(&ran, 1) })
	},
}

func round(n int, arm func(*T)) time.Duration {
	atomic.StoreInt64(&ran, 0)
	t0 := time.Now()
	objs := make([]*T, n)
	for i := range objs {
		objs[i] = &T{id: int64(i)}
	}
	t1 := time.Now()
	for _, o := range objs {
		arm(o)
	}
	t2 := time.Now()
	objs = nil
	runtime.GC()
	t3 := time.Now()
	for atomic.LoadInt64(&ran) < int64(n) {
		runtime.GC()
		runtime.Gosched()
	}
	t4 := time.Now()
	ms := func(a, b time.Time) float64 { return float64(b.Sub(a).Microseconds()) / 1e3 }
	fmt.Printf("alloc %6.1f  set %6.1f  collect %6.1f  run %6.1f  | total %6.1f ms\n",
		ms(t0, t1), ms(t1, t2), ms(t2, t3), ms(t3, t4), ms(t0, t4))
	return t4.Sub(t0)
}

func main() {
	n, rounds, mode := 1000000, 5, "finalizer"
	if len(os.Args) > 1 {
		n, _ = strconv.Atoi(os.Args[1])
	}
	if len(os.Args) > 2 {
		rounds, _ = strconv.Atoi(os.Args[2])
	}
	if len(os.Args) > 3 {
		mode = os.Args[3]
	}
	arm, ok := modes[mode]
	if !ok {
		fmt.Fprintf(os.Stderr, "mode %q needs a newer Go (%s)\n", mode, runtime.Version())
		os.Exit(2)
	}
	var all []time.Duration
	for i := 0; i < rounds; i++ {
		all = append(all, round(n, arm))
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	fmt.Printf("%s %s: median %.1f ms over %d rounds\n", runtime.Version(), mode,
		float64(all[len(all)/2].Microseconds())/1e3, rounds)
}
