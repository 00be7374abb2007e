package explain

import (
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/policyd/policyd/cluster"
)

// serviceSnapshot is the fixture plus:
//
//	shop/db2 {app=db, role=replica} node-a 10.0.0.3, "pg" = TCP/6432, isolated with no ingress rule
//	Nodes node-a 192.168.0.1, node-b 192.168.0.2
//	Service shop/db  10.96.0.5 port 5432 -> targetPort "pg" (db: 5432 named pg, db2: 6432)
//	Service shop/dbh headless, same ports
//	Service shop/dbnp NodePort 30432, port 5432 -> pg, externalTrafficPolicy from local
//	policy shop/db-from-outside admits 203.0.113.0/24 into db on 5432
func serviceSnapshot(t *testing.T, local bool, slices ...*discoveryv1.EndpointSlice) *cluster.Snapshot {
	t.Helper()
	return serviceSnapshotLocal(t, local, nil, slices...)
}

// serviceSnapshotWith is serviceSnapshot (externalTrafficPolicy Cluster)
// with tweak applied to the objects first.
func serviceSnapshotWith(t *testing.T, tweak func(*objects), slices ...*discoveryv1.EndpointSlice) *cluster.Snapshot {
	t.Helper()
	return serviceSnapshotLocal(t, false, tweak, slices...)
}

func serviceSnapshotLocal(t *testing.T, local bool, tweak func(*objects), slices ...*discoveryv1.EndpointSlice) *cluster.Snapshot {
	t.Helper()
	o := baseObjects()
	if tweak != nil {
		tweak(o)
	}
	o.pods[1].Spec.Containers[0].Ports[0].Name = "pg"
	db2 := pod("db2", "node-a", []corev1.ContainerPort{{Name: "pg", ContainerPort: 6432, Protocol: corev1.ProtocolTCP}}, "10.0.0.3")
	db2.Labels = map[string]string{"app": "db", "role": "replica"}
	o.pods = append(o.pods, db2)
	o.pods[1].Labels["role"] = "primary"
	o.policies = append(o.policies,
		&networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "replica-closed"},
			Spec: networkingv1.NetworkPolicySpec{PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"role": "replica"}}, PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}}},
		&networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "db-from-outside"},
			Spec: networkingv1.NetworkPolicySpec{PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}}, PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
				Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{IPBlock: &networkingv1.IPBlock{CIDR: "203.0.113.0/24"}}}}}}},
	)
	s, errs := cluster.NewSnapshot(o.nss, o.pods, o.policies)
	require.Empty(t, errs)
	node := func(name, ip string) *corev1.Node {
		return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}}}}
	}
	require.Empty(t, s.AddClusterPolicies(nil, []*corev1.Node{node("node-a", "192.168.0.1"), node("node-b", "192.168.0.2")}))
	pg := []corev1.ServicePort{{Name: "pg", Port: 5432, TargetPort: intstr.FromString("pg")}}
	etp := corev1.ServiceExternalTrafficPolicyCluster
	if local {
		etp = corev1.ServiceExternalTrafficPolicyLocal
	}
	svcs := []*corev1.Service{
		{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "db"}, Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.5", Selector: map[string]string{"app": "db"}, Ports: pg}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "dbh"}, Spec: corev1.ServiceSpec{ClusterIP: "None", Selector: map[string]string{"app": "db"}, Ports: pg}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "dbnp"}, Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, ClusterIP: "10.96.0.6", ExternalTrafficPolicy: etp,
			Selector: map[string]string{"app": "db", "role": "primary"}, Ports: []corev1.ServicePort{{Name: "pg", Port: 5432, TargetPort: intstr.FromString("pg"), NodePort: 30432}}}},
	}
	require.Empty(t, s.AddServices(svcs, slices))
	return s
}

func TestExplain_Services(t *testing.T) {
	t.Parallel()
	verdicts := func(rs []Result) string {
		var b []string
		for _, r := range rs {
			v := "X"
			if r.Allowed {
				v = "."
			}
			b = append(b, r.To+":"+strconv.Itoa(int(r.Port))+v)
		}
		return strings.Join(b, " ")
	}
	t.Run("ClusterIP to a named targetPort on two backends with different policies", func(t *testing.T) {
		t.Parallel()
		snap := serviceSnapshot(t, false)
		rs, err := Explain(snap, Query{Src: "shop/web", Dst: "10.96.0.5", Port: 5432, Trace: true})
		require.NoError(t, err)
		assert.Equal(t, "shop/db:5432. shop/db2:6432X", verdicts(rs))
		require.NoError(t, Disagreement(rs))
		assert.Equal(t, 1, rs[0].Service.Allowed)
		assert.Equal(t, 2, rs[0].Service.Backends)
		assert.Equal(t, "pod", rs[0].Service.Path)
		var b strings.Builder
		require.NoError(t, WriteText(&b, rs))
		assert.Contains(t, b.String(), "SERVICE shop/db TCP/5432 at 10.96.0.5: 1 of 2 backends allowed (2 ready)")
	})
	t.Run("svc/ form and an unknown service port", func(t *testing.T) {
		t.Parallel()
		snap := serviceSnapshot(t, false)
		rs, err := Explain(snap, Query{Src: "shop/web", Dst: "svc/shop/db"})
		require.NoError(t, err)
		assert.Len(t, rs, 2)
		_, err = Explain(snap, Query{Src: "shop/web", Dst: "svc/shop/db", Port: 80})
		var ue *UsageError
		require.ErrorAs(t, err, &ue)
		assert.Contains(t, err.Error(), "has no port 80")
		_, err = Explain(snap, Query{Src: "shop/web", Dst: "svc/shop/nope"})
		require.ErrorAs(t, err, &ue)
	})
	t.Run("no ready endpoints", func(t *testing.T) {
		t.Parallel()
		no := false
		name, port := "pg", int32(5432)
		slice := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "db-x", Labels: map[string]string{discoveryv1.LabelServiceName: "db"}},
			Ports:     []discoveryv1.EndpointPort{{Name: &name, Port: &port}},
			Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"10.0.0.2"}, Conditions: discoveryv1.EndpointConditions{Ready: &no}}}}
		snap := serviceSnapshot(t, false, slice)
		rs, err := Explain(snap, Query{Src: "shop/web", Dst: "svc/shop/db", Port: 5432})
		require.NoError(t, err)
		require.Len(t, rs, 1)
		assert.False(t, rs[0].Allowed)
		assert.Equal(t, 1, rs[0].Service.Backends)
		assert.Equal(t, 0, rs[0].Service.Ready)
		assert.Contains(t, rs[0].Ingress.Reason, "none ready")
	})
	t.Run("headless Service", func(t *testing.T) {
		t.Parallel()
		rs, err := Explain(serviceSnapshot(t, false), Query{Src: "shop/web", Dst: "svc/shop/dbh", Port: 5432, Trace: true})
		require.NoError(t, err)
		assert.Equal(t, "shop/db:5432. shop/db2:6432X", verdicts(rs))
		assert.Contains(t, rs[0].Service.Note, "headless")
		require.NoError(t, Disagreement(rs))
	})
	t.Run("NodePort, externalTrafficPolicy Local: the client's address decides", func(t *testing.T) {
		t.Parallel()
		snap := serviceSnapshot(t, true)
		rs, err := Explain(snap, Query{Src: "203.0.113.9", Dst: "svc/shop/dbnp", Port: 5432, Trace: true})
		require.NoError(t, err)
		assert.Equal(t, "shop/db:5432.", verdicts(rs))
		assert.Equal(t, "external", rs[0].Service.Path)
		require.NoError(t, Disagreement(rs))
		rs, err = Explain(snap, Query{Src: "198.51.100.1", Dst: "svc/shop/dbnp", Port: 5432, Trace: true})
		require.NoError(t, err)
		assert.Equal(t, "shop/db:5432X", verdicts(rs), "an address outside the ipBlock")
		require.NoError(t, Disagreement(rs))
	})
	t.Run("NodePort, externalTrafficPolicy Cluster: the entry node's address decides", func(t *testing.T) {
		t.Parallel()
		rs, err := Explain(serviceSnapshot(t, false), Query{Src: "203.0.113.9", Dst: "svc/shop/dbnp", Port: 5432, Trace: true})
		require.NoError(t, err)
		// Entering at db's node node-b: judged before the masquerade, by
		// the client's address, which the ipBlock admits. Entering at
		// node-a: from 192.168.0.1, which no rule admits.
		require.Len(t, rs, 2)
		byEntry := map[string]bool{}
		for _, r := range rs {
			byEntry[r.Service.Entry] = r.Allowed
		}
		assert.Equal(t, map[string]bool{"node-a": false, "node-b": true}, byEntry)
		assert.Equal(t, "node", rs[0].Service.Path)
		byNote := map[bool]string{}
		for _, r := range rs {
			byNote[r.Allowed] = r.Service.Note
		}
		assert.Contains(t, byNote[true], "node-b, the backend's node")
		assert.Contains(t, byNote[false], "node-a")
		require.NoError(t, Disagreement(rs))
	})
	t.Run("an outside client cannot use a ClusterIP", func(t *testing.T) {
		t.Parallel()
		_, err := Explain(serviceSnapshot(t, false), Query{Src: "198.51.100.1", Dst: "10.96.0.5", Port: 5432})
		var ue *UsageError
		require.ErrorAs(t, err, &ue)
	})
}

// TestServiceMatrix: every pod to every Service port, counted per backend,
// as Explain counts them.
func TestServiceMatrix(t *testing.T) {
	t.Parallel()
	snap := serviceSnapshot(t, false)
	cells, err := ServiceMatrix(snap)
	require.NoError(t, err)
	got := map[string]ServiceCell{}
	for _, c := range cells {
		got[c.From+">"+c.To] = c
	}
	web := got["shop/web>svc/shop/db"]
	assert.Equal(t, ServiceCell{From: "shop/web", To: "svc/shop/db", Port: 5432, Protocol: "TCP", Allowed: false, Backends: 2, AllowedBackends: 1}, web, "db allows web, the closed replica does not")
	rs, err := Explain(snap, Query{Src: "shop/web", Dst: "svc/shop/db", Port: 5432})
	require.NoError(t, err)
	assert.Equal(t, rs[0].Service.Allowed, web.AllowedBackends)
	assert.Contains(t, got, "shop/db2>svc/shop/dbh", "headless services are in the matrix too")
}

// TestExplain_HostPort: a node address and a pod's hostPort lead to the
// pod, judged with the client's address; a pod on another node is told to
// ask the two halves (its egress is judged before the DNAT).
func TestExplain_HostPort(t *testing.T) {
	t.Parallel()
	o := baseObjects()
	o.pods[1].Spec.Containers[0].Ports[0].HostPort = 15432 // db on node-b
	s, errs := cluster.NewSnapshot(o.nss, o.pods, o.policies)
	require.Empty(t, errs)
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-b"}, Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.168.0.2"}}}}
	require.Empty(t, s.AddClusterPolicies(nil, []*corev1.Node{node}))
	rs, err := Explain(s, Query{Src: "198.51.100.1", Dst: "192.168.0.2", Port: 15432, Trace: true})
	require.NoError(t, err)
	require.Len(t, rs, 1)
	assert.Equal(t, "shop/db", rs[0].To)
	assert.EqualValues(t, 5432, rs[0].Port)
	assert.False(t, rs[0].Allowed, "db admits web only")
	require.NotNil(t, rs[0].HostPort)
	require.NoError(t, Disagreement(rs))
	_, err = Explain(s, Query{Src: "shop/web", Dst: "192.168.0.2", Port: 15432})
	var ue *UsageError
	require.ErrorAs(t, err, &ue)
	assert.Contains(t, err.Error(), "ask the two halves")
}
