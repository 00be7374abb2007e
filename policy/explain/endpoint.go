package explain

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/policy/model"
)

// ResolveEndpoint turns what a person wrote for one end of a connection into
// a model endpoint. An IP address (an IPv4-mapped IPv6 address is taken as
// IPv4) gives an endpoint with that address, and with the pod that owns it in
// snap, if any. "namespace/pod" gives that pod, with no address chosen yet.
// An unknown pod, or text that is neither form, is a *UsageError.
func ResolveEndpoint(snap *cluster.Snapshot, s string) (model.Endpoint, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		a = a.Unmap()
		ep := model.Endpoint{IP: a}
		if p := snap.PodByIP(a); p != nil {
			ep.Pod = p
		}
		return ep, nil
	}
	if !strings.Contains(s, "/") {
		return model.Endpoint{}, usageErrorf("%q is neither namespace/pod nor an IP address", s)
	}
	p := snap.Pod(s)
	if p == nil {
		if near := nearPods(snap, s); len(near) > 0 {
			return model.Endpoint{}, usageErrorf("pod %s not found; did you mean %s?", s, strings.Join(near, " or "))
		}
		return model.Endpoint{}, usageErrorf("pod %s not found", s)
	}
	return model.Endpoint{Pod: p}, nil
}

// nearPods returns, sorted and at most five, the pods a person who wrote
// key ("namespace/name") may have meant: a pod of that name in another
// namespace (the usual slip: the wrong -n or kubeconfig namespace), else
// the pods of that namespace whose names start with name (a Deployment's
// name for its pods "name-<hash>-<id>").
func nearPods(snap *cluster.Snapshot, key string) []string {
	ns, name, _ := strings.Cut(key, "/")
	var same, prefix []string
	for _, p := range snap.Pods {
		switch {
		case p.Name == name && p.Namespace != ns:
			same = append(same, p.Key())
		case p.Namespace == ns && strings.HasPrefix(p.Name, name) && name != "":
			prefix = append(prefix, p.Key())
		}
	}
	near := same
	if len(near) == 0 {
		near = prefix
	}
	slices.Sort(near)
	return near[:min(len(near), 5)]
}

// pickAddrs fills in the endpoints' addresses, preferring IPv4 when both
// ends have one.
func pickAddrs(src, dst *model.Endpoint) error {
	for _, fam := range []int{4, 6} {
		sa, sok := addrOf(*src, fam)
		da, dok := addrOf(*dst, fam)
		if sok && dok {
			src.IP, dst.IP = sa, da
			return nil
		}
	}
	return fmt.Errorf("%s and %s have no address family in common (does each pod have status.podIP?)", endpointName(*src), endpointName(*dst))
}

func addrOf(ep model.Endpoint, fam int) (netip.Addr, bool) {
	if ep.IP.IsValid() {
		return ep.IP, (fam == 4) == ep.IP.Is4()
	}
	if ep.Pod != nil {
		return ep.Pod.IP(fam)
	}
	return netip.Addr{}, false
}

// endpointName is the endpoint as results show it: the pod's key, or the
// address when it is not a pod.
func endpointName(ep model.Endpoint) string {
	if ep.Pod != nil {
		return ep.Pod.Key()
	}
	return ep.IP.String()
}
