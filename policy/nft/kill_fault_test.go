package nft

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netns"

	"github.com/policyd/policyd/policy/ruleset"
)

// This file kills a writer with SIGKILL in the middle of a large sync and
// requires the kernel to hold the whole old table or the whole new one.
//
// The writer is this test binary run again (TestMain sees writerEnv): it
// opens the named network namespace, syncs killNew there with a Backend of
// its own, and prints writerFlushing right before the batch is sent and
// writerDone once Sync returned.

const (
	// writerEnv names the network namespace the re-executed test binary
	// writes killNew into.
	writerEnv      = "POLICYD_FAULT_WRITER_NETNS"
	writerFlushing = "flushing"
	writerDone     = "done"
	// killPods is the number of pods of each table: peer4 and ing4 hold one
	// element per pod, so each table has over 2 x killPods elements and the
	// new one replaces them all (4 x killPods element operations).
	killPods = 25000
	// killTrials is how many writers the test kills, killBeforeFlush of
	// them before they start their flush.
	killTrials      = 8
	killBeforeFlush = 2
)

func TestMain(m *testing.M) {
	if ns := os.Getenv(writerEnv); ns != "" {
		os.Exit(runWriter(ns))
	}
	os.Exit(m.Run())
}

// runWriter is the killed process: it syncs killNew into the named
// namespace, which holds killOld (or what an earlier writer left).
func runWriter(name string) int {
	h, err := netns.GetFromName(name)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	b, err := New(Options{NetNS: int(h)})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	b.beforeFlush = func(*nftables.Conn) { fmt.Fprintln(os.Stdout, writerFlushing) }
	if _, err := b.Sync(context.Background(), killNew()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Fprintln(os.Stdout, writerDone)
	return 0
}

// podTable is fullRuleset with n pods whose addresses start at
// 10.<second>.0.0 in peer4 and ing4.
func podTable(n int, second byte, tweaks ...func(*ruleset.Ruleset)) *ruleset.Ruleset {
	return fullRuleset(append([]func(*ruleset.Ruleset){func(r *ruleset.Ruleset) {
		p, m := r.Set("peer4"), r.Set("ing4")
		for i := range n {
			a := netip.AddrFrom4([4]byte{10, second + byte(i>>16), byte(i >> 8), byte(i)})
			p.Elements = append(p.Elements, ruleset.Element{Addr: a})
			m.Elements = append(m.Elements, ruleset.Element{Addr: a, Verdict: jump("pol-a")})
		}
	}}, tweaks...)...)
}

// killOld is the table in force before each writer starts.
func killOld() *ruleset.Ruleset { return podTable(killPods, 100) }

// killNew differs from killOld everywhere a torn batch would show: every
// pod element replaced, a set, a chain and a map entry added, and a base
// chain flushed and refilled with one rule fewer.
func killNew() *ruleset.Ruleset {
	return podTable(killPods, 120, policyAdd, func(r *ruleset.Ruleset) {
		c := r.Chain("postrouting")
		c.Rules = c.Rules[:len(c.Rules)-1]
	})
}

// writer is one run of the writer process.
type writer struct {
	cmd      *exec.Cmd
	started  time.Time
	flushing chan time.Time // when the writer said it starts the flush
	done     chan time.Time // when it said Sync returned
	exited   chan error
}

func startWriter(t *testing.T, ns string) *writer {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), writerEnv+"="+ns)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	w := &writer{cmd: cmd, flushing: make(chan time.Time, 1), done: make(chan time.Time, 1), exited: make(chan error, 1)}
	w.started = time.Now()
	require.NoError(t, cmd.Start())
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			switch sc.Text() {
			case writerFlushing:
				w.flushing <- time.Now()
			case writerDone:
				w.done <- time.Now()
			}
		}
		err := cmd.Wait()
		if err != nil && stderr.Len() > 0 {
			err = fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
		}
		w.exited <- err
	}()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	return w
}

// killed reports whether the process died of SIGKILL.
func killed(err error) bool {
	ee, ok := err.(*exec.ExitError) //nolint:errorlint // the error of cmd.Wait itself
	if !ok {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}

// tableState names what a listing of the namespace's table is: "old",
// "new", or "a mix" with the diff against the nearer one.
func tableState(t *testing.T, ns string, oldL, newL string) (string, string) {
	t.Helper()
	got := normalizedListing(t, ns)
	switch got {
	case oldL:
		return "old", ""
	case newL:
		return "new", ""
	}
	return "a mix", summarizeDiff(oldL, got) + "\nagainst the new table:\n" + summarizeDiff(newL, got)
}

// summarizeDiff is the lines of got missing from want and added to it, a
// few of each, and how many.
func summarizeDiff(want, got string) string {
	in := func(s string) map[string]bool {
		m := map[string]bool{}
		for _, l := range strings.Split(s, "\n") {
			m[l] = true
		}
		return m
	}
	w, g := in(want), in(got)
	var missing, extra []string
	for l := range w {
		if !g[l] {
			missing = append(missing, l)
		}
	}
	for l := range g {
		if !w[l] {
			extra = append(extra, l)
		}
	}
	clip := func(ls []string) string {
		if len(ls) > 5 {
			ls = ls[:5]
		}
		for i, l := range ls {
			if len(l) > 160 {
				ls[i] = l[:160] + "…"
			}
		}
		return strings.Join(ls, "\n  ")
	}
	return fmt.Sprintf("%d lines missing:\n  %s\n%d lines extra:\n  %s", len(missing), clip(missing), len(extra), clip(extra))
}

// TestFault_SIGKILLDuringLargeFlush kills a writer with SIGKILL at random
// moments of a sync that replaces 2 x killPods set and map elements, adds a
// set, a chain and a map entry and refills a base chain: after each kill the
// kernel holds the complete old table or the complete new one, compared
// line by line (sets' elements sorted) with what `nft -f` of each Ruleset's
// text lists. Half the kills land at a random moment after the writer
// announced its flush (within the flush's measured duration), half at a
// random moment of the writer's whole life. A restarted Backend then adopts
// whatever the kernel holds and converges to the new table, and the sync
// after that writes nothing.
func TestFault_SIGKILLDuringLargeFlush(t *testing.T) {
	ns, b := kernelNS(t)
	oldRS, newRS := killOld(), killNew()
	oldL, newL := listingOf(t, oldRS), listingOf(t, newRS)
	require.NotEqual(t, oldL, newL)

	reset := func() {
		t.Helper()
		// The writer's commit moved the generation id: b reads the
		// kernel back and diffs against what it finds.
		_, err := b.Sync(context.Background(), oldRS)
		require.NoError(t, err)
	}
	mustSync(t, b, oldRS)

	// One writer left alone: how long it takes to get to its flush, and
	// how long the flush takes.
	w := startWriter(t, ns)
	var flushAt, doneAt time.Time
	select {
	case flushAt = <-w.flushing:
	case <-time.After(time.Minute):
		t.Fatal("the writer never started its flush")
	}
	select {
	case doneAt = <-w.done:
	case <-time.After(time.Minute):
		t.Fatal("the writer never finished")
	}
	require.NoError(t, <-w.exited)
	st, diff := tableState(t, ns, oldL, newL)
	require.Equal(t, "new", st, "the writer left alone did not commit the new table:\n%s", diff)
	toFlush, flush := flushAt.Sub(w.started), doneAt.Sub(flushAt)
	t.Logf("writer alone: %v until its flush, flush and acks %v", toFlush.Round(time.Millisecond), flush.Round(time.Millisecond))

	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 15))
	outcomes := map[string]int{}
	for i := range killTrials {
		reset()
		w := startWriter(t, ns)
		waitFlushing := func() {
			select {
			case <-w.flushing:
			case err := <-w.exited:
				t.Fatalf("trial %d: the writer exited before its flush: %v", i, err)
			case <-time.After(time.Minute):
				t.Fatalf("trial %d: the writer never started its flush", i)
			}
		}
		var delay time.Duration
		var phase string
		if i < killBeforeFlush {
			// While it reads the kernel's table, diffs and lowers.
			delay = time.Duration(rng.Int64N(int64(toFlush)))
			time.Sleep(delay)
			phase = "after the writer started"
		} else {
			// Stratified over the flush and a little after it, so that
			// every part of it (building the batch, the kernel
			// processing it inside sendmsg, the acks) gets kills whatever
			// the machine's speed: kill k of n lands in the k-th n-th.
			waitFlushing()
			k, n := int64(i-killBeforeFlush), int64(killTrials-killBeforeFlush)
			span := int64(flush) * 5 / 4
			delay = time.Duration(span*k/n + rng.Int64N(span/n))
			time.Sleep(delay)
			phase = "after the flush began"
		}
		if err := w.cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
			t.Fatalf("trial %d: kill the writer: %v", i, err)
		}
		err := <-w.exited
		if !killed(err) {
			require.NoError(t, err, "trial %d: the writer failed", i)
			phase += " (too late: it had finished)"
		}
		st, diff := tableState(t, ns, oldL, newL)
		t.Logf("trial %d: SIGKILL %v %s: the kernel holds the %s table", i, delay.Round(time.Microsecond), phase, st)
		require.NotEqual(t, "a mix", st, "trial %d: a SIGKILL %v %s left a table that is neither the old nor the new one:\n%s", i, delay, phase, diff)
		outcomes[st]++
	}
	t.Logf("outcomes of %d kills: %v", killTrials, outcomes)

	// Restarted: a new Backend adopts what the last writer left and
	// converges; nothing is left to write after that.
	restarted := newBackendIn(t, ns)
	first := mustSync(t, restarted, newRS)
	require.True(t, first.Full, "a restarted backend reads the kernel first")
	st, diff = tableState(t, ns, oldL, newL)
	require.Equal(t, "new", st, "the restarted backend did not converge:\n%s", diff)
	wantStats(t, "after convergence", mustSync(t, restarted, newRS), false, 0)
}

// listingOf is the normalized listing `nft -f` of rs's text produces in a
// fresh namespace: what a correct sync of rs must leave.
func listingOf(t *testing.T, rs *ruleset.Ruleset) string {
	t.Helper()
	ref, _ := kernelNS(t)
	applyText(t, ref, rs.Text())
	return normalizedListing(t, ref)
}
