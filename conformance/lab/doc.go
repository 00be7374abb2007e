// Package lab builds a small Kubernetes-like cluster out of Linux network
// namespaces on the local machine, so that policyd can be tested with real
// packets through real nftables, without Kubernetes or containers.
//
// A lab has one network namespace per node, one per pod, and an underlay
// namespace holding a bridge that joins the nodes. Every pod serves each of its
// containerPorts on TCP and UDP (or exactly what its ServesAnnotation lists)
// from small in-process servers whose sockets live in the pod's namespace; ProbeAll connects from inside source pods and reports
// what got through. The lead applies policyd's table in a node namespace
// (NodeNetNS, NodeNetNSHandle, DoInNode, ExecInNode) and compares probes with
// the expected truth table.
//
// # Names
//
// Every namespace is named pdlab-<run id>-<role>: pdlab-<id>-underlay,
// pdlab-<id>-n<i> for node i (in Config.Nodes order) and pdlab-<id>-p<seq> for
// pods. A live lab holds an flock on /run/pdlab/<id>.lock; CleanupLeftovers
// removes every pdlab- namespace (and any pdlab- link or nftables table in the
// root namespace) whose run holds no lock, i.e. whose process has died. New
// calls it first, so a crashed run leaves nothing behind for long, while labs
// of other live tests (other packages run in parallel by go test) are safe.
//
// # Address plan
//
// Everything stays inside 10.0.0.0/8 and fd00::/8:
//
//	underlay      10.255.0.0/24, node i = 10.255.0.(10+i)    fd00:255::/64, node i = fd00:255::(10+i)
//	node i pods   10.240.i.0/24, gateway 10.240.i.1          fd00:10:240:i::/64, gateway ::1
//	ClusterIPs    10.96.0.0/16 from 10.96.0.10               fd00:10:96::/112 from ::10
//
// A pod keeps the addresses its status.podIPs give (any address in 10.0.0.0/8
// or fd00::/8 outside the underlay, service and gateway addresses); a pod
// without one gets the lowest free address of its node's range, and PodObjects
// reports the result. Pods without spec.nodeName are spread round-robin over
// the nodes in key order. hostNetwork pods live in their node's namespace and
// use its underlay address (NodeAddr: what a caller should give as the node's
// InternalIP).
//
// Pod addresses are always /32 (/128) on the pod's eth0, so any placement of
// addresses on nodes works: nodes hold a /32 route per local pod and a /32
// route via the owning node's underlay address per remote pod.
//
// # CNI shapes
//
// CNIRouted (Calico-like): the node side of each pod veth has no address; the
// node's gateway address sits on its loopback; the pod routes everything via
// the gateway, whose neighbour entry in the pod is pinned to the node veth's
// MAC. All pod traffic, same-node included, is routed by the node.
//
// CNIBridged (bridge-plugin-like): a per-node bridge cni0 holds the gateway
// address and the pods' veths. Each pod has on-link /32 routes to the other
// pods of its node, so same-node traffic is switched by the bridge at L2 and
// reaches the node's inet hooks only through br_netfilter; bridge-nf-call-
// iptables and -ip6tables are set to 1 inside each node namespace (they are
// per network namespace on this kernel). Cross-node traffic goes via the
// gateway and is routed.
//
// # DNAT mode
//
// With Config.DNAT every pod gets a ClusterIP and every node namespace holds a
// kube-proxy-like table (ip and ip6 pdlab-kubeproxy) that DNATs the ClusterIP
// to the pod address, same port, in prerouting and output. Probes with
// Service set target the ClusterIP; a policy in a forward or postrouting chain
// therefore sees the pod address. A pod reaching itself through its ClusterIP
// is SNATed to its node's gateway address, as kube-proxy masquerades hairpin
// traffic (a pod cannot receive packets from its own address).
//
// # Services
//
// SetServices puts Services (plain data: addresses, ports, backends) in the
// kube-proxy-like table of every node, with or without DNAT mode:
// address . protocol . port is looked up in a verdict map; a Service's
// chain picks a backend at random (numgen), unless the source port is
// PinPortBase+i, which pins backend i (Probe.Pin). NodePorts (on each
// node's underlay address) and external IPs take the external path:
// under externalTrafficPolicy Cluster the connection is marked and
// masqueraded in postrouting (to the node's underlay address towards
// another node, to the gateway towards its own pods); under Local only the
// node's own backends serve it, with the client's address. Config.External
// adds the external client (pdlab-<id>-ext, ExternalClientAddr on the
// underlay); the external IPs are routed from it to LoadBalancerNode.
// ClusterIPs of Services should come from ServiceRange (10.97.0.0/16).
//
// # Probes
//
// SCTP is never probed: this kernel has no SCTP sockets, and Results say so
// (Probed false) rather than guessing.
package lab
