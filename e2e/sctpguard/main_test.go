package main

import (
	"os"
	"slices"
	"testing"
)

func TestGuard(t *testing.T) {
	base := []string{"PATH=/bin", "HOSTNAME=x"}
	tests := []struct {
		name     string
		args     []string
		env      []string
		sctp     bool
		wantArgs []string
		wantEnv  []string
		wantNote bool
	}{
		{
			name: "SCTP-only porter without SCTP pauses",
			args: []string{"porter"}, env: append(slices.Clone(base), "SERVE_SCTP_PORT_9003=foo"),
			wantArgs: []string{"pause"}, wantEnv: base, wantNote: true,
		},
		{
			name: "mixed porter without SCTP keeps its TCP listener",
			args: []string{"porter"}, env: append(slices.Clone(base), "SERVE_PORT_80=foo", "SERVE_SCTP_PORT_81=foo"),
			wantArgs: []string{"porter"}, wantEnv: append(slices.Clone(base), "SERVE_PORT_80=foo"), wantNote: true,
		},
		{
			name: "TLS listener counts as a listener",
			args: []string{"porter"}, env: []string{"SERVE_TLS_PORT_443=foo", "SERVE_SCTP_PORT_81=foo"},
			wantArgs: []string{"porter"}, wantEnv: []string{"SERVE_TLS_PORT_443=foo"}, wantNote: true,
		},
		{
			name: "porter with SCTP is untouched",
			args: []string{"porter"}, env: []string{"SERVE_SCTP_PORT_9003=foo"}, sctp: true,
			wantArgs: []string{"porter"}, wantEnv: []string{"SERVE_SCTP_PORT_9003=foo"},
		},
		{
			name: "porter without SCTP variables is untouched",
			args: []string{"porter"}, env: []string{"SERVE_PORT_80=foo"},
			wantArgs: []string{"porter"}, wantEnv: []string{"SERVE_PORT_80=foo"},
		},
		{
			name: "other commands are untouched",
			args: []string{"connect", "10.0.0.1:80", "--protocol=sctp"}, env: []string{"SERVE_SCTP_PORT_9003=foo"},
			wantArgs: []string{"connect", "10.0.0.1:80", "--protocol=sctp"}, wantEnv: []string{"SERVE_SCTP_PORT_9003=foo"},
		},
		{
			name: "no arguments is the image's CMD",
			env:  base, wantEnv: base,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args, env, note := guard(tt.args, tt.env, tt.sctp)
			if !slices.Equal(args, tt.wantArgs) {
				t.Errorf("args = %q, want %q", args, tt.wantArgs)
			}
			if !slices.Equal(env, tt.wantEnv) {
				t.Errorf("env = %q, want %q", env, tt.wantEnv)
			}
			if (note != "") != tt.wantNote {
				t.Errorf("note = %q, want a note: %v", note, tt.wantNote)
			}
		})
	}
}

// This kernel has no SCTP (CONFIG_IP_SCTP unset); where it has, the probe
// must say so, so that the guard never drops a listener that would work.
func TestSCTPSupported_AgreesWithProcNet(t *testing.T) {
	got := sctpSupported() // first: opening the socket may load the module
	_, err := os.Stat("/proc/net/sctp")
	if want := err == nil; got != want {
		t.Fatalf("sctpSupported() = %v, but /proc/net/sctp exists = %v", got, want)
	}
}
