package runner

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/conformance/cnp"
	"github.com/policyd/policyd/conformance/lab"
)

// CNPScenarios turns the ClusterNetworkPolicy suite's tests into scenarios
// over cnp.Base(nodes), one lab step per stage (a t.Run with `then` stages
// gives several steps, named "<t.Run> (then N)"; a stage without probes is
// synced and probes nothing). Each stage's Checks are its probes with the
// data's expectations.
//
// Node addresses: base.yaml's node InternalIPs (172.18.0.1x) are replaced,
// before anything is resolved, by the lab's underlay addresses
// (lab.NodeAddr), so the Node objects, the host-networked pods' addresses,
// every ${nodeIP:…} and ${podIP:…}/${podCIDR:…} of a host-networked pod and
// the packets all carry the same addresses. Pod addresses (10.244.x.y) are
// the data's. Each pod serves exactly its base.yaml `serves` list
// (lab.ServesAnnotation).
//
// Two host-networked pods serve the same ports, so they need nodes of their
// own: nodes must name 2 to 4 nodes (base.yaml has 4 slots).
func CNPScenarios(tests []cnp.Test, nodes []string) ([]Scenario, error) {
	if len(nodes) < 2 {
		return nil, fmt.Errorf("the ClusterNetworkPolicy suite needs at least 2 nodes (its two host-networked pods serve the same ports), got %d", len(nodes))
	}
	var out []Scenario
	for _, t := range tests {
		base, err := cnp.Base(nodes)
		if err != nil {
			return nil, err
		}
		if err := onLabAddresses(base); err != nil {
			return nil, err
		}
		st, err := cnp.NewState(base, t)
		if err != nil {
			return nil, err
		}
		sc := Scenario{Name: t.Name}
		for si, step := range t.Steps {
			for gi, stage := range step.Stages() {
				where := fmt.Sprintf("%s step %d stage %d", t.Name, si, gi)
				if err := st.Apply(stage); err != nil {
					return nil, fmt.Errorf("%s: %w", where, err)
				}
				snap, err := st.Snapshot()
				if err != nil {
					return nil, fmt.Errorf("%s: %w", where, err)
				}
				checks := []Check{}
				for _, pr := range stage.Probes {
					c, err := cnpCheck(base, pr)
					if err != nil {
						return nil, fmt.Errorf("%s: %w", where, err)
					}
					checks = append(checks, c)
				}
				name := step.Name
				if gi > 0 {
					name = fmt.Sprintf("%s (then %d)", step.Name, gi)
				}
				ls := Step{Name: name, Snapshot: snap, Checks: checks}
				for _, ns := range base.Namespaces {
					ls.Namespaces = append(ls.Namespaces, ns.DeepCopy())
				}
				for _, p := range base.Pods {
					ls.Pods = append(ls.Pods, p.DeepCopy())
				}
				sc.Steps = append(sc.Steps, ls)
			}
		}
		out = append(out, sc)
	}
	return out, nil
}

// onLabAddresses moves base's nodes, and the host-networked pods on them, to
// the lab's node addresses, and annotates every pod with what it serves.
func onLabAddresses(base *cnp.Cluster) error {
	addr := map[string]string{}
	for i, n := range base.Nodes {
		a := lab.NodeAddr(i, lab.IPv4).String()
		addr[n.Name] = a
		found := false
		for j := range n.Status.Addresses {
			if n.Status.Addresses[j].Type == corev1.NodeInternalIP {
				n.Status.Addresses[j].Address = a
				found = true
			}
		}
		if !found {
			return fmt.Errorf("node %s has no InternalIP", n.Name)
		}
	}
	for _, p := range base.Pods {
		a, ok := addr[p.Spec.NodeName]
		if !ok {
			return fmt.Errorf("pod %s/%s: node %q is not in the cluster", p.Namespace, p.Name, p.Spec.NodeName)
		}
		p.Status.HostIP = a
		if p.Spec.HostNetwork {
			p.Status.PodIP = a
			p.Status.PodIPs = []corev1.PodIP{{IP: a}}
		}
		if p.Annotations == nil {
			p.Annotations = map[string]string{}
		}
		p.Annotations[lab.ServesAnnotation] = strings.Join(base.Serves[p.Namespace+"/"+p.Name], ",")
	}
	return nil
}

func cnpCheck(base *cnp.Cluster, pr cnp.Probe) (Check, error) {
	if strings.HasPrefix(pr.To, "node:") {
		return Check{}, fmt.Errorf("probe to %s: the lab probes pods only", pr.To)
	}
	_, port, err := base.Target(pr)
	if err != nil {
		return Check{}, err
	}
	proto, err := cluster.ParseAPIProtocol(string(pr.Protocol))
	if err != nil {
		return Check{}, err
	}
	return Check{From: pr.From, To: pr.To, Port: port, Protocol: proto, Allowed: pr.Allowed}, nil
}
