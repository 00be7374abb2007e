package cluster

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Service is what explain needs of a core/v1 Service: its addresses, ports
// and how its traffic reaches the backends. policyd enforces nothing on a
// Service itself: kube-proxy translates the service address before
// policyd's chains see the packet, so a policy judges the backend pod.
type Service struct {
	Namespace, Name string
	// Type is ClusterIP, NodePort, LoadBalancer or ExternalName.
	Type corev1.ServiceType
	// Headless: clusterIP None, no virtual address (DNS names the pods).
	Headless bool
	// ClusterIPs, ExternalIPs and LoadBalancerIPs are the addresses clients
	// may use; every one is translated to a backend.
	ClusterIPs, ExternalIPs, LoadBalancerIPs []netip.Addr
	// Selector chooses the backends when no EndpointSlice is known; nil
	// for a Service without a selector.
	Selector labels.Selector
	Ports    []ServicePort
	// ExternalTrafficPolicyLocal keeps the client's address on NodePort and
	// LoadBalancer traffic (only local backends serve it); otherwise the
	// node masquerades it to its own address.
	ExternalTrafficPolicyLocal bool
	// Slices are the Service's EndpointSlices, when known; they win over
	// Selector.
	Slices []*EndpointSlice
}

// ServicePort is one port of a Service.
type ServicePort struct {
	Name     string
	Protocol Protocol
	Port     int32
	// TargetPort is the backend port: a number, or a container port name
	// resolved on each backend pod.
	TargetPort intstr.IntOrString
	NodePort   int32
}

// EndpointSlice is the part of a discovery/v1 EndpointSlice explain needs.
type EndpointSlice struct {
	// Ports maps a service port name ("" for an unnamed one) and protocol
	// to the backends' port.
	Ports     []EndpointPort
	Endpoints []Endpoint
}

// EndpointPort is one port of an EndpointSlice.
type EndpointPort struct {
	Name     string
	Protocol Protocol
	Port     int32
}

// Endpoint is one backend address of an EndpointSlice.
type Endpoint struct {
	Addr netip.Addr
	// Pod is "namespace/name" from targetRef, when it names a pod.
	Pod string
	// Ready is the endpoint's ready condition (unset counts as ready).
	Ready bool
}

// Key returns "namespace/name".
func (s *Service) Key() string { return s.Namespace + "/" + s.Name }

// HasAddr reports whether a is one of the Service's addresses.
func (s *Service) HasAddr(a netip.Addr) bool {
	for _, l := range [][]netip.Addr{s.ClusterIPs, s.ExternalIPs, s.LoadBalancerIPs} {
		for _, x := range l {
			if x == a {
				return true
			}
		}
	}
	return false
}

// ConvertService converts a core/v1 Service. Addresses are read as
// ParseIP; one it refuses is reported and skipped, and so is a port the API
// server would refuse (see checkServicePort).
func ConvertService(in *corev1.Service) (*Service, []error) {
	s := &Service{Namespace: in.Namespace, Name: in.Name, Type: in.Spec.Type,
		ExternalTrafficPolicyLocal: in.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal}
	if s.Type == "" {
		s.Type = corev1.ServiceTypeClusterIP
	}
	var errs []error
	parse := func(field string, vals []string) []netip.Addr {
		var out []netip.Addr
		for i, v := range vals {
			if v == "" || v == corev1.ClusterIPNone {
				continue
			}
			a, err := ParseIP(v)
			if err != nil {
				errs = append(errs, objectError("Service", s.Key(), fmt.Sprintf("%s[%d]", field, i), "Invalid value: %w (the address is ignored)", err))
				continue
			}
			out = append(out, a)
		}
		return out
	}
	ips := in.Spec.ClusterIPs
	if len(ips) == 0 && in.Spec.ClusterIP != "" {
		ips = []string{in.Spec.ClusterIP}
	}
	s.Headless = in.Spec.ClusterIP == corev1.ClusterIPNone
	s.ClusterIPs = parse("spec.clusterIPs", ips)
	s.ExternalIPs = parse("spec.externalIPs", in.Spec.ExternalIPs)
	var lb []string
	for _, ing := range in.Status.LoadBalancer.Ingress {
		lb = append(lb, ing.IP)
	}
	s.LoadBalancerIPs = parse("status.loadBalancer.ingress", lb)
	if in.Spec.Selector != nil {
		s.Selector = labels.SelectorFromSet(in.Spec.Selector)
	}
	for i, p := range in.Spec.Ports {
		proto := ProtocolTCP
		if p.Protocol != "" {
			var err error
			if proto, err = ParseAPIProtocol(string(p.Protocol)); err != nil {
				errs = append(errs, objectError("Service", s.Key(), fmt.Sprintf("spec.ports[%d].protocol", i), "%w", err))
				continue
			}
		}
		tp := p.TargetPort
		if tp.Type == intstr.Int && tp.IntVal == 0 || tp.Type == intstr.String && tp.StrVal == "" {
			tp = intstr.FromInt32(p.Port) // the API defaults targetPort to port
		}
		// The API server refuses these; a manifest can still say 70000,
		// which a 16-bit port would read as 4464. The port is left out:
		// explain then knows no such Service port.
		if f, err := checkServicePort(p, tp); err != nil {
			errs = append(errs, objectError("Service", s.Key(), fmt.Sprintf("spec.ports[%d].%s", i, f), "%w (the port is ignored)", err))
			continue
		}
		s.Ports = append(s.Ports, ServicePort{Name: p.Name, Protocol: proto, Port: p.Port, TargetPort: tp, NodePort: p.NodePort})
	}
	return s, errs
}

// checkServicePort checks a Service port as the API server does: port and
// a numeric targetPort (tp, after defaulting) in 1-65535, a named one a
// valid port name, nodePort 0 (none) or in 1-65535. The error starts with
// the field's name under spec.ports[i].
func checkServicePort(p corev1.ServicePort, tp intstr.IntOrString) (string, error) {
	if msgs := validation.IsValidPortNum(int(p.Port)); len(msgs) > 0 {
		return "port", fmt.Errorf("Invalid value: %d: %s", p.Port, msgs[0])
	}
	if tp.Type == intstr.String {
		if msgs := validation.IsValidPortName(tp.StrVal); len(msgs) > 0 {
			return "targetPort", fmt.Errorf("Invalid value: %q: %s", tp.StrVal, msgs[0])
		}
	} else if msgs := validation.IsValidPortNum(int(tp.IntVal)); len(msgs) > 0 {
		return "targetPort", fmt.Errorf("Invalid value: %d: %s", tp.IntVal, msgs[0])
	}
	if p.NodePort != 0 {
		if msgs := validation.IsValidPortNum(int(p.NodePort)); len(msgs) > 0 {
			return "nodePort", fmt.Errorf("Invalid value: %d: %s", p.NodePort, msgs[0])
		}
	}
	return "", nil
}

// ConvertEndpointSlice converts a discovery/v1 EndpointSlice, returning the
// Service it belongs to (its kubernetes.io/service-name label, "" if none).
// Addresses are read as ParseIP; one it refuses, and a port outside
// 1-65535, is reported and skipped.
func ConvertEndpointSlice(in *discoveryv1.EndpointSlice) (service string, out *EndpointSlice, errs []error) {
	out = &EndpointSlice{}
	for i, p := range in.Ports {
		proto := ProtocolTCP
		if p.Protocol != nil {
			var err error
			if proto, err = ParseAPIProtocol(string(*p.Protocol)); err != nil {
				errs = append(errs, objectError("EndpointSlice", in.Namespace+"/"+in.Name, fmt.Sprintf("ports[%d].protocol", i), "%w", err))
				continue
			}
		}
		ep := EndpointPort{Protocol: proto}
		if p.Name != nil {
			ep.Name = *p.Name
		}
		if p.Port != nil {
			// Refused by the API server; 70000 would be 4464 to a 16-bit
			// port. Left out, the Service port finds no backend port here.
			if msgs := validation.IsValidPortNum(int(*p.Port)); len(msgs) > 0 {
				errs = append(errs, objectError("EndpointSlice", in.Namespace+"/"+in.Name, fmt.Sprintf("ports[%d].port", i), "Invalid value: %d: %s (the port is ignored)", *p.Port, msgs[0]))
				continue
			}
			ep.Port = *p.Port
		}
		out.Ports = append(out.Ports, ep)
	}
	for i, e := range in.Endpoints {
		ready := e.Conditions.Ready == nil || *e.Conditions.Ready
		pod := ""
		if r := e.TargetRef; r != nil && r.Kind == "Pod" {
			ns := r.Namespace
			if ns == "" {
				ns = in.Namespace
			}
			pod = ns + "/" + r.Name
		}
		for j, a := range e.Addresses {
			ip, err := ParseIP(a)
			if err != nil {
				errs = append(errs, objectError("EndpointSlice", in.Namespace+"/"+in.Name, fmt.Sprintf("endpoints[%d].addresses[%d]", i, j), "Invalid value: %w (the address is ignored)", err))
				continue
			}
			out.Endpoints = append(out.Endpoints, Endpoint{Addr: ip, Pod: pod, Ready: ready})
		}
	}
	return in.Labels[discoveryv1.LabelServiceName], out, errs
}

// Backend is one place a Service's port leads: a backend address and the
// port the packet arrives at after kube-proxy's DNAT.
type Backend struct {
	// Pod is the backend pod, nil when the address is no known pod's.
	Pod  *Pod
	Addr netip.Addr
	// Port is the target port; 0 when the backend declares no container
	// port of that name (the connection fails: nothing to explain).
	Port int32
	// Ready is false for an endpoint that is not ready (kube-proxy sends it
	// no traffic).
	Ready bool
	// Why says how Port was resolved, for a person.
	Why string
}

// Backends resolves service port sp of s to its backends, sorted by pod
// key then address: from the Service's EndpointSlices when known, else
// from its selector over the snapshot's running pods (family fam, 4 or 6,
// for the pods' addresses).
//
// A backend is its address: kube-proxy delivers to the endpoint's address,
// so the backend pod is whichever pod owns that address now (PodByIP: the
// newest claimant), or none. An EndpointSlice's targetRef is never trusted
// for it: whoever can write an EndpointSlice can name any pod of any
// namespace there, and a stale slice names a pod that is gone while
// another holds its address. A targetRef that names another pod than the
// owner is only mentioned in Why.
func (snap *Snapshot) Backends(s *Service, sp ServicePort, fam int) []Backend {
	var out []Backend
	if len(s.Slices) > 0 {
		for _, sl := range s.Slices {
			port := int32(0)
			for _, p := range sl.Ports {
				if p.Name == sp.Name && p.Protocol == sp.Protocol {
					port = p.Port
				}
			}
			for _, e := range sl.Endpoints {
				if (e.Addr.Is4()) != (fam == 4) {
					continue
				}
				b := Backend{Addr: e.Addr, Pod: snap.PodByIP(e.Addr), Port: port, Ready: e.Ready, Why: fmt.Sprintf("EndpointSlice port %s/%d", sp.Protocol, port)}
				switch {
				case e.Pod == "":
				case b.Pod == nil:
					b.Why += fmt.Sprintf("; its targetRef names pod %s, but no pod holds %s: judged as that address", e.Pod, e.Addr)
				case b.Pod.Key() != e.Pod:
					b.Why += fmt.Sprintf("; its targetRef names pod %s, but %s is %s's address: judged as %s (kube-proxy delivers to the address)", e.Pod, e.Addr, b.Pod.Key(), b.Pod.Key())
				}
				out = append(out, b)
			}
		}
	} else if s.Selector != nil {
		for _, p := range snap.Pods {
			if p.Namespace != s.Namespace || !s.Selector.Matches(p.Labels) {
				continue
			}
			ip, ok := p.IP(fam)
			if !ok {
				continue
			}
			// The address's owner: of several pods claiming it, the newest
			// (the model judges the address as the strictest of them).
			owner := p
			if o := snap.PodByIP(ip); o != nil && !p.HostNetwork {
				owner = o
			}
			b := Backend{Pod: owner, Addr: ip, Ready: true}
			if sp.TargetPort.Type == intstr.String {
				if n, ok := p.ResolvePort(sp.TargetPort.StrVal, sp.Protocol); ok {
					b.Port, b.Why = n, fmt.Sprintf("targetPort %s = %d on %s", sp.TargetPort.StrVal, n, p.Key())
				} else {
					b.Why = fmt.Sprintf("%s declares no %s port named %s", p.Key(), sp.Protocol, sp.TargetPort.StrVal)
				}
			} else {
				b.Port, b.Why = sp.TargetPort.IntVal, fmt.Sprintf("targetPort %d", sp.TargetPort.IntVal)
			}
			out = append(out, b)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		ki, kj := "", ""
		if out[i].Pod != nil {
			ki = out[i].Pod.Key()
		}
		if out[j].Pod != nil {
			kj = out[j].Pod.Key()
		}
		if ki != kj {
			return ki < kj
		}
		return out[i].Addr.Less(out[j].Addr)
	})
	return out
}

// Service returns the Service "namespace/name", or nil.
func (snap *Snapshot) Service(key string) *Service {
	for _, s := range snap.Services {
		if s.Key() == key {
			return s
		}
	}
	return nil
}

// ServiceByAddr returns the Service one of whose addresses is a, or nil.
func (snap *Snapshot) ServiceByAddr(a netip.Addr) *Service {
	for _, s := range snap.Services {
		if s.HasAddr(a.Unmap()) {
			return s
		}
	}
	return nil
}

// ServicePortFor returns the port of s a client addresses as port/proto, or
// false.
func (s *Service) ServicePortFor(port int32, proto Protocol) (ServicePort, bool) {
	for _, p := range s.Ports {
		if p.Port == port && p.Protocol == proto {
			return p, true
		}
	}
	return ServicePort{}, false
}

// AddServices converts Services and EndpointSlices into snap (slices join
// their Service by the kubernetes.io/service-name label) and returns the
// conversion errors.
func (snap *Snapshot) AddServices(svcs []*corev1.Service, slices []*discoveryv1.EndpointSlice) []error {
	var errs []error
	for _, in := range svcs {
		s, serrs := ConvertService(in)
		errs = append(errs, serrs...)
		snap.Services = append(snap.Services, s)
	}
	sort.Slice(snap.Services, func(i, j int) bool { return snap.Services[i].Key() < snap.Services[j].Key() })
	for _, in := range slices {
		name, sl, serrs := ConvertEndpointSlice(in)
		errs = append(errs, serrs...)
		if s := snap.Service(in.Namespace + "/" + name); s != nil {
			s.Slices = append(s.Slices, sl)
		}
	}
	snap.Errors = append(snap.Errors, errs...)
	return errs
}

// String renders "TCP/80 (http)".
func (sp ServicePort) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s/%d", sp.Protocol, sp.Port)
	if sp.Name != "" {
		fmt.Fprintf(&b, " (%s)", sp.Name)
	}
	return b.String()
}
