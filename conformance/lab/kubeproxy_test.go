package lab

import (
	"net/netip"
	"strings"
	"testing"
)

func TestKubeProxyText(t *testing.T) {
	t.Parallel()
	a := netip.MustParseAddr
	svcs := []service{
		{ClusterIP: a("10.96.0.11"), PodIP: a("10.240.1.2")},
		{ClusterIP: a("10.96.0.10"), PodIP: a("10.244.1.10"), Hairpin: true},
		{ClusterIP: a("fd00:10:96::a"), PodIP: a("fd00:10:240::2"), Hairpin: true},
	}
	got := kubeProxyText(svcs, [2]netip.Addr{a("10.240.0.1"), a("fd00:10:240::1")}, []fam{v4, v6}, serviceNAT{})
	want := `table ip pdlab-kubeproxy
delete table ip pdlab-kubeproxy
table ip pdlab-kubeproxy {
	map services {
		type ipv4_addr : ipv4_addr
		elements = { 10.96.0.10 : 10.244.1.10, 10.96.0.11 : 10.240.1.2 }
	}
	set hairpin {
		type ipv4_addr . ipv4_addr
		elements = { 10.244.1.10 . 10.244.1.10 }
	}
	chain prerouting {
		type nat hook prerouting priority -100; policy accept;
		dnat to ip daddr map @services
	}
	chain output {
		type nat hook output priority -100; policy accept;
		dnat to ip daddr map @services
	}
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		ct status dnat ip saddr . ip daddr @hairpin snat to 10.240.0.1
	}
}
table ip6 pdlab-kubeproxy
delete table ip6 pdlab-kubeproxy
table ip6 pdlab-kubeproxy {
	map services {
		type ipv6_addr : ipv6_addr
		elements = { fd00:10:96::a : fd00:10:240::2 }
	}
	set hairpin {
		type ipv6_addr . ipv6_addr
		elements = { fd00:10:240::2 . fd00:10:240::2 }
	}
	chain prerouting {
		type nat hook prerouting priority -100; policy accept;
		dnat to ip6 daddr map @services
	}
	chain output {
		type nat hook output priority -100; policy accept;
		dnat to ip6 daddr map @services
	}
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		ct status dnat ip6 saddr . ip6 daddr @hairpin snat to fd00:10:240::1
	}
}
`
	if got != want {
		t.Errorf("kubeProxyText:\n%s\nwant:\n%s", got, want)
	}
	empty := kubeProxyText(nil, [2]netip.Addr{a("10.240.0.1")}, []fam{v4}, serviceNAT{})
	if want := "type ipv4_addr : ipv4_addr\n\t}"; !strings.Contains(empty, want) {
		t.Errorf("empty map must have no elements line:\n%s", empty)
	}
}
