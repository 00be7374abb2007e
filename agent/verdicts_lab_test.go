package agent_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/ipv4"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/policyd/policyd/agent"
	"github.com/policyd/policyd/internal/apiservertest"
	"github.com/policyd/policyd/internal/netnsutil"
	"github.com/policyd/policyd/policy/compile"
	"github.com/policyd/policyd/policy/decider"
	"github.com/policyd/policyd/verdicts"
)

// syncBuffer is a bytes.Buffer safe for concurrent writes and reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// withVerdicts makes each lab node's agent log drops to the default group
// in that node's namespace, rate limited as given.
func withVerdicts(rate, burst uint32) func(string, int) agentOption {
	return func(_ string, h int) agentOption {
		return func(c *agent.Config) {
			c.Verdicts = agent.VerdictConfig{
				Log:   compile.LogOptions{Drops: true, Group: agent.DefaultLogGroup, Rate: rate, Burst: burst},
				NetNS: h,
			}
		}
	}
}

// serveAgent serves a's endpoints on a loopback port with the timeouts of
// policyd run's server, and returns the address.
func serveAgent(t *testing.T, a *agent.Agent) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{Handler: a.Handler(), ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: 60 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

// recordStream follows an agent's /verdicts in the background.
type recordStream struct {
	mu   sync.Mutex
	recs []verdicts.Record
	lost uint64
	stop func() error
}

func followAgent(t *testing.T, addr string, f verdicts.Filter) *recordStream {
	t.Helper()
	s := &recordStream{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- verdicts.Follow(ctx, http.DefaultClient, "http://"+addr+verdicts.Path, "", f, func(m verdicts.Message) error {
			s.mu.Lock()
			defer s.mu.Unlock()
			if m.Lost > 0 {
				s.lost += m.Lost
			} else {
				s.recs = append(s.recs, m.Record)
			}
			return nil
		})
	}()
	var once sync.Once
	var err error
	s.stop = func() error { once.Do(func() { cancel(); err = <-done }); return err }
	t.Cleanup(func() { _ = s.stop() })
	return s
}

func (s *recordStream) records() []verdicts.Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]verdicts.Record(nil), s.recs...)
}

// waitFor returns the first record match accepts, failing after timeout.
func (s *recordStream) waitFor(t *testing.T, what string, match func(*verdicts.Record) bool) verdicts.Record {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		for _, r := range s.records() {
			if match(&r) {
				return r
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no record of %s in %d records: %+v", what, len(s.records()), s.records())
	return verdicts.Record{}
}

// sendUDP sends one datagram from the pod namespace, from srcPort.
func sendUDP(t *testing.T, podNS string, srcPort int, dst netip.Addr, port int) {
	t.Helper()
	require.NoError(t, netnsutil.DoNamed(podNS, func() error {
		c, err := net.DialUDP("udp4", &net.UDPAddr{Port: srcPort}, net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, uint16(port))))
		if err != nil {
			return err
		}
		defer func() { _ = c.Close() }() // a UDP socket: nothing is buffered
		_, err = c.Write([]byte("x"))
		return err
	}))
}

// metric returns the value of the series of name with exactly labels
// (k="v",... in Prometheus' sorted order, "" for none) on the agent's
// /metrics, 0 when absent.
func metric(t *testing.T, addr, name, labels string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	want := name
	if labels != "" {
		want += "{" + labels + "}"
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), want+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			require.NoError(t, err)
			return f
		}
	}
	require.NoError(t, sc.Err())
	return 0
}

func npSeries(ns, name string) string {
	return fmt.Sprintf(`direction="ingress",kind="NetworkPolicy",name=%q,namespace=%q,verdict="deny"`, name, ns)
}

func isolateIngress(ns, name string, from map[string]string) *networkingv1.NetworkPolicy {
	np := &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "server"}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
		},
	}
	if from != nil {
		np.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: from}}}}}
	}
	return np
}

// TestAgent_LabVerdicts is issue 14's agent acceptance, against the real
// API server with real packets: a denied connection between two lab pods
// (on two nodes) appears on the agent's /verdicts stream and in
// `policyd observe -o json` naming the pod pair and the policy; the
// policy's policyd_policy_packets_total moves by exactly the packets sent;
// after an edit (a second policy isolates the pod) and a rename, each
// record names the deciders in force when its packet was sent, an id never
// stands for two deciders, and traffic a later edit allows is not recorded.
func TestAgent_LabVerdicts(t *testing.T) {
	s := apiservertest.Shared(t)
	ns := s.Namespace(t)
	pods := []*corev1.Pod{
		newPod(ns, "server", "node-1", map[string]string{"app": "server"}),
		newPod(ns, "client", "node-2", map[string]string{"app": "client"}),
	}
	// node-1's agent also writes each record to its log, at info.
	var agentLog syncBuffer
	opts := func(node string, h int) agentOption {
		base := withVerdicts(agent.DefaultLogRate, agent.DefaultLogBurst)(node, h)
		return func(c *agent.Config) {
			base(c)
			if node == "node-1" {
				c.Logger = slog.New(slog.NewTextHandler(&agentLog, &slog.HandlerOptions{Level: slog.LevelInfo}))
				c.Verdicts.RecordLevel = slog.LevelInfo
			}
		}
	}
	lc := newLabClusterWith(t, s, agentRESTConfig(t, s), []string{ns}, pods, opts)
	node1 := lc.agents[0]
	addr := serveAgent(t, node1.a)
	netnsOf := map[string]string{}
	for _, p := range lc.lab.Pods() {
		netnsOf[p.Key] = p.NetNS
	}
	client, server := key(ns, "client"), key(ns, "server")
	serverIP := lc.lab.PodIP(server)

	stream := followAgent(t, addr, verdicts.Filter{Namespace: ns})
	bin := buildPolicyd(t)
	var obsOut, obsErr bytes.Buffer
	obs := exec.Command(bin, "observe", "-o", "json", "--agent-addr", addr, "--pod", server, "--verdict", "deny")
	obs.Stdout, obs.Stderr = &obsOut, &obsErr
	require.NoError(t, obs.Start())
	obsDone := make(chan error, 1)
	go func() { obsDone <- obs.Wait() }()
	t.Cleanup(func() { _ = obs.Process.Kill() })
	var textOut bytes.Buffer
	text := exec.Command(bin, "observe", "--agent-addr", addr, "-n", ns)
	text.Stdout, text.Stderr = &textOut, &obsErr
	require.NoError(t, text.Start())
	t.Cleanup(func() { _ = text.Process.Kill() })
	require.Eventually(t, func() bool { return node1.a.Resolver().Subscribers() == 3 }, 10*time.Second, 10*time.Millisecond, "observe never connected: %s", &obsErr)

	phases := []struct {
		name     string
		apply    func()
		srcPort  int
		policies []string // nil: allowed, no record
	}{
		{"deny-all isolates the server", func() {
			p := applyPolicy(t, lc.admin, isolateIngress(ns, "deny-all", nil))
			lc.wait("NetworkPolicy", key(ns, "deny-all"), p.ResourceVersion)
		}, 40001, []string{key(ns, "deny-all")}},
		{"edit: allow-other joins the isolating policies", func() {
			p := applyPolicy(t, lc.admin, isolateIngress(ns, "allow-other", map[string]string{"app": "other"}))
			lc.wait("NetworkPolicy", key(ns, "allow-other"), p.ResourceVersion)
		}, 40002, []string{key(ns, "allow-other"), key(ns, "deny-all")}},
		{"rename: deny-all becomes deny-everything", func() {
			p := applyPolicy(t, lc.admin, isolateIngress(ns, "deny-everything", nil))
			lc.wait("NetworkPolicy", key(ns, "deny-everything"), p.ResourceVersion)
			require.NoError(t, lc.admin.NetworkingV1().NetworkPolicies(ns).Delete(context.Background(), "deny-all", metav1.DeleteOptions{}))
			lc.wait("NetworkPolicy", key(ns, "deny-all"), "")
		}, 40003, []string{key(ns, "allow-other"), key(ns, "deny-everything")}},
		{"edit: allow-other admits the client", func() {
			p := applyPolicy(t, lc.admin, isolateIngress(ns, "allow-other", map[string]string{"app": "client"}))
			lc.wait("NetworkPolicy", key(ns, "allow-other"), p.ResourceVersion)
		}, 40004, nil},
	}
	want := map[uint16][]string{}
	idOf := map[uint16]string{}
	for i, ph := range phases {
		ph.apply()
		want[uint16(ph.srcPort)] = ph.policies
		if ph.policies == nil {
			sendUDP(t, netnsOf[client], ph.srcPort, serverIP, 80)
			time.Sleep(time.Second) // a record, if one came, would be here by now
			continue
		}
		series := npSeries(ns, strings.ReplaceAll(strings.Join(ph.policies, ","), ns+"/", ""))
		before := metric(t, addr, "policyd_policy_packets_total", series)
		sendUDP(t, netnsOf[client], ph.srcPort, serverIP, 80)
		rec := stream.waitFor(t, ph.name, func(r *verdicts.Record) bool { return r.SrcPort == uint16(ph.srcPort) })
		t.Logf("%s: %s -> %s %s/%d %s %s by %s %v (%s)", ph.name, rec.Src, rec.Dst, rec.Protocol, rec.Port, rec.Direction, rec.Verdict, rec.Kind, rec.Policies, rec.ID)
		assert.Equal(t, client, rec.Src.Key(), ph.name)
		assert.Equal(t, server, rec.Dst.Key(), ph.name)
		assert.Equal(t, "node-1", rec.Node)
		assert.Equal(t, []any{"UDP", uint16(80), "ingress", "deny", "NetworkPolicy"}, []any{rec.Protocol, rec.Port, rec.Direction, rec.Verdict.String(), rec.Kind.String()}, ph.name)
		assert.Equal(t, ph.policies, rec.Policies, ph.name)
		for port, id := range idOf {
			assert.NotEqual(t, id, rec.ID, "%s: the id of the record from port %d is reused", ph.name, port)
		}
		idOf[uint16(ph.srcPort)] = rec.ID
		var now float64
		if !assert.Eventually(t, func() bool { now = metric(t, addr, "policyd_policy_packets_total", series); return now == before+1 }, 5*time.Second, 50*time.Millisecond) {
			t.Fatalf("%s: %s moved from %v to %v, want +1 (one datagram)", ph.name, series, before, now)
		}
		if i == 0 {
			// A TCP connection attempt is recorded too (its SYN retries
			// are one flow, recorded once a second).
			require.NoError(t, netnsutil.DoNamed(netnsOf[client], func() error {
				c, err := net.DialTimeout("tcp4", net.JoinHostPort(serverIP.String(), "80"), 200*time.Millisecond)
				if err == nil {
					c.Close()
					return errors.New("connected through deny-all")
				}
				return nil
			}))
			tcp := stream.waitFor(t, "the TCP SYN", func(r *verdicts.Record) bool { return r.Protocol == "TCP" })
			assert.Equal(t, []string{key(ns, "deny-all")}, tcp.Policies)
			assert.Equal(t, uint16(80), tcp.Port)
		}
	}
	// The first id keeps its meaning after the edit and the rename.
	d, ok := node1.a.Resolver().Decider(idOf[40001])
	require.True(t, ok)
	assert.Equal(t, []string{key(ns, "deny-all")}, d.Policies)

	check := func(where string, recs []verdicts.Record) {
		t.Helper()
		policiesOfID := map[string][]string{}
		for _, r := range recs {
			if r.Protocol != "UDP" {
				continue
			}
			exp, known := want[r.SrcPort]
			require.True(t, known, "%s: a record nothing sent: %+v", where, r)
			require.NotNil(t, exp, "%s: allowed traffic recorded: %+v", where, r)
			assert.Equal(t, exp, r.Policies, "%s: record from port %d", where, r.SrcPort)
			if prev, ok := policiesOfID[r.ID]; ok {
				assert.Equal(t, prev, r.Policies, "%s: id %s stands for two deciders", where, r.ID)
			}
			policiesOfID[r.ID] = r.Policies
		}
		assert.Len(t, policiesOfID, 3, "%s: one id per decider", where)
	}
	check("stream", stream.records())

	// policyd observe: Ctrl-C ends it with status 0; it printed the same.
	require.NoError(t, obs.Process.Signal(os.Interrupt))
	select {
	case err := <-obsDone:
		require.NoError(t, err, "policyd observe after Ctrl-C: %s", &obsErr)
	case <-time.After(10 * time.Second):
		t.Fatal("policyd observe did not exit on Ctrl-C")
	}
	var printed []verdicts.Record
	for _, line := range strings.Split(strings.TrimSpace(obsOut.String()), "\n") {
		var r verdicts.Record
		require.NoError(t, json.Unmarshal([]byte(line), &r), "observe printed %q", line)
		printed = append(printed, r)
	}
	check("policyd observe -o json", printed)
	t.Logf("policyd observe -o json printed %d records, e.g.\n%s", len(printed), strings.SplitN(obsOut.String(), "\n", 2)[0])
	require.NoError(t, text.Process.Signal(os.Interrupt))
	require.NoError(t, text.Wait(), "policyd observe (text) after Ctrl-C: %s", &obsErr)
	lines := strings.Split(strings.TrimSpace(textOut.String()), "\n")
	assert.Len(t, lines, 4, "three UDP records and the TCP one")
	for _, l := range lines {
		assert.Contains(t, l, " -> "+server+":80 ")
		assert.Contains(t, l, " ingress DENIED by NetworkPolicy "+ns+"/")
	}
	t.Logf("policyd observe -n %s:\n%s", ns, textOut.String())
	resp, err := http.Get("http://" + addr + "/metrics")
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	var series []string
	for _, l := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(l, "policyd_policy_packets_total{") || strings.HasPrefix(l, "policyd_verdict_") {
			series = append(series, l)
		}
	}
	t.Logf("/metrics:\n%s", strings.Join(series, "\n"))
	assert.Zero(t, metric(t, addr, "policyd_verdict_packets_total", `outcome="unknown_id"`), "every id was learned before its table was committed")
	assert.Contains(t, agentLog.String(), fmt.Sprintf("msg=verdict node=node-1 src=%s dst=%s protocol=UDP port=80 direction=ingress verdict=deny kind=NetworkPolicy policies=[%s/deny-all]", client, server, ns),
		"the agent's log line of a record at --verdict-log-level info")
	require.NoError(t, stream.stop())
}

// floodSenderEnv makes the test binary the flood's sender (see TestMain).
const floodSenderEnv = "POLICYD_FLOOD_SENDER"

// floodReport is what the sender prints.
type floodReport struct {
	Sent, Errors int
	Seconds      float64
	FirstError   string
}

// floodSender sends UDP datagrams from one socket (source port 40000) to
// spec's target, at even destination ports cycling through 1024-65534,
// paced at rate a second for seconds, in sendmmsg batches; it prints a
// floodReport. It runs as a process of its own, inside the sender pod's
// namespace, so that none of its CPU is the agent's.
func floodSender(spec string) int {
	var target netip.Addr
	rate, seconds := 100000.0, 10.0
	for _, kv := range strings.Split(spec, ",") {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "target":
			target = netip.MustParseAddr(v)
		case "rate":
			rate, _ = strconv.ParseFloat(v, 64)
		case "seconds":
			seconds, _ = strconv.ParseFloat(v, 64)
		}
	}
	rep, err := flood(target, rate, time.Duration(seconds*float64(time.Second)))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	_ = json.NewEncoder(os.Stdout).Encode(rep)
	return 0
}

func flood(target netip.Addr, rate float64, d time.Duration) (floodReport, error) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{Port: 40000})
	if err != nil {
		return floodReport{}, err
	}
	defer func() { _ = c.Close() }() // a UDP socket: nothing is buffered
	_ = c.SetWriteBuffer(4 << 20)
	pc := ipv4.NewPacketConn(c)
	const batch = 64
	payload := [][]byte{[]byte("flood")}
	msgs := make([]ipv4.Message, batch)
	addrs := make([]net.UDPAddr, batch)
	for i := range msgs {
		addrs[i].IP = target.AsSlice()
		msgs[i].Buffers, msgs[i].Addr = payload, &addrs[i]
	}
	var rep floodReport
	port := 1024
	start := time.Now()
	for {
		el := time.Since(start)
		if el >= d {
			break
		}
		due := int(el.Seconds() * rate)
		for rep.Sent < due {
			n := min(batch, due-rep.Sent)
			p := port
			for i := range n {
				addrs[i].Port = p
				if p += 2; p > 65534 {
					p = 1024
				}
			}
			sent, err := pc.WriteBatch(msgs[:n], 0) // sendmmsg(2)
			if sent > 0 {
				rep.Sent += sent
				port += 2 * sent
				for port > 65534 {
					port -= 65534 - 1024 + 2
				}
			}
			if err != nil {
				rep.Errors++
				if rep.FirstError == "" {
					rep.FirstError = err.Error()
				}
				break
			}
		}
		time.Sleep(200 * time.Microsecond)
	}
	rep.Seconds = time.Since(start).Seconds()
	return rep, nil
}

// nodeCounter reads the packets of the named counter of table inet
// pdflood in a lab node.
func nodeCounter(t *testing.T, lc *labCluster, node string) uint64 {
	t.Helper()
	out, err := lc.lab.ExecInNode(context.Background(), node, nil, "nft", "list", "counter", "inet", "pdflood", "arrived")
	require.NoError(t, err)
	f := strings.Fields(string(out))
	for i, w := range f {
		if w == "packets" && i+1 < len(f) {
			n, err := strconv.ParseUint(f[i+1], 10, 64)
			require.NoError(t, err)
			return n
		}
	}
	t.Fatalf("no packets in %q", out)
	return 0
}

// linkDrops sums the drop counters of every link in a lab node.
func linkDrops(t *testing.T, lc *labCluster, node string) (rx, tx uint64) {
	t.Helper()
	out, err := lc.lab.ExecInNode(context.Background(), node, nil, "ip", "-s", "-j", "link", "show")
	require.NoError(t, err)
	var links []struct {
		Stats64 struct {
			Rx struct{ Dropped uint64 } `json:"rx"`
			Tx struct{ Dropped uint64 } `json:"tx"`
		} `json:"stats64"`
	}
	require.NoError(t, json.Unmarshal(out, &links))
	for _, l := range links {
		rx += l.Stats64.Rx.Dropped
		tx += l.Stats64.Tx.Dropped
	}
	return rx, tx
}

// cpuSeconds is the CPU this process used so far.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// TestAgent_LabVerdictFlood is issue 14's flood acceptance: a sender pod
// offers 100k denied UDP packets a second for 10 s (distinct flows: every
// packet has a new destination port) to a pod isolated by a default deny,
// with the agent's default rate limit. The kernel's drop counter, read
// through /metrics, equals the packets that reached the node (counted by a
// table of the test's own at prerouting) exactly; what was read, lost and
// kept back by the rate limit adds up to that count exactly; the records
// made stay within the limit (rate x seconds + burst + one second's slack),
// each one is a flow the sender sent, and the agent's CPU and heap stay
// bounded. The sender is a process of its own so that its CPU is not the
// agent's.
func TestAgent_LabVerdictFlood(t *testing.T) {
	const (
		rate, burst = agent.DefaultLogRate, agent.DefaultLogBurst
		offered     = 100000
		seconds     = 10.0
	)
	s := apiservertest.Shared(t)
	ns := s.Namespace(t)
	pods := []*corev1.Pod{
		newPod(ns, "sender", "node-1", map[string]string{"app": "sender"}),
		newPod(ns, "server", "node-1", map[string]string{"app": "server"}),
	}
	lc := newLabClusterWith(t, s, agentRESTConfig(t, s), []string{ns}, pods, withVerdicts(rate, burst))
	node1 := lc.agents[0]
	addr := serveAgent(t, node1.a)
	var senderNS string
	for _, p := range lc.lab.Pods() {
		if p.Key == key(ns, "sender") {
			senderNS = p.NetNS
		}
	}
	sender, server := lc.lab.PodIP(key(ns, "sender")), lc.lab.PodIP(key(ns, "server"))
	p := applyPolicy(t, lc.admin, isolateIngress(ns, "deny-flood", nil))
	lc.wait("NetworkPolicy", key(ns, "deny-flood"), p.ResourceVersion)
	// The test's own count of what reaches the node from the sender.
	_, err := lc.lab.ExecInNode(context.Background(), "node-1", []byte(fmt.Sprintf(`table inet pdflood {
	counter arrived {}
	chain pre {
		type filter hook prerouting priority -300;
		ip saddr %s ip daddr %s udp sport 40000 counter name "arrived"
	}
}`, sender, server)), "nft", "-f", "-")
	require.NoError(t, err)

	stream := followAgent(t, addr, verdicts.Filter{Namespace: ns})
	require.Eventually(t, func() bool { return node1.a.Resolver().Subscribers() == 1 }, 10*time.Second, 10*time.Millisecond)
	series := npSeries(ns, "deny-flood")
	read := func() float64 {
		return metric(t, addr, "policyd_verdict_packets_total", `outcome="recorded"`) +
			metric(t, addr, "policyd_verdict_packets_total", `outcome="deduplicated"`) +
			metric(t, addr, "policyd_verdict_packets_total", `outcome="unknown_id"`)
	}
	type totals struct{ kernel, read, limited, lost, recorded float64 }
	snapshot := func() totals {
		return totals{
			kernel: metric(t, addr, "policyd_policy_packets_total", series), read: read(),
			limited: metric(t, addr, "policyd_verdict_rate_limited_total", ""), lost: metric(t, addr, "policyd_verdict_lost_total", ""),
			recorded: metric(t, addr, "policyd_verdict_packets_total", `outcome="recorded"`),
		}
	}
	arrived0 := nodeCounter(t, lc, "node-1")
	before := snapshot()
	rxDrop0, txDrop0 := linkDrops(t, lc, "node-1")
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	heap0, heapPeak := ms.HeapAlloc, ms.HeapAlloc
	cpu0 := cpuSeconds()

	self, err := os.Executable()
	require.NoError(t, err)
	cmd := exec.Command("ip", "netns", "exec", senderNS, self)
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=target=%s,rate=%d,seconds=%g", floodSenderEnv, server, offered, seconds))
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	require.NoError(t, cmd.Start())
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	sampling := true
	for sampling {
		select {
		case err := <-done:
			require.NoError(t, err, "sender: %s", &errOut)
			sampling = false
		case <-time.After(100 * time.Millisecond):
			runtime.ReadMemStats(&ms)
			heapPeak = max(heapPeak, ms.HeapAlloc)
		}
	}
	cpu := cpuSeconds() - cpu0
	var rep floodReport
	require.NoError(t, json.Unmarshal(out.Bytes(), &rep), "sender printed %q", &out)
	// Drained: the kernel batches for 50 ms at most.
	time.Sleep(500 * time.Millisecond)
	after := snapshot()
	arrived := nodeCounter(t, lc, "node-1") - arrived0
	rxDrop, txDrop := linkDrops(t, lc, "node-1")
	kernel := uint64(after.kernel - before.kernel)
	recorded := after.recorded - before.recorded
	t.Logf("sender: %d packets in %.2f s (%.0f/s offered), %d send errors %s", rep.Sent, rep.Seconds, float64(rep.Sent)/rep.Seconds, rep.Errors, rep.FirstError)
	t.Logf("node: %d arrived at prerouting, %d counted by the policy's drop counter; lost on the way %d (node links' drop counters moved rx %d tx %d)",
		arrived, kernel, uint64(rep.Sent)-arrived, rxDrop-rxDrop0, txDrop-txDrop0)
	t.Logf("reader: %.0f logged packets read (%.0f recorded), %.0f kept back by the rate limit, %.0f lost in the socket; stream got %d records, %d lost",
		after.read-before.read, recorded, after.limited-before.limited, after.lost-before.lost, len(stream.records()), stream.lost)
	t.Logf("agent process: %.2f CPU seconds over %.1f s (%.1f%% of one core; two agents, their informers and this test's reader); heap %.1f MB before, peak %.1f MB (+%.1f MB)",
		cpu, rep.Seconds, 100*cpu/rep.Seconds, float64(heap0)/1e6, float64(heapPeak)/1e6, float64(heapPeak-heap0)/1e6)

	require.Greater(t, float64(rep.Sent), 0.8*offered*seconds, "the sender offered too little to call it a flood")
	assert.Equal(t, arrived, kernel, "the drop counter counts exactly the packets that reached the node")
	assert.Equal(t, after.kernel-before.kernel, (after.read-before.read)+(after.limited-before.limited)+(after.lost-before.lost),
		"counted = read + rate-limited + lost, exactly")
	// The kernel's token bucket starts full (burst) and refills at rate;
	// the slack is a tenth of a second of it, for the send window's edges.
	limit := float64(rate)*rep.Seconds + float64(burst) + float64(rate)/10
	assert.LessOrEqual(t, after.read-before.read, limit, "the kernel's rate limit holds")
	assert.LessOrEqual(t, recorded, limit)
	assert.Greater(t, recorded, float64(rate)*rep.Seconds*0.8, "the rate limit lets its rate through")
	recs := stream.records()
	assert.Equal(t, int(recorded), len(recs), "every record reaches the stream")
	for _, r := range recs {
		ok := r.Src.IP == sender && r.SrcPort == 40000 && r.Dst.IP == server && r.Port%2 == 0 && r.Port >= 1024 && r.Port <= 65534 &&
			r.Protocol == "UDP" && r.Verdict == decider.VerdictDeny && r.Direction == "ingress" && len(r.Policies) == 1 && r.Policies[0] == key(ns, "deny-flood")
		if !assert.True(t, ok, "a record the sender did not send: %+v", r) {
			break
		}
	}
	assert.Less(t, cpu/rep.Seconds, 0.10, "the agents' CPU during the flood")
	assert.Less(t, heapPeak-heap0, uint64(16<<20), "the heap during the flood")
}
