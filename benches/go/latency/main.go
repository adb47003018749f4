// The Go twin of fing's latency benchmark (examples/latency.rs), a peer for side-by-side
// runs: the same live heap of records (rings of 64, a cross link each, a tiny leaf on one
// in four, a finalizer on one in 64) and the same steady workload (a ring of four per
// step relinked into a random live record's cross link; every 16th step a record with a
// finalizer dropped), on one or more goroutines. Pauses come from runtime.MemStats
// (PauseNs, PauseEnd), polled; the mutator's view is the longest gap between two steps.
// Each step links its ring of four into one of the first 4096 live records (the ring it
// replaces becomes garbage) and relinks a random live record's cross link to another.
//
//	cd benches/go/latency && go run . [live_mb (256)] [secs (10)] [threads (1)]
//
// The last two lines have the Rust example's format.
package main

import (
	"fmt"
	"os"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

type Rec struct {
	id    uint64
	val   uint64
	next  *Rec
	other *Rec
	leaf  *uint32
}

func rec(id uint64) *Rec {
	r := &Rec{id: id, val: id * 0x9E3779B9}
	if id%4 == 0 {
		l := uint32(id)
		r.leaf = &l
	}
	return r
}

func ring(id, n uint64) *Rec {
	first := rec(id)
	last := first
	for i := uint64(1); i < n; i++ {
		r := rec(id + i)
		last.next = r
		last = r
	}
	last.next = first
	return first
}

type rng struct{ s uint64 }

func (r *rng) next() uint64 {
	r.s ^= r.s << 13
	r.s ^= r.s >> 7
	r.s ^= r.s << 17
	return r.s
}

// mmu is the minimum mutator utilisation over windows of w seconds in [0, end].
func mmu(starts, ends []float64, end, w float64) float64 {
	worst := 1.0
	try := func(s float64) {
		if s < 0 {
			s = 0
		}
		if s > end-w {
			s = end - w
		}
		paused := 0.0
		for i := range starts {
			a, b := starts[i], ends[i]
			if a < s {
				a = s
			}
			if b > s+w {
				b = s + w
			}
			if b > a {
				paused += b - a
			}
		}
		if u := 1 - paused/w; u < worst {
			worst = u
		}
	}
	for i := range starts {
		try(starts[i])
		try(ends[i] - w)
	}
	if worst < 0 {
		worst = 0
	}
	return worst
}

func main() {
	liveMB, secs, threads := 256, 10, 1
	if len(os.Args) > 1 {
		liveMB, _ = strconv.Atoi(os.Args[1])
	}
	if len(os.Args) > 2 {
		secs, _ = strconv.Atoi(os.Args[2])
	}
	if len(os.Args) > 3 {
		threads, _ = strconv.Atoi(os.Args[3])
	}
	var ms runtime.MemStats
	t := time.Now()
	var live []*Rec
	g := &rng{0x2545F4914F6CDD1D}
	id := uint64(0)
	for {
		runtime.ReadMemStats(&ms)
		if ms.HeapAlloc >= uint64(liveMB)<<20 {
			break
		}
		for k := 0; k < 16; k++ {
			first := ring(id, 64)
			id += 64
			r := first
			for i := 0; i < 64; i++ {
				if g.next()%64 == 0 {
					runtime.SetFinalizer(r, func(*Rec) {})
				}
				live = append(live, r)
				r = r.next
			}
		}
	}
	for i := range live {
		live[i].other = live[g.next()%uint64(len(live))]
	}
	runtime.ReadMemStats(&ms)
	fmt.Fprintf(os.Stderr, "latency (Go %s): built %d MB live in %.1f s (%d records), %d collections so far\n",
		runtime.Version(), ms.HeapAlloc>>20, time.Since(t).Seconds(), len(live), ms.NumGC)

	seenGC := ms.NumGC
	allocBefore := ms.TotalAlloc
	var stop atomic.Bool
	var steps uint64
	var wg sync.WaitGroup
	stalls := make([]time.Duration, threads)
	start := time.Now()
	for th := 0; th < threads; th++ {
		wg.Add(1)
		go func(th int) {
			defer wg.Done()
			g := &rng{0x9E3779B97F4A7C15 ^ uint64(th+1)}
			id := uint64(1)<<40 | uint64(th)<<36
			last := time.Now()
			var maxStall time.Duration
			n := uint64(0)
			for !stop.Load() {
				r := ring(id, 4)
				id += 4
				slots := uint64(4096)
				if uint64(len(live)) < slots {
					slots = uint64(len(live))
				}
				live[g.next()%slots].other = r
				a, b := g.next()%uint64(len(live)), g.next()%uint64(len(live))
				if a >= 4096 {
					live[a].other = live[b]
				}
				if n%16 == 0 {
					runtime.SetFinalizer(rec(id), func(*Rec) {})
					id++
				}
				n++
				now := time.Now()
				if d := now.Sub(last); d > maxStall {
					maxStall = d
				}
				last = now
			}
			atomic.AddUint64(&steps, n)
			stalls[th] = maxStall
		}(th)
	}
	// Poll the pauses (the ring keeps 256) until the time is up.
	var starts, ends []float64
	var lens []time.Duration
	poll := func() {
		runtime.ReadMemStats(&ms)
		for n := seenGC + uint32(len(lens)); n < ms.NumGC; n++ {
			i := n % 256
			l := time.Duration(ms.PauseNs[i])
			e := time.Unix(0, int64(ms.PauseEnd[i])).Sub(start).Seconds()
			lens = append(lens, l)
			ends = append(ends, e)
			starts = append(starts, e-l.Seconds())
		}
	}
	for time.Since(start) < time.Duration(secs)*time.Second {
		time.Sleep(20 * time.Millisecond)
		poll()
	}
	stop.Store(true)
	wg.Wait()
	elapsed := time.Since(start)
	poll()
	var maxStall time.Duration
	for _, s := range stalls {
		if s > maxStall {
			maxStall = s
		}
	}
	sorted := append([]time.Duration(nil), lens...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
	var max, p99, total time.Duration
	if len(sorted) > 0 {
		max = sorted[len(sorted)-1]
		p99 = sorted[(len(sorted)*99+99)/100-1]
	}
	for _, l := range lens {
		total += l
	}
	msf := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }
	fmt.Printf("steps=%d max_stall_ms=%.3f threads=%d secs=%.1f paused_ms=%.1f\n",
		steps, msf(maxStall), threads, elapsed.Seconds(), msf(total))
	fmt.Printf("max_pause_ms=%.3f p99_pause_ms=%.3f mmu_10ms=%.3f heap_mb=%d alloc_mb_s=%.1f cycles=%d\n",
		msf(max), msf(p99), mmu(starts, ends, elapsed.Seconds(), 0.010), ms.HeapAlloc>>20,
		float64(ms.TotalAlloc-allocBefore)/float64(1<<20)/elapsed.Seconds(), ms.NumGC-seenGC)
	runtime.KeepAlive(live)
}
