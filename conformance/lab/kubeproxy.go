package lab

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
)

// KubeProxyTable is the name of the kube-proxy-like NAT table DNAT mode puts
// in every node namespace, in the ip family and, with IPv6, the ip6 family.
const KubeProxyTable = Prefix + "kubeproxy"

// service maps one ClusterIP to one pod address; with no ClusterIP it only
// marks the pod for the hairpin SNAT.
type service struct {
	ClusterIP netip.Addr
	PodIP     netip.Addr
	// Hairpin is true for pods of this node that are not hostNetwork: a
	// connection from such a pod to its own ClusterIP, or to a Service it
	// backs, is SNATed.
	Hairpin bool
}

// serviceNAT is the IPv4 Service part of one node's kube-proxy-like table.
type serviceNAT struct {
	addr   netip.Addr // the node's underlay address: the masquerade source towards other nodes
	maps   []string   // svc map elements
	chains string     // the per-service chains
}

// kubeProxyText renders the DNAT tables of one node as one `nft -f`
// transaction that replaces them atomically. gw holds the node's gateway
// address per family (the hairpin SNAT source). nat holds the IPv4 Service
// part (serviceText); without Services it is empty and the table has no svc
// map. The output is deterministic.
func kubeProxyText(svcs []service, gw [2]netip.Addr, fams []fam, nat serviceNAT) string {
	var b strings.Builder
	for _, f := range fams {
		family, addrType, ipKw := "ip", "ipv4_addr", "ip"
		if f == v6 {
			family, addrType, ipKw = "ip6", "ipv6_addr", "ip6"
		}
		var maps, hairpin []string
		for _, s := range svcs {
			if !s.PodIP.IsValid() || famOf(s.PodIP) != f {
				continue
			}
			if s.ClusterIP.IsValid() {
				maps = append(maps, fmt.Sprintf("%s : %s", s.ClusterIP, s.PodIP))
			}
			if s.Hairpin {
				hairpin = append(hairpin, fmt.Sprintf("%s . %s", s.PodIP, s.PodIP))
			}
		}
		sort.Strings(maps)
		sort.Strings(hairpin)
		fmt.Fprintf(&b, "table %s %s\ndelete table %s %s\n", family, KubeProxyTable, family, KubeProxyTable)
		fmt.Fprintf(&b, "table %s %s {\n", family, KubeProxyTable)
		fmt.Fprintf(&b, "\tmap services {\n\t\ttype %s : %s\n", addrType, addrType)
		if len(maps) > 0 {
			fmt.Fprintf(&b, "\t\telements = { %s }\n", strings.Join(maps, ", "))
		}
		b.WriteString("\t}\n")
		fmt.Fprintf(&b, "\tset hairpin {\n\t\ttype %s . %s\n", addrType, addrType)
		if len(hairpin) > 0 {
			fmt.Fprintf(&b, "\t\telements = { %s }\n", strings.Join(hairpin, ", "))
		}
		b.WriteString("\t}\n")
		withSvc := f == v4 && nat.chains != ""
		if withSvc {
			b.WriteString("\tmap svc {\n\t\ttype ipv4_addr . inet_proto . inet_service : verdict\n")
			if len(nat.maps) > 0 {
				fmt.Fprintf(&b, "\t\telements = { %s }\n", strings.Join(nat.maps, ", "))
			}
			b.WriteString("\t}\n")
			b.WriteString(nat.chains)
		}
		// -100 is dstnat; nft 1.0.6 accepts the keyword only in prerouting.
		for _, hook := range []string{"prerouting", "output"} {
			fmt.Fprintf(&b, "\tchain %s {\n\t\ttype nat hook %s priority -100; policy accept;\n", hook, hook)
			if withSvc {
				b.WriteString("\t\tip daddr . meta l4proto . th dport vmap @svc\n")
			}
			fmt.Fprintf(&b, "\t\tdnat to %s daddr map @services\n\t}\n", ipKw)
		}
		b.WriteString("\tchain postrouting {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n")
		fmt.Fprintf(&b, "\t\tct status dnat %s saddr . %s daddr @hairpin snat to %s\n", ipKw, ipKw, gw[f])
		if withSvc {
			// externalTrafficPolicy Cluster: masquerade to the node's address
			// on the way out, the underlay address towards another node, the
			// pods' gateway towards the node's own pods.
			fmt.Fprintf(&b, "\t\tmeta mark & %s == %s oifname %q snat to %s\n", masqMark, masqMark, uplink, nat.addr)
			fmt.Fprintf(&b, "\t\tmeta mark & %s == %s snat to %s\n", masqMark, masqMark, gw[f])
		}
		b.WriteString("\t}\n")
		b.WriteString("}\n")
	}
	return b.String()
}
