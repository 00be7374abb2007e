package agent

import (
	"runtime"
	"testing"
	"time"
)

// TestReleaser: freed pages go back when the heap holds more than the
// slack beyond its goal, at once unless the last release was less than
// every ago, then when that has passed; never two pending at once.
func TestReleaser(t *testing.T) {
	t.Parallel()
	const mb = 1 << 20
	every := 200 * time.Millisecond
	freed := make(chan time.Time, 10)
	r := &releaser{every: every, free: func() { freed <- time.Now() }}
	expect := func(what string, within time.Duration, want bool) time.Time {
		t.Helper()
		select {
		case at := <-freed:
			if !want {
				t.Fatalf("%s: released", what)
			}
			return at
		case <-time.After(within):
			if want {
				t.Fatalf("%s: not released within %v", what, within)
			}
		}
		return time.Time{}
	}
	r.decide(time.Now(), 100*mb+releaseSlack, 100*mb)
	expect("within the slack", every, false)
	r.decide(time.Now(), 80*mb, 100*mb)
	expect("below the goal", every, false)

	r.decide(time.Now(), 160*mb, 100*mb)
	first := expect("far above the goal, nothing released before", every/2, true)

	// Right after: the release waits for every to pass since the last.
	r.decide(time.Now(), 160*mb, 100*mb)
	r.decide(time.Now(), 160*mb, 100*mb) // still pending: not a second one
	second := expect("right after a release", 2*every, true)
	if gap := second.Sub(first); gap < every-10*time.Millisecond {
		t.Errorf("second release %v after the first, want at least %v", gap, every)
	}
	expect("one pending release only", every, false)

	rel := time.Now()
	r.released(rel)
	r.decide(time.Now(), 160*mb, 100*mb)
	if gap := expect("after a release made elsewhere", 2*every, true).Sub(rel); gap < every-10*time.Millisecond {
		t.Errorf("release %v after one made elsewhere, want at least %v", gap, every)
	}
}

// TestReadHeap: the runtime metrics the release reads exist and are
// uint64s (a renamed one would silently disable the release), and what they
// add up to is the heap the runtime reports the old way.
func TestReadHeap(t *testing.T) {
	held, goal, ok := readHeap()
	if !ok {
		t.Fatal("runtime/metrics lacks a heap sample readHeap reads")
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	if held == 0 || goal == 0 || held > ms.HeapSys {
		t.Errorf("held %d, goal %d; MemStats HeapSys %d", held, goal, ms.HeapSys)
	}
}
