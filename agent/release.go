package agent

import (
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"
	"time"
)

// A compile of a large node frees tens of MB (at 50,000 pods a partial
// sync's compile allocates over 100 MB that are garbage once it commits).
// The runtime's background scavenger returns such pages to the OS at its
// slow pace, so a sync shortly after start-up left the agent's resident
// memory about 15 MB higher for minutes (BenchmarkAgentRSS at 50,000 pods,
// 30 s after ready: 161 and 164 MB in runs where a second sync followed the
// first, 143 to 148 MB where none did; 148 MB with a second sync once this
// release was in). After a sync, when the heap holds more than releaseSlack
// beyond its GC goal, the agent returns the freed pages, at most once every
// releaseEvery: a forced GC of a 100 MB heap costs tens of ms of CPU, so
// this stays well under one percent.
const (
	releaseSlack = 8 << 20
	releaseEvery = 10 * time.Second
)

// releaser decides when to return freed heap pages to the OS. The zero
// value releases with debug.FreeOSMemory at most every releaseEvery.
type releaser struct {
	every time.Duration // releaseEvery when 0
	free  func()        // debug.FreeOSMemory when nil

	last    atomic.Int64 // UnixNano of the last release, 0 before the first
	pending atomic.Bool  // a release is scheduled
}

// heapSamples are what release reads: the heap's bytes held from the OS
// (objects, free not yet returned, and unused span space) and the GC goal.
var heapSamples = []string{
	"/memory/classes/heap/objects:bytes",
	"/memory/classes/heap/free:bytes",
	"/memory/classes/heap/unused:bytes",
	"/gc/heap/goal:bytes",
}

// afterSync returns freed pages to the OS, in the background, when the
// heap holds more than releaseSlack beyond its goal: at once, or if the last
// release was less than every ago, then (so a sync right after another
// still has its garbage returned).
func (r *releaser) afterSync(now time.Time) {
	if held, goal, ok := readHeap(); ok {
		r.decide(now, held, goal)
	}
}

func (r *releaser) decide(now time.Time, held, goal uint64) {
	every, free := r.every, r.free
	if every == 0 {
		every = releaseEvery
	}
	if free == nil {
		free = debug.FreeOSMemory
	}
	if held <= goal+releaseSlack || !r.pending.CompareAndSwap(false, true) {
		return
	}
	wait := every - now.Sub(time.Unix(0, r.last.Load()))
	time.AfterFunc(max(wait, 0), func() {
		r.last.Store(time.Now().UnixNano())
		free()
		r.pending.Store(false)
	})
}

// released records a release made elsewhere (the first sync's).
func (r *releaser) released(now time.Time) { r.last.Store(now.UnixNano()) }

// readHeap returns the bytes the heap holds from the OS and its GC goal;
// ok is false when the runtime does not report them.
func readHeap() (held, goal uint64, ok bool) {
	s := make([]metrics.Sample, len(heapSamples))
	for i, n := range heapSamples {
		s[i].Name = n
	}
	metrics.Read(s)
	for i := range s {
		if s[i].Value.Kind() != metrics.KindUint64 {
			return 0, 0, false
		}
	}
	return s[0].Value.Uint64() + s[1].Value.Uint64() + s[2].Value.Uint64(), s[3].Value.Uint64(), true
}
