package agent

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/internal/netnstest"
	"github.com/policyd/policyd/policy/nft"
	"github.com/policyd/policyd/policy/quarantine"
)

// TestAgent_KernelRefusedValueBisected puts in the index a policy whose
// value conversion would never let through, built directly as a
// cluster.Policy: a port range that ends before it starts. The kernel
// refuses the batch that holds it; the sync finds the policy by bisection
// over the node's policies, quarantines it with an error naming it, and
// commits the rest, in a real kernel table.
func TestAgent_KernelRefusedValueBisected(t *testing.T) {
	netnstest.RequireRoot(t)
	netnstest.RequireCommand(t, "nft")
	name, h := netnstest.New(t, "pdbisect")
	backend, err := nft.New(nft.Options{NetNS: int(h)})
	require.NoError(t, err)
	a, err := New(Config{NodeName: "node-1", Client: fake.NewClientset(), Backend: backend,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)

	a.index.UpsertNamespace(&cluster.Namespace{Name: "x", Labels: labels.Set{"kubernetes.io/metadata.name": "x"}})
	a.index.UpsertPod(&cluster.Pod{Namespace: "x", Name: "server", Labels: labels.Set{"app": "server"}, NodeName: "node-1",
		IPs: []netip.Addr{netip.MustParseAddr("10.77.0.10")}})
	policy := func(name string, rule cluster.Rule) *cluster.Policy {
		return &cluster.Policy{Namespace: "x", Name: name, PodSelector: labels.SelectorFromSet(labels.Set{"app": "server"}),
			PodSelectorKey: "app=server", IsolatesIngress: true, IngressRules: []cluster.Rule{rule}}
	}
	block := func(cidr string) []cluster.Peer {
		p := netip.MustParsePrefix(cidr)
		return []cluster.Peer{{Kind: cluster.PeerIPBlock, CIDR: p, Key: "ipblock=" + p.String()}}
	}
	for i, cidr := range []string{"10.90.0.0/16", "10.91.0.0/16", "10.92.0.0/16"} {
		a.index.UpsertPolicy(policy("ok-"+string(rune('a'+i)), cluster.Rule{Peers: block(cidr), Ports: []cluster.Port{{Protocol: cluster.ProtocolTCP, Port: 80, EndPort: 80}}}))
	}
	// Conversion refuses endPort below port; built by hand, it reaches the
	// compiler as an interval element the kernel refuses.
	a.index.UpsertPolicy(policy("reversed", cluster.Rule{Peers: block("10.66.0.0/16"), Ports: []cluster.Port{{Protocol: cluster.ProtocolTCP, Port: 2000, EndPort: 1000}}}))

	ctx := context.Background()
	require.NoError(t, a.syncOnce(ctx), "the sync commits the rest")
	assert.True(t, a.Ready())
	table := netnstest.MustExec(t, name, "nft", "list", "table", "inet", "policyd")
	assert.Contains(t, table, "10.91.0.0/16", "the other policies are in the kernel")
	assert.NotContains(t, table, "10.66.0.0/16", "the refused policy is quarantined")
	require.Len(t, a.quarantine, 1)
	d := a.quarantine[quarantine.Object{Kind: quarantine.NetworkPolicy, Key: "x/reversed"}]
	assert.Equal(t, quarantine.KernelRefused, d.Reason)
	assert.True(t, strings.Contains(d.Message(), "NetworkPolicy x/reversed") && strings.Contains(d.Message(), "the kernel refused"), d.Message())
	t.Log(d.Message())

	// The next sync keeps it quarantined without asking the kernel again.
	require.NoError(t, a.syncOnce(ctx))
	assert.Len(t, a.quarantine, 1)
}
