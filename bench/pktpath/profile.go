package pktpath

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Profiler samples one sending thread with perf (cpu-clock, call chains)
// while it measures, and counts the samples that fall inside nftables'
// evaluation of a chain (nft_do_chain, lookups and jumps included). The
// throughput ratios of a shared machine are noisy (the same table measured
// twice differs by ±7% between short runs); the time the kernel spends in
// nftables per judged packet is a much narrower figure, and it is the cost
// the table adds, whatever the rest of the path costs.
type Profiler struct {
	// Hz is the sampling frequency.
	Hz int

	perf string
	dir  string
	n    int
	last string
}

// NftSymbol is the function every sample spent in nftables has on its stack.
const NftSymbol = "nft_do_chain"

// NewProfiler finds perf and checks that it can sample the kernel; the
// caller must Close it.
func NewProfiler(hz int) (*Profiler, error) {
	path, err := exec.LookPath("perf")
	if err != nil {
		return nil, fmt.Errorf("profile: %w (Debian: apt-get install linux-perf)", err)
	}
	dir, err := os.MkdirTemp("", "pdbench-perf-")
	if err != nil {
		return nil, err
	}
	p := &Profiler{Hz: hz, perf: path, dir: dir}
	// A short system-wide sample shows whether perf events work at all
	// (a container or a paranoid setting can forbid them).
	out, err := exec.Command(path, "record", "-q", "-e", "cpu-clock", "-a", "-o", filepath.Join(dir, "probe.data"), "--", "sleep", "0.05").CombinedOutput()
	if err != nil {
		return nil, errors.Join(fmt.Errorf("profile: perf record does not work here: %w: %s", err, bytes.TrimSpace(out)), p.Close())
	}
	return p, nil
}

// Close removes the recorded profiles.
func (p *Profiler) Close() error { return os.RemoveAll(p.dir) }

// Start begins recording thread tid (Topology.Profile); stop ends it. The
// profile is then Count's.
func (p *Profiler) Start(tid int) (stop func() error) {
	p.n++
	file := filepath.Join(p.dir, fmt.Sprintf("%d.data", p.n))
	p.last = file
	cmd := exec.Command(p.perf, "record", "-q", "-e", "cpu-clock", "-F", strconv.Itoa(p.Hz), "-g", "-t", strconv.Itoa(tid), "-o", file)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return func() error { return fmt.Errorf("profile: start perf: %w", err) }
	}
	// perf writes its file's header once it is attached; until then the
	// thread waits, so no measured packet goes unsampled.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if fi, err := os.Stat(file); err == nil && fi.Size() > 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	return func() error {
		_ = cmd.Process.Signal(syscall.SIGINT)
		if err := cmd.Wait(); err != nil {
			var ee *exec.ExitError
			if !errors.As(err, &ee) {
				return fmt.Errorf("profile: perf record: %w", err)
			}
			// perf stopped by SIGINT may exit non-zero; the file
			// decides (Count fails on a broken one).
		}
		return nil
	}
}

// Count returns how many samples the last profile holds and how many of them
// have NftSymbol on their stack.
func (p *Profiler) Count() (samples, nft int, err error) {
	if p.last == "" {
		return 0, 0, errors.New("profile: nothing recorded")
	}
	cmd := exec.Command(p.perf, "script", "-i", p.last, "-F", "tid,ip,sym")
	out, err := cmd.Output()
	if err != nil {
		return 0, 0, fmt.Errorf("profile: perf script %s: %w", p.last, err)
	}
	return countStacks(out)
}

// countStacks counts the samples of `perf script -F tid,ip,sym` output (a line
// with the thread id, then one line per frame, then a blank line) and those
// with NftSymbol among their frames.
func countStacks(out []byte) (samples, nft int, err error) {
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	in, hit := false, false
	end := func() {
		if in {
			samples++
			if hit {
				nft++
			}
		}
		in, hit = false, false
	}
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.TrimSpace(line) == "":
			end()
		case line[0] != '\t':
			end()
			in = true
		default:
			for _, f := range strings.Fields(line) {
				if f == NftSymbol {
					hit = true
				}
			}
		}
	}
	end()
	if err := sc.Err(); err != nil {
		return 0, 0, err
	}
	if samples == 0 {
		return 0, 0, errors.New("profile: no samples recorded")
	}
	return samples, nft, nil
}

// ProfileSample is one profiled measurement: the measurement and the perf
// samples of its sending thread.
type ProfileSample struct {
	Sample
	// Samples counts the thread's perf samples, Nft those inside nftables.
	Samples, Nft int
}

// ProfiledIDs are the configurations profiled, when they are measured,
// besides the curve's points (IDs "b@…").
var ProfiledIDs = []string{"ct", "f", "b", "b+cnp"}

// profiled reports whether the configuration id is profiled.
func profiled(id string) bool { return slices.Contains(ProfiledIDs, id) || strings.HasPrefix(id, "b@") }

// ProfiledTraffic is what is profiled: the traffic judged as new flows.
var ProfiledTraffic = []Traffic{TCPConnect, UDPFlows}

// NftNs returns the nanoseconds spent in nftables per counted packet (or
// connection) over the samples ps at hz, and the smallest and largest
// figure of a single sample.
func NftNs(ps []ProfileSample, hz int) (ns, lo, hi float64) {
	var nft, count float64
	for i, p := range ps {
		v := float64(p.Nft) / float64(hz) * 1e9 / float64(max(p.Count, 1))
		if i == 0 || v < lo {
			lo = v
		}
		if i == 0 || v > hi {
			hi = v
		}
		nft += float64(p.Nft)
		count += float64(p.Count)
	}
	if count == 0 {
		return 0, 0, 0
	}
	return nft / float64(hz) * 1e9 / count, lo, hi
}

// CPUNs returns the sending thread's CPU time per counted packet over ps,
// in nanoseconds.
func CPUNs(ps []ProfileSample) float64 {
	var cpu time.Duration
	var count uint64
	for _, p := range ps {
		cpu += p.CPU
		count += p.Count
	}
	if count == 0 {
		return 0
	}
	return float64(cpu.Nanoseconds()) / float64(count)
}
