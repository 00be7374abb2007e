package explain

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/policy/compile"
	hostileshape "github.com/policyd/policyd/policy/compile/hostile"
)

// TestExplain_Quarantined: with the budget the agent enforces, explain
// judges the tenant's over-budget policy as its node enforces it (stripped:
// its pods isolated with none of its rules), says QUARANTINED in text and
// "quarantined" in JSON, and its trace of the compiled tables agrees.
func TestExplain_Quarantined(t *testing.T) {
	t.Parallel()
	objs := hostileshape.Build(hostileshape.Spec{Shape: hostileshape.PeersByNamedPorts, N: 40, M: 10, Pods: 3})
	snap, errs := cluster.NewSnapshot(objs.Namespaces, objs.Pods, objs.Policies)
	require.Empty(t, errs)
	q := Query{Src: hostileshape.Namespace + "/t-1", Dst: hostileshape.Namespace + "/t-0", Port: 1000, Trace: true}

	// As written, within the default budget: t-1 may reach t-0's port h0.
	res, err := Explain(snap, Query{Src: q.Src, Dst: q.Dst, Port: q.Port, Trace: true, Budget: compile.DefaultBudget(0)})
	require.NoError(t, err)
	require.Len(t, res, 1)
	assert.True(t, res[0].Allowed, res[0].Ingress.Reason)
	assert.Empty(t, res[0].Ingress.Quarantined)

	q.Budget = compile.Budget{Object: compile.Cost{Rules: 20, Elements: 100000, Chains: 100}}
	res, err = Explain(snap, q)
	require.NoError(t, err)
	require.Len(t, res, 1)
	r := res[0]
	assert.False(t, r.Allowed, "the quarantined policy admits nothing")
	require.NotNil(t, r.Trace)
	assert.True(t, r.Trace.Agrees, "the compiled tables, quarantine included, agree with the model")
	require.Len(t, r.Ingress.Quarantined, 1)
	qn := r.Ingress.Quarantined[0]
	assert.Equal(t, "NetworkPolicy", qn.Kind)
	assert.Equal(t, hostileshape.Namespace+"/peers-by-named-ports", qn.Name)
	assert.Equal(t, hostileshape.Node, qn.Node)
	assert.Equal(t, "object-budget", qn.Reason)
	var text, js bytes.Buffer
	require.NoError(t, WriteText(&text, res))
	assert.Contains(t, text.String(), "QUARANTINED: NetworkPolicy "+hostileshape.Namespace+"/peers-by-named-ports is quarantined on node node-1")
	require.NoError(t, WriteJSON(&js, res))
	var back []map[string]any
	require.NoError(t, json.Unmarshal(js.Bytes(), &back))
	assert.Contains(t, js.String(), `"quarantined": [`)
	assert.Contains(t, js.String(), `"reason": "object-budget"`)
}
