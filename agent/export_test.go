package agent

import (
	"net/netip"

	"github.com/policyd/policyd/cluster"
)

// PodNetworkOf is the pod network an agent with --pod-network flag compiles
// for nodes, for tests that compile a fresh table to compare with the
// agent's.
func PodNetworkOf(flag []netip.Prefix, nodes []*cluster.Node) []netip.Prefix {
	return podNetwork(flag, nodes).network
}
