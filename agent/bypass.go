package agent

// Detecting a datapath that bypasses the table.
//
// policyd's table hooks the node's netfilter. Some datapaths never pass pod
// traffic through it: eBPF host routing (Cilium), Calico's eBPF dataplane,
// pod traffic switched inside Open vSwitch (Antrea, OVN-Kubernetes), a
// bridge without br_netfilter. There the table is programmed and the agent
// ready, yet nothing is enforced. The detector watches two things the
// kernel counts whatever the datapath: packets the node's pods send (the
// host ends of their veth pairs receive them) and the connections netfilter
// tracked for them (conntrack zone 0, where the hooks the table uses are;
// OVS tracks in zones of its own). Pods sending while netfilter tracks
// nothing of theirs, over consecutive windows, means their traffic goes
// around the table.

import (
	"context"
	"net/netip"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// DatapathSample is what a DatapathSampler reads from the node's kernel.
type DatapathSample struct {
	// PodPackets is the packets received so far by the host ends of the
	// node's veth interfaces: what the node's pods sent (a counter; it only
	// grows, except when an interface goes away).
	PodPackets uint64
	// TrackedFlows is the number of conntrack entries in zone 0 whose
	// original direction has one of the node's pod addresses at either end
	// and does not start from an address of the node itself (kubelet
	// probes pass the host stack whatever the datapath).
	TrackedFlows int
}

// DatapathSampler reads a DatapathSample; localPods are the addresses of
// the node's pods.
type DatapathSampler interface {
	Sample(ctx context.Context, localPods []netip.Addr) (DatapathSample, error)
}

// Datapath states. The zero value is unknown: no evidence either way yet.
type datapathState uint8

const (
	datapathUnknown datapathState = iota
	// datapathEnforcing: pod traffic was seen passing netfilter.
	datapathEnforcing
	// datapathBypassed: pods sent traffic and netfilter tracked none of it,
	// window after window.
	datapathBypassed
)

func (s datapathState) String() string {
	switch s {
	case datapathEnforcing:
		return "enforcing"
	case datapathBypassed:
		return "bypassed"
	}
	return "unknown"
}

// bypassDetector turns samples into a state. Its thresholds are fields, so
// tests set them.
type bypassDetector struct {
	// minPackets is how many packets the pods must send in one window for
	// the window to count as evidence (ARP and the odd probe are not).
	minPackets uint64
	// windows is how many windows of evidence in a row, with no tracked
	// flow, make the datapath bypassed.
	windows int

	last    *DatapathSample
	suspect int
	state   datapathState
}

func newBypassDetector() *bypassDetector {
	return &bypassDetector{minPackets: 200, windows: 3}
}

// observe takes the sample at the end of a window and returns the state
// and whether it changed.
func (d *bypassDetector) observe(s DatapathSample) (datapathState, bool) {
	prev := d.last
	d.last = &s
	if prev == nil || s.PodPackets < prev.PodPackets {
		return d.state, false // the first sample, or an interface went away: no window
	}
	before := d.state
	switch {
	case s.TrackedFlows > 0:
		d.suspect = 0
		d.state = datapathEnforcing
	case s.PodPackets-prev.PodPackets >= d.minPackets:
		d.suspect++
		if d.suspect >= d.windows {
			d.state = datapathBypassed
		}
	}
	return d.state, d.state != before
}

// watchDatapath samples the datapath every DatapathInterval and reports a
// change of state: a Warning Event NotEnforcing on the Node, the
// policyd_datapath_bypassed metric and a log line. Readiness is left as
// it is: the table is programmed and would enforce the moment the
// datapath passes traffic through it, and an unready agent would block a
// rollout (of the fix, say) on every node where the detector is wrong.
func (a *Agent) watchDatapath(ctx context.Context) {
	interval := a.cfg.DatapathInterval
	if interval <= 0 {
		interval = 30 * time.Second
	}
	d := newBypassDetector()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		a.mu.Lock()
		var local []netip.Addr
		for _, p := range a.index.NodePods(a.cfg.NodeName) {
			if !p.HostNetwork {
				local = append(local, p.IPs...)
			}
		}
		a.mu.Unlock()
		if s, err := a.cfg.Datapath.Sample(ctx, local); err != nil {
			a.log.Warn("sampling the datapath failed; cannot tell whether pod traffic passes through the table", "err", err)
		} else if state, changed := d.observe(s); changed {
			a.reportDatapath(state, s)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (a *Agent) reportDatapath(state datapathState, s DatapathSample) {
	ref := &corev1.ObjectReference{Kind: "Node", Name: a.cfg.NodeName, APIVersion: "v1"}
	switch state {
	case datapathBypassed:
		a.metrics.bypassed.Set(1)
		msg := "this node's pods send traffic that netfilter never tracks: their datapath (eBPF host routing, Calico eBPF, Open vSwitch, a bridge without br_netfilter) bypasses policyd's table, so NO policy is enforced on this node (see the README's datapath table)"
		a.log.Error("NotEnforcing: "+msg, "pod_packets", s.PodPackets, "tracked_flows", s.TrackedFlows)
		if a.cfg.Recorder != nil {
			a.cfg.Recorder.Eventf(ref, corev1.EventTypeWarning, "NotEnforcing", "policyd on node %s: %s", a.cfg.NodeName, msg)
		}
	case datapathEnforcing:
		a.metrics.bypassed.Set(0)
		a.log.Info("pod traffic passes through netfilter: the table is on the datapath", "tracked_flows", s.TrackedFlows)
	}
}
