package explain

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestResolveEndpoint(t *testing.T) {
	t.Parallel()
	snap := snapshot(t)
	tests := []struct {
		name    string
		in      string
		wantPod string // "" for no pod
		wantIP  string // "" for no address chosen
		wantErr string // substring of a *UsageError
	}{
		{name: "pod", in: "shop/web", wantPod: "shop/web"},
		{name: "pod IPv4", in: "10.0.0.1", wantPod: "shop/web", wantIP: "10.0.0.1"},
		{name: "pod IPv6", in: "fd00::1", wantPod: "shop/web", wantIP: "fd00::1"},
		{name: "IPv4-mapped IPv6 is IPv4", in: "::ffff:10.0.0.2", wantPod: "shop/db", wantIP: "10.0.0.2"},
		{name: "IP of no pod", in: "192.0.2.7", wantIP: "192.0.2.7"},
		{name: "hostNetwork pod IP is not a pod", in: "192.168.0.1", wantIP: "192.168.0.1"},
		{name: "unknown pod", in: "shop/nope", wantErr: "pod shop/nope not found"},
		{name: "unknown namespace", in: "nope/web", wantErr: "pod nope/web not found"},
		{name: "three parts", in: "shop/web/x", wantErr: "not found"},
		{name: "bare name", in: "web", wantErr: `"web" is neither namespace/pod nor an IP address`},
		{name: "empty", in: "", wantErr: "is neither"},
		{name: "short IPv4", in: "10.0.0", wantErr: "is neither"},
		{name: "CIDR", in: "10.0.0.0/8", wantErr: "not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ep, err := ResolveEndpoint(snap, tt.in)
			if tt.wantErr != "" {
				var ue *UsageError
				if !errors.As(err, &ue) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ResolveEndpoint(%q) error = %v, want a *UsageError containing %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ResolveEndpoint(%q): %v", tt.in, err)
			}
			gotPod := ""
			if ep.Pod != nil {
				gotPod = ep.Pod.Key()
			}
			if gotPod != tt.wantPod {
				t.Errorf("ResolveEndpoint(%q).Pod = %q, want %q", tt.in, gotPod, tt.wantPod)
			}
			var wantIP netip.Addr
			if tt.wantIP != "" {
				wantIP = netip.MustParseAddr(tt.wantIP)
			}
			if ep.IP != wantIP {
				t.Errorf("ResolveEndpoint(%q).IP = %v, want %v", tt.in, ep.IP, wantIP)
			}
		})
	}
}
