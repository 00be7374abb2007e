package explain

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/policy/model"
	"github.com/policyd/policyd/policy/ruleset"
)

func TestExplain_Targets(t *testing.T) {
	t.Parallel()
	snap := snapshot(t)
	tests := []struct {
		name string
		q    Query
		want []string // "TCP/5432 allowed"
	}{
		{name: "every declared port", q: Query{Src: "shop/web", Dst: "shop/db"}, want: []string{"TCP/5432 allowed", "UDP/5432 denied"}},
		{name: "declared ports of one protocol", q: Query{Src: "shop/web", Dst: "shop/db", Protocol: "udp"}, want: []string{"UDP/5432 denied"}},
		{name: "given port defaults to TCP", q: Query{Src: "shop/web", Dst: "shop/db", Port: 5432}, want: []string{"TCP/5432 allowed"}},
		{name: "given port and protocol", q: Query{Src: "10.0.0.1", Dst: "10.0.0.2", Port: 5432, Protocol: "SCTP"}, want: []string{"SCTP/5432 denied"}},
		{name: "to an address of no pod", q: Query{Src: "shop/db", Dst: "192.0.2.7", Port: 443}, want: []string{"TCP/443 allowed"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rs, err := Explain(snap, tt.q)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range rs {
				v := "denied"
				if r.Allowed {
					v = "allowed"
				}
				got = append(got, r.Protocol+"/"+strconv.Itoa(int(r.Port))+" "+v)
			}
			if strings.Join(got, ", ") != strings.Join(tt.want, ", ") {
				t.Errorf("Explain(%+v) = %v, want %v", tt.q, got, tt.want)
			}
		})
	}
}

func TestExplain_UsageErrors(t *testing.T) {
	t.Parallel()
	snap := snapshot(t)
	tests := []struct {
		name    string
		q       Query
		wantErr string
		usage   bool
	}{
		{name: "unknown source", q: Query{Src: "shop/nope", Dst: "shop/db"}, wantErr: "pod shop/nope not found", usage: true},
		{name: "unknown destination", q: Query{Src: "shop/web", Dst: "nope"}, wantErr: `"nope" is neither`, usage: true},
		{name: "bad protocol", q: Query{Src: "shop/web", Dst: "shop/db", Port: 80, Protocol: "icmp"}, wantErr: "--protocol: ", usage: true},
		{name: "no port to an address", q: Query{Src: "shop/web", Dst: "192.0.2.7"}, wantErr: "192.0.2.7 is not a pod: give --port", usage: true},
		{name: "no declared port of the protocol", q: Query{Src: "shop/db", Dst: "shop/web", Protocol: "udp"}, wantErr: "shop/web declares no container ports for UDP: give --port", usage: true},
		{name: "no common family", q: Query{Src: "fd00::1", Dst: "shop/db", Port: 80}, wantErr: "shop/web and shop/db have no address family in common"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Explain(snap, tt.q)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Explain(%+v) error = %v, want one containing %q", tt.q, err, tt.wantErr)
			}
			var ue *UsageError
			if errors.As(err, &ue) != tt.usage {
				t.Errorf("Explain(%+v) error %v: usage error = %v, want %v", tt.q, err, !tt.usage, tt.usage)
			}
		})
	}
}

// dropAllows is a compiler bug on purpose: every policy rule of the ruleset
// drops what it should accept.
func dropAllows(rs *ruleset.Ruleset) {
	for _, c := range rs.Chains {
		for _, r := range c.Rules {
			if a, ok := r.(*ruleset.AllowRule); ok {
				a.Verdict = ruleset.Verdict{Kind: ruleset.Drop}
			}
		}
	}
}

func TestCheckTrace(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		src, dst    string
		pp          model.PortProto
		tweak       func(*ruleset.Ruleset) // applied to every node's ruleset
		wantAllowed bool                   // the ruleset's verdict
		wantAgrees  bool
	}{
		{name: "allowed, agree", src: "shop/web", dst: "shop/db", pp: model.PortProto{Port: 5432, Protocol: cluster.ProtocolTCP}, wantAllowed: true, wantAgrees: true},
		{name: "denied, agree", src: "shop/web", dst: "shop/db", pp: model.PortProto{Port: 5433, Protocol: cluster.ProtocolTCP}, wantAgrees: true},
		{name: "IPv6 to an address of no pod, agree", src: "shop/web", dst: "fd00::99", pp: model.PortProto{Port: 80, Protocol: cluster.ProtocolTCP}, wantAgrees: true},
		{name: "ruleset drops what the model allows", src: "shop/web", dst: "shop/db", pp: model.PortProto{Port: 5432, Protocol: cluster.ProtocolTCP}, tweak: dropAllows},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			snap := snapshot(t)
			src, err := ResolveEndpoint(snap, tt.src)
			if err != nil {
				t.Fatal(err)
			}
			dst, err := ResolveEndpoint(snap, tt.dst)
			if err != nil {
				t.Fatal(err)
			}
			if err := pickAddrs(&src, &dst); err != nil {
				t.Fatal(err)
			}
			rulesets, err := CompileNodes(snap, src, dst)
			if err != nil {
				t.Fatal(err)
			}
			if tt.tweak != nil {
				for _, rs := range rulesets {
					tt.tweak(rs)
				}
			}
			pkt := model.Packet{Src: src, Dst: dst, Protocol: tt.pp.Protocol, Port: tt.pp.Port}
			d := model.Evaluate(snap, pkt)
			tr, err := CheckTrace(rulesets, pkt, d)
			if err != nil {
				t.Fatal(err)
			}
			if tr.Allowed != tt.wantAllowed || tr.Agrees != tt.wantAgrees {
				t.Errorf("CheckTrace %s -> %s %s: allowed %v agrees %v (model: %v), want allowed %v agrees %v",
					tt.src, tt.dst, tt.pp, tr.Allowed, tr.Agrees, d.Allowed, tt.wantAllowed, tt.wantAgrees)
			}
			if len(tr.Hops) == 0 {
				t.Errorf("CheckTrace %s -> %s %s: no hops", tt.src, tt.dst, tt.pp)
			}

			// What the command reports follows from Agrees.
			res := []Result{{From: tt.src, To: tt.dst, Port: tt.pp.Port, Protocol: tt.pp.Protocol.String(), Allowed: d.Allowed, Egress: d.Egress, Ingress: d.Ingress, Trace: tr}}
			if err := Disagreement(res); (err != nil) == tt.wantAgrees || (err != nil && !errors.Is(err, ErrDisagree)) {
				t.Errorf("Disagreement = %v, want ErrDisagree exactly when the trace disagrees (agrees %v)", err, tt.wantAgrees)
			}
			var text bytes.Buffer
			if err := WriteText(&text, res); err != nil {
				t.Fatal(err)
			}
			if got, want := strings.Contains(text.String(), "MISMATCH"), !tt.wantAgrees; got != want {
				t.Errorf("text output shows MISMATCH = %v, want %v:\n%s", got, want, text.String())
			}
		})
	}
}

// TestExplain_TraceAgreesOnFixture traces every query of the fixture through
// Explain and requires agreement: the check must not cry wolf.
func TestExplain_TraceAgreesOnFixture(t *testing.T) {
	t.Parallel()
	snap := snapshot(t)
	eps := []string{"shop/web", "shop/db", "192.0.2.7"}
	checked := 0
	for _, src := range eps {
		for _, dst := range eps {
			if src == dst {
				continue
			}
			rs, err := Explain(snap, Query{Src: src, Dst: dst, Port: 5432, Trace: true})
			if err != nil {
				t.Fatalf("%s -> %s: %v", src, dst, err)
			}
			if err := Disagreement(rs); err != nil {
				t.Errorf("%s -> %s: %v", src, dst, err)
			}
			checked += len(rs)
		}
	}
	if checked != 6 {
		t.Errorf("checked %d connections, want 6", checked)
	}
}

// TestExplain_HostNetworkPodToPodOfItsNode: a hostNetwork pod's traffic to a
// pod of its own node comes from a node address, and is allowed in as node
// traffic (kubelet probes), as the kernel allows it; explain must say so and
// the trace agree.
func TestExplain_HostNetworkPodToPodOfItsNode(t *testing.T) {
	t.Parallel()
	snap := snapshot(t, func(o *objects) { o.pods[2].Spec.NodeName = "node-b" }) // node-agent beside db
	rs, err := Explain(snap, Query{Src: "shop/node-agent", Dst: "shop/db", Port: 5432, Trace: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := Disagreement(rs); err != nil {
		t.Fatalf("%v: model %v (%s), trace %v", err, rs[0].Allowed, rs[0].Ingress.Reason, rs[0].Trace.Allowed)
	}
	if !rs[0].Allowed || !strings.Contains(rs[0].Ingress.Reason, "own node") {
		t.Errorf("want allowed as node traffic, got %v: %s", rs[0].Allowed, rs[0].Ingress.Reason)
	}
	// From another node it is judged like any other source.
	rs, err = Explain(snapshot(t), Query{Src: "shop/node-agent", Dst: "shop/db", Port: 5432, Trace: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := Disagreement(rs); err != nil || rs[0].Allowed {
		t.Errorf("from node-a: allowed %v, disagreement %v", rs[0].Allowed, err)
	}
}
