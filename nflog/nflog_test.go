package nflog

import (
	"net/netip"
	"testing"
)

// TestParseIP decodes IPv4 and IPv6 headers with their ports.
func TestParseIP(t *testing.T) {
	t.Parallel()
	v4 := []byte{0x45, 0, 0, 32, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 3, 0x0f, 0xa0, 0x1f, 0x90, 0, 12, 0, 0}
	f, err := ParseIP(v4)
	want := Flow{Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.3"), Protocol: 17, SrcPort: 4000, DstPort: 8080}
	if err != nil || f != want {
		t.Errorf("v4: %+v %v, want %+v", f, err, want)
	}
	v6 := make([]byte, 44)
	v6[0], v6[6] = 0x60, 6
	src, dst := netip.MustParseAddr("fd00::1").As16(), netip.MustParseAddr("fd00::3").As16()
	copy(v6[8:], src[:])
	copy(v6[24:], dst[:])
	v6[40], v6[41], v6[42], v6[43] = 0, 80, 0x01, 0xbb
	f, err = ParseIP(v6)
	want = Flow{Src: netip.MustParseAddr("fd00::1"), Dst: netip.MustParseAddr("fd00::3"), Protocol: 6, SrcPort: 80, DstPort: 443}
	if err != nil || f != want {
		t.Errorf("v6: %+v %v, want %+v", f, err, want)
	}
	if _, err := ParseIP([]byte{0x45, 0}); err == nil {
		t.Error("short header parsed")
	}
}
