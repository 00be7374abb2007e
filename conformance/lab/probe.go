package lab

import (
	"context"
	"errors"
	"fmt"
	"github.com/policyd/policyd/internal/netnsutil"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netns"

	"github.com/policyd/policyd/cluster"
)

// Probe is one connection attempt: from inside pod From to pod To's address
// of Family (the zero value means IPv4), or to To's ClusterIP when Service is
// set (DNAT mode only), on Port and Protocol.
//
// Probes through a Service (SetServices) set Target: the service address
// and port (a ClusterIP, an external IP, or a node's address and NodePort);
// To is then the backend pod expected to answer and Port its target port.
// Pin, when positive, binds the source port to PinPortBase+Pin-1, which the
// kube-proxy-like table sends to the Service's backend Pin-1, so that every
// backend can be probed deterministically. From may be ExternalClient.
//
// SrcPort, when positive and Pin is not, binds attempt n (1 to Attempts)
// to source port SrcPort+n-1 (with SO_REUSEADDR), so that the caller can
// tell the probe's packets apart from every other probe's, e.g. in what the
// kernel logs. Each attempt needs a port of its own: an attempt that timed
// out after connecting leaves its connection in TIME_WAIT, and the next
// connect on the same ports would fail. The caller reserves Attempts ports
// that the source does not serve and no other running probe uses. Zero lets
// the kernel choose.
type Probe struct {
	From     string
	To       string
	Port     int32
	Protocol cluster.Protocol
	Family   Family
	Service  bool
	Target   netip.AddrPort
	Pin      int
	SrcPort  int
}

// String renders the probe as "x/a -> y/b TCP/80" (with " v6" and " via
// ClusterIP" when they apply).
func (p Probe) String() string {
	s := fmt.Sprintf("%s -> %s %s/%d", p.From, p.To, p.Protocol, p.Port)
	if p.Family == IPv6 {
		s += " v6"
	}
	if p.Service {
		s += " via ClusterIP"
	}
	if p.Target.IsValid() {
		s += " via " + p.Target.String()
		if p.Pin > 0 {
			s += fmt.Sprintf(" pinned to backend %d", p.Pin)
		}
	}
	return s
}

// Result is what a Probe observed.
type Result struct {
	Probe
	// Probed is false when the probe could not be run: SCTP (this kernel has
	// no SCTP sockets), or a bad probe (see Err). Observed means nothing then.
	Probed bool
	// Observed is true when the connection was allowed: the destination pod's
	// server answered with its token.
	Observed bool
	// Detail says how the last attempt ended: "ok", "timeout", "refused",
	// "unreachable", "blocked locally", "no answer" (TCP connected but
	// nothing came back), or why the probe was not run.
	Detail string
	// Err is set for lab faults, which no policy can explain: an unknown pod,
	// a family the pod has no address of, an answer from the wrong pod, an
	// unexpected socket error. A caller comparing truth tables should treat a
	// Result with Err as a failure whatever Observed says.
	Err string
	// Dst is the address probed.
	Dst netip.AddrPort
	// SrcPorts are the source ports the attempts made were bound to (Pin's,
	// or SrcPort's), in order; nil when the kernel chose them.
	SrcPorts []int
	// Attempts is how many connections were tried (1, or 2 after a failure).
	Attempts int
	// Elapsed is the time the probe took.
	Elapsed time.Duration
}

// Attempts is how many connections a probe tries at most: once, and once
// more if the first is not allowed.
const Attempts = 2

// ProbeAll runs the probes in parallel (at most Config.Parallelism at once)
// and returns their results in the same order. Each probe tries once and, if
// the connection is not allowed, once more, each attempt bounded by
// Config.ProbeTimeout. Probes hold the lab's read lock: UpdatePods and Close
// wait for them.
func (l *Lab) ProbeAll(ctx context.Context, probes []Probe) []Result {
	l.mu.RLock()
	defer l.mu.RUnlock()
	results := make([]Result, len(probes))
	sem := make(chan struct{}, l.cfg.Parallelism)
	var wg sync.WaitGroup
	for i, p := range probes {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			results[i] = l.probe(ctx, p)
		}()
	}
	wg.Wait()
	return results
}

// probe runs one probe; the caller holds the read lock.
func (l *Lab) probe(ctx context.Context, p Probe) Result {
	start := time.Now()
	r := Result{Probe: p}
	fail := func(format string, args ...any) Result {
		r.Err = fmt.Sprintf(format, args...)
		r.Detail = "not probed: " + r.Err
		return r
	}
	if l.closed {
		return fail("lab is closed")
	}
	from, ok := l.pods[p.From]
	if p.From == ExternalClient && l.ext != nil {
		from, ok = &labPod{plan: &podPlan{Key: ExternalClient, IPs: [2]netip.Addr{ExternalClientAddr}}, ns: l.ext}, true
	}
	if !ok {
		return fail("unknown source pod %q", p.From)
	}
	to, ok := l.pods[p.To]
	if !ok {
		return fail("unknown destination pod %q", p.To)
	}
	f := v4
	switch p.Family {
	case 0, IPv4:
	case IPv6:
		f = v6
	default:
		return fail("invalid family %d (want 4 or 6)", p.Family)
	}
	switch p.Protocol {
	case cluster.ProtocolTCP, cluster.ProtocolUDP:
	case cluster.ProtocolSCTP:
		r.Detail = "not probed: SCTP (this kernel has no SCTP sockets)"
		return r
	default:
		return fail("invalid protocol %v", p.Protocol)
	}
	if p.Port < 1 || p.Port > 65535 {
		return fail("port %d is not in 1-65535", p.Port)
	}
	var dst netip.Addr
	if p.Target.IsValid() {
		dst = p.Target.Addr()
		if famOf(dst) != f {
			return fail("target %s is not IPv%d", p.Target, f.Family())
		}
	} else if p.Service {
		dst = to.plan.ClusterIPs[f]
		if !dst.IsValid() {
			return fail("pod %s has no IPv%d ClusterIP (Config.DNAT off, or the family is off)", p.To, f.Family())
		}
	} else {
		dst = to.plan.IPs[f]
		if !dst.IsValid() {
			return fail("pod %s has no IPv%d address", p.To, f.Family())
		}
	}
	if !from.plan.IPs[f].IsValid() {
		return fail("pod %s has no IPv%d address", p.From, f.Family())
	}
	r.Dst = netip.AddrPortFrom(dst, uint16(p.Port))
	if p.Target.IsValid() {
		r.Dst = p.Target
	}
	if p.Pin < 0 || p.Pin > 1000 {
		return fail("pin %d is not in 0-1000", p.Pin)
	}
	if p.SrcPort < 0 || p.SrcPort > 65536-Attempts {
		return fail("source port %d is not in 0-%d", p.SrcPort, 65536-Attempts)
	}
	want := token(p.To, p.Protocol, p.Port)
	r.Probed = true
	for attempt := 1; attempt <= Attempts; attempt++ {
		r.Attempts = attempt
		localPort := 0
		switch {
		case p.Pin > 0:
			localPort = PinPortBase + p.Pin - 1
		case p.SrcPort > 0:
			localPort = p.SrcPort + attempt - 1
		}
		if localPort != 0 {
			r.SrcPorts = append(r.SrcPorts, localPort)
		}
		got, err := dial(ctx, from.ns.ns, p.Protocol, r.Dst, localPort, l.cfg.ProbeTimeout)
		switch {
		case err == nil && got == want:
			r.Observed, r.Detail, r.Err = true, "ok", ""
		case err == nil:
			r.Observed, r.Detail = false, "wrong answer"
			r.Err = fmt.Sprintf("answer %q, want %q: reached the wrong server", got, want)
		default:
			var fault bool
			r.Detail, fault = classify(err)
			r.Err = ""
			if fault {
				r.Err = err.Error()
			}
		}
		if r.Observed || ctx.Err() != nil {
			break
		}
	}
	r.Elapsed = time.Since(start)
	return r
}

// dial makes one attempt from inside ns and returns the server's answer.
// A non-zero localPort is bound as the source port, with SO_REUSEADDR so that
// probes to different destinations may share it.
func dial(ctx context.Context, ns netns.NsHandle, proto cluster.Protocol, dst netip.AddrPort, localPort int, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	deadline, _ := ctx.Deadline()
	var answer string
	err := netnsutil.Do(ns, func() error {
		// The socket is created here, on a thread inside ns, and stays in ns.
		d := net.Dialer{}
		if localPort != 0 {
			if proto == cluster.ProtocolTCP {
				d.LocalAddr = &net.TCPAddr{Port: localPort}
			} else {
				d.LocalAddr = &net.UDPAddr{Port: localPort}
			}
			d.Control = func(_, _ string, c syscall.RawConn) error {
				var serr error
				if err := c.Control(func(fd uintptr) {
					serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
				}); err != nil {
					return err
				}
				return serr
			}
		}
		switch proto {
		case cluster.ProtocolTCP:
			c, err := d.DialContext(ctx, "tcp", dst.String())
			if err != nil {
				return err
			}
			defer c.Close()
			_ = c.SetDeadline(deadline)
			b, err := io.ReadAll(io.LimitReader(c, 512))
			answer = string(b)
			if len(b) == 0 {
				// Connected, but the answer was dropped or reset.
				return fmt.Errorf("%w (%v)", errNoAnswer, err) //nolint:errorlint // err is nil on a clean EOF; only errNoAnswer classifies the probe
			}
			return nil
		default:
			c, err := d.DialContext(ctx, "udp", dst.String())
			if err != nil {
				return err
			}
			defer c.Close()
			_ = c.SetDeadline(deadline)
			if _, err := c.Write([]byte("probe\n")); err != nil {
				return err
			}
			buf := make([]byte, 512)
			n, err := c.Read(buf)
			if err != nil {
				return err
			}
			answer = string(buf[:n])
			return nil
		}
	})
	return answer, err
}

var errNoAnswer = errors.New("connected, but no answer")

// classify names a failed attempt. fault is true for errors no packet
// filter explains (they point at the lab or the probe).
func classify(err error) (detail string, fault bool) {
	switch {
	case errors.Is(err, errNoAnswer), errors.Is(err, syscall.ECONNRESET):
		return "no answer", false
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded):
		return "timeout", false
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused", false
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH), errors.Is(err, syscall.EHOSTDOWN):
		return "unreachable", false
	case errors.Is(err, syscall.EPERM), errors.Is(err, syscall.EACCES):
		return "blocked locally", false
	case errors.Is(err, context.Canceled):
		return "cancelled", true
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout", false
	}
	return "error", true
}
