package manifest

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const workloads = `apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web, tier: front}}
    spec:
      containers:
      - name: web
        image: nginx
        ports: [{name: http, containerPort: 8080}]
      futureField: ignored
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: shop}
spec:
  replicas: 2
  serviceName: db
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec: {containers: [{name: pg, image: postgres, ports: [{name: pg, containerPort: 5432}]}]}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent, namespace: kube-system}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec: {containers: [{name: a, image: a}]}
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: report, namespace: shop}
spec:
  schedule: "@daily"
  jobTemplate:
    spec:
      template:
        metadata: {labels: {app: report}}
        spec: {restartPolicy: Never, containers: [{name: r, image: r}]}
---
apiVersion: batch/v1
kind: Job
metadata:
  name: report-123
  namespace: shop
  ownerReferences: [{apiVersion: batch/v1, kind: CronJob, name: report, uid: u1, controller: true}]
spec:
  template:
    metadata: {labels: {app: report}}
    spec: {restartPolicy: Never, containers: [{name: r, image: r}]}
---
apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: live, namespace: shop}
spec:
  selector: {matchLabels: {app: live}}
  template:
    metadata: {labels: {app: live}}
    spec: {containers: [{name: l, image: l}]}
---
apiVersion: v1
kind: Pod
metadata: {name: live-abc12, namespace: shop, labels: {app: live}}
spec: {containers: [{name: l, image: l}]}
status: {podIP: 10.240.0.2, podIPs: [{ip: 10.240.0.2}]}
`

// TestLoad_WorkloadsArePods: each workload's pod template is a pod (labels,
// named ports, namespace); a workload whose controller is read too, or
// whose pods are in the manifests already, makes none; replicas collapse to
// one representative unless asked.
func TestLoad_WorkloadsArePods(t *testing.T) {
	t.Parallel()
	objs, err := Decode("w.yaml", []byte(workloads))
	require.NoError(t, err)
	var keys []string
	for _, p := range objs.Pods {
		keys = append(keys, p.Namespace+"/"+p.Name)
	}
	assert.ElementsMatch(t, []string{"shop/live-abc12", "kube-system/agent", "shop/db-0", "shop/report", "shop/web"}, keys)
	web := objs.Pods[len(objs.Pods)-1]
	for _, p := range objs.Pods {
		if p.Name == "web" {
			web = p
		}
	}
	assert.Equal(t, map[string]string{"app": "web", "tier": "front"}, web.Labels)
	require.Len(t, web.Spec.Containers, 1)
	assert.Equal(t, "http", web.Spec.Containers[0].Ports[0].Name)
	assert.Equal(t, "w.yaml: document 1 (the pod template of Deployment shop/web)", objs.Source(KindPod, "shop", "web"))
	notes := strings.Join(objs.Notes, "\n")
	assert.Contains(t, notes, "Deployment shop/web: 3 replicas, judged as one pod shop/web")
	assert.Contains(t, notes, "ReplicaSet shop/live: its pods are in the manifests")
	assert.Contains(t, notes, `(Deployment shop/web): ignored unknown field "spec.template.spec.futureField"`)

	all, err := LoadWith([]string{"-"}, strings.NewReader(workloads), Options{AllReplicas: true})
	require.NoError(t, err)
	keys = nil
	for _, p := range all.Pods {
		keys = append(keys, p.Namespace+"/"+p.Name)
	}
	assert.ElementsMatch(t, []string{"shop/live-abc12", "kube-system/agent", "shop/db-0", "shop/db-1", "shop/report", "shop/web-0", "shop/web-1", "shop/web-2"}, keys)
}

// TestSnapshot_PodsWithoutAddressesAreJudgedWhereTheLabPutsThem: pods with
// no status.podIP get the lab's addresses (10.240.<node>.2 up), never one
// the manifests give, and are in the snapshot with an address.
func TestSnapshot_PodsWithoutAddressesAreJudgedWhereTheLabPutsThem(t *testing.T) {
	t.Parallel()
	objs, err := Decode("w.yaml", []byte(workloads))
	require.NoError(t, err)
	snap, errs := objs.Snapshot()
	require.Empty(t, errs)
	got := map[string]string{}
	for _, p := range snap.Pods {
		require.NotEmpty(t, p.IPs, "pod %s has no address", p.Key())
		got[p.Key()] = p.IPs[0].String() + " on " + p.NodeName
	}
	assert.Equal(t, map[string]string{
		"shop/live-abc12":   "10.240.0.2 on node-1",
		"kube-system/agent": "10.240.0.3 on node-1",
		"shop/db-0":         "10.240.0.4 on node-1",
		"shop/report":       "10.240.0.5 on node-1",
		"shop/web":          "10.240.0.6 on node-1",
	}, got)
	assert.Contains(t, strings.Join(objs.Notes, "\n"), "pod shop/web: no status.podIP: judged as 10.240.0.6 on node node-1")
}
