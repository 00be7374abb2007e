package verdicts

import "time"

// SetClock replaces the clock that Learn and the stream's since use.
func SetClock(r *Resolver, now func() time.Time) { r.now = now }

// DedupSize is how many flows the deduplication remembers.
func DedupSize(r *Resolver) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.dedup.cur) + len(r.dedup.prev)
}

// Queued counts the records waiting in subscriptions.
func Queued(r *Resolver) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for s := range r.subs {
		n += len(s.ch)
	}
	return n
}
