package lab

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/policyd/policyd/internal/netnsutil"
)

func TestRunOf(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, want string }{
		{"pdlab-ab12-n0", "ab12"},
		{"pdlab-ab12-underlay", "ab12"},
		{"pdlab-kubeproxy", "kubeproxy"},
		{"pdlab-", ""},
		{"probe1", ""},
		{"xpdlab-ab12-n0", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := runOf(tt.name); got != tt.want {
				t.Errorf("runOf(%q) = %q, want %q", tt.name, got, tt.want)
			}
		})
	}
}

func TestParseTables(t *testing.T) {
	t.Parallel()
	out := "table inet policyd\ntable ip pdlab-kubeproxy\ntable ip6 pdlab-kubeproxy\ntable inet other-pdlab-x\n"
	got := parseTables(out, Prefix)
	want := [][2]string{{"ip", "pdlab-kubeproxy"}, {"ip6", "pdlab-kubeproxy"}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("parseTables = %v, want %v", got, want)
	}
}

// rootLeftovers is Leftovers, failing the test on error.
func rootLeftovers(t *testing.T, run string) []string {
	t.Helper()
	left, err := Leftovers(run)
	if err != nil {
		t.Fatal(err)
	}
	return left
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// TestLab_CloseLeavesNothing: after Close no namespace, root link, root
// nftables table or lock file of the run remains, no file descriptor of the
// lab stays open (so the kernel can destroy the namespaces), and a second
// Close is a no-op.
func TestLab_CloseLeavesNothing(t *testing.T) {
	requireKernel(t)
	cfg := Config{CNI: CNIBridged, DNAT: true, IPv6: true}
	warm, err := New(context.Background(), cfg, fourPods())
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	_ = warm.ProbeAll(context.Background(), []Probe{{From: "x/a", To: "y/d", Port: 80, Protocol: tcpUDP[0]}})
	if err := warm.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	fds := openFDs(t)
	l, err := New(context.Background(), cfg, fourPods())
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	run := l.RunID()
	if len(rootLeftovers(t, run)) == 0 {
		t.Fatal("a live lab shows no namespaces: the check below would prove nothing")
	}
	res := l.ProbeAll(context.Background(), []Probe{{From: "x/a", To: "y/d", Port: 80, Protocol: tcpUDP[0], Service: true}})
	if !res[0].Observed {
		t.Fatalf("probe before Close: %+v", res[0])
	}
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if left := rootLeftovers(t, run); len(left) > 0 {
		t.Errorf("left after Close: %v", left)
	}
	if got := openFDs(t); got > fds {
		t.Errorf("%d file descriptors open after Close, %d before New", got, fds)
	}
	if r := l.ProbeAll(context.Background(), []Probe{{From: "x/a", To: "y/d", Port: 80, Protocol: tcpUDP[0]}}); r[0].Probed || r[0].Err == "" {
		t.Errorf("probe after Close = %+v, want a not-probed fault", r[0])
	}
	var nilLab *Lab
	if err := nilLab.Close(); err != nil {
		t.Errorf("Close on nil Lab: %v", err)
	}
}

// TestNew_PartialFailureLeavesNothing: two hostNetwork pods on one node
// serving the same port make New fail after the topology is built; nothing
// of the run may remain.
func TestNew_PartialFailureLeavesNothing(t *testing.T) {
	requireKernel(t)
	pods := append(fourPods(),
		podFixture("kube-system", "h1", "node-1", hostNetwork),
		podFixture("kube-system", "h2", "node-1", hostNetwork))
	run := "partial" + newRunID()[:4]
	l, err := New(context.Background(), Config{CNI: CNIRouted, RunID: run}, pods)
	if err == nil {
		_ = l.Close()
		t.Fatal("New succeeded with two hostNetwork pods on one port")
	}
	if !strings.Contains(err.Error(), "kube-system/h2") {
		t.Errorf("error %q does not name the pod", err)
	}
	if left := rootLeftovers(t, run); len(left) > 0 {
		t.Errorf("left after failed New: %v", left)
	}
}

// TestCleanupLeftovers_RemovesDeadRunsKeepsLiveOnes: a namespace of a run
// with no live lab (as a crashed process leaves it) is removed, with its
// stale lock file; a live lab survives and keeps working.
func TestCleanupLeftovers_RemovesDeadRunsKeepsLiveOnes(t *testing.T) {
	requireKernel(t)
	live := newTestLab(t, Config{CNI: CNIRouted}, fourPods())

	dead := "leak" + newRunID()[:6]
	for _, role := range []string{"n0", "p1"} {
		h, err := netnsutil.CreateNamed(Prefix + dead + "-" + role)
		if err != nil {
			t.Fatal(err)
		}
		h.Close()
	}
	t.Cleanup(func() {
		// Best effort: when the test passes, CleanupLeftovers has removed them.
		_ = netnsutil.DeleteNamed(Prefix + dead + "-n0")
		_ = netnsutil.DeleteNamed(Prefix + dead + "-p1")
		_ = os.Remove(lockPath(dead))
	})
	// The lock file of a crashed run exists but nobody holds its lock.
	if err := os.WriteFile(lockPath(dead), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if left := rootLeftovers(t, dead); len(left) != 3 {
		t.Fatalf("leaked run shows %v, want two namespaces and a lock file", left)
	}

	if err := CleanupLeftovers(); err != nil {
		t.Fatalf("CleanupLeftovers: %v", err)
	}
	if left := rootLeftovers(t, dead); len(left) > 0 {
		t.Errorf("left after CleanupLeftovers: %v", left)
	}
	if left := rootLeftovers(t, live.RunID()); len(left) == 0 {
		t.Fatalf("CleanupLeftovers removed the live lab %s", live.RunID())
	}
	probeAndCheck(t, live, allProbes(live, []int32{80}, tcpUDP, IPv4, false), nil)
}
