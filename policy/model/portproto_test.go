package model

import (
	"strings"
	"testing"

	"github.com/policyd/policyd/cluster"
)

func TestParsePortProto(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    PortProto
		wantErr bool
	}{
		{in: "TCP/80", want: PortProto{80, cluster.ProtocolTCP}},
		{in: "udp/81", want: PortProto{81, cluster.ProtocolUDP}},
		{in: "SCTP/65535", want: PortProto{65535, cluster.ProtocolSCTP}},
		{in: "TCP/0", wantErr: true},
		{in: "TCP/65536", wantErr: true},
		{in: "ICMP/1", wantErr: true},
		{in: "80", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			got, err := ParsePortProto(tt.in)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("ParsePortProto(%q) = %v, %v; want %v, err %v", tt.in, got, err, tt.want, tt.wantErr)
			}
			if err == nil && got.String() != strings.ToUpper(tt.in) {
				t.Errorf("String() = %q, want %q", got.String(), strings.ToUpper(tt.in))
			}
		})
	}
}
