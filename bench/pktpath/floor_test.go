package pktpath

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestFloor_JudgesThePacket: the floor lets the benchmark flow through, and
// drops it, in both protocols, when the set of either direction does not
// hold its peer: so the floor really judges each new packet in both
// directions and is not a conntrack-only table in disguise.
func TestFloor_JudgesThePacket(t *testing.T) {
	skipUnlessRoot(t)
	sc, _ := newTestScenario(t)
	src, dst := sc.Src.IPs[0], sc.Dst.IPs[0]
	other := dst.Next()
	require.NotEqual(t, src, other)
	topo := newTestTopology(t, src, dst)
	topo.FlowSockets = 500

	tests := []struct {
		name    string
		text    string
		allowed bool
	}{
		{"floor", FloorText(src, dst), true},
		{"floor whose egress set lacks pod B", floorText(src, dst, other, src), false},
		{"floor whose ingress set lacks pod A", floorText(src, dst, dst, other), false},
	}
	// Sequential: every case reprograms the same node.
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.NoError(t, topo.SetRuleset(tt.text))
			u, err := topo.UDPFlows(testDuration)
			require.NoError(t, err)
			c, err := topo.TCP(testDuration)
			require.NoError(t, err)
			t.Logf("udp flows: %d sent, %d received; tcp: %d connected, %d failed", u.Sent, u.Received, c.Connected, c.Failed)
			require.NotZero(t, u.Sent)
			require.NotZero(t, c.Connected+c.Failed)
			if tt.allowed {
				assert.Equal(t, u.Sent, u.Received, "datagrams lost")
				assert.NotZero(t, c.Connected, "no connection")
				return
			}
			assert.Zero(t, u.Received, "datagrams got through")
			assert.Zero(t, c.Connected, "connections got through")
		})
	}
}

// TestFloor_Shape: the floor is one table in the compiled table's hook and
// priority with exactly the rules FloorRules counts on the path.
func TestFloor_Shape(t *testing.T) {
	t.Parallel()
	sc, _ := newTestScenario(t)
	text := FloorText(sc.Src.IPs[0], sc.Dst.IPs[0])
	assert.Equal(t, 1, strings.Count(text, "table inet "))
	assert.Contains(t, text, "type filter hook postrouting priority 95; policy accept;")
	var rules int
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "ct state") || strings.Contains(line, " @") {
			rules++
		}
	}
	assert.Equal(t, FloorRules, rules, "rules a judged packet meets in\n%s", text)
	assert.Contains(t, text, sc.Src.IPs[0].String()+" . tcp . 7000")
	assert.Contains(t, text, sc.Dst.IPs[0].String()+" . udp . 7000")
}
