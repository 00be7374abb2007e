// Command sctpguard is /agnhost in the real cluster's agnhost image (see
// e2e/images.sh). It runs the upstream agnhost, /agnhost.upstream, with the
// same arguments and environment, except for one case: `agnhost porter` on a
// kernel that cannot open SCTP sockets. There porter would exit at its first
// SERVE_SCTP_PORT_* listener and the pod would crash-loop, although its other
// listeners, and every other container of the pod, work. The guard drops
// those variables (saying so on stderr) and, when no listener is left, runs
// `agnhost pause` instead, so the container stays up and serves nothing, as
// an SCTP-only server does when SCTP packets cannot arrive.
//
// Clients probing SCTP still fail ("protocol not supported"): the guard only
// keeps servers up, and the harness skips the probes that need SCTP.
package main

import (
	"fmt"
	"os"
	"strings"
	"syscall"
)

// upstream is where the image keeps the agnhost binary built from Kubernetes.
const upstream = "/agnhost.upstream"

// Porter's environment prefixes (k8s.io/kubernetes/test/images/agnhost/porter).
const (
	sctpPrefix = "SERVE_SCTP_PORT_"
	tcpPrefix  = "SERVE_PORT_"
	tlsPrefix  = "SERVE_TLS_PORT_"
)

func main() {
	args, env, note := guard(os.Args[1:], os.Environ(), sctpSupported())
	if note != "" {
		fmt.Fprintln(os.Stderr, note)
	}
	err := syscall.Exec(upstream, append([]string{upstream}, args...), env)
	fmt.Fprintf(os.Stderr, "sctpguard: exec %s: %v\n", upstream, err)
	os.Exit(127)
}

// guard returns the arguments and environment to run agnhost with, and a
// note for stderr when it changed them.
func guard(args, env []string, sctp bool) ([]string, []string, string) {
	if sctp || len(args) == 0 || args[0] != "porter" {
		return args, env, ""
	}
	var kept, dropped []string
	listeners := 0
	for _, kv := range env {
		key, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(key, sctpPrefix):
			dropped = append(dropped, key)
			continue
		case strings.HasPrefix(key, tcpPrefix), strings.HasPrefix(key, tlsPrefix):
			listeners++
		}
		kept = append(kept, kv)
	}
	if len(dropped) == 0 {
		return args, env, ""
	}
	note := fmt.Sprintf("sctpguard: this kernel cannot open SCTP sockets; not serving %s", strings.Join(dropped, ", "))
	if listeners == 0 {
		return []string{"pause"}, kept, note + "; no other listener: running agnhost pause"
	}
	return args, kept, note
}

// sctpSupported reports whether an SCTP socket can be opened here.
func sctpSupported() bool {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, syscall.IPPROTO_SCTP)
	if err != nil {
		return false
	}
	_ = syscall.Close(fd)
	return true
}
