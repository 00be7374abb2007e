package pktpath

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
)

// NetnsPrefix starts the name of every network namespace the benchmark
// creates. The full name is NetnsPrefix + "<pid>-<role>", so that leftovers of
// a dead run can be told from the namespaces of a run still going.
const NetnsPrefix = "pdbench-"

// Topology is three network namespaces: pod A (the source), the node and pod
// B (the destination), joined by the veth pairs A eth0 <-> node vetha and
// node vethb <-> B eth0. The pods route everything to their node-side
// gateway; the node forwards between them with a /32 route per pod.
type Topology struct {
	// PodA, Node and PodB are the network namespace names.
	PodA, Node, PodB string
	// Src and Dst are the addresses of pod A and pod B.
	Src, Dst netip.Addr
}

// NewTopology creates the three namespaces for the pod addresses src and dst
// (IPv4, in 10.0.0.0/8). On error, whatever was created is removed again; on
// success the caller must call Close.
func NewTopology(src, dst netip.Addr) (t *Topology, err error) {
	ten := netip.MustParsePrefix("10.0.0.0/8")
	if !ten.Contains(src) || !ten.Contains(dst) || src == dst {
		return nil, fmt.Errorf("topology: pod addresses must be two distinct 10.x IPv4 addresses, got %s and %s", src, dst)
	}
	base := NetnsPrefix + strconv.Itoa(os.Getpid()) + "-"
	t = &Topology{PodA: base + "a", Node: base + "node", PodB: base + "b", Src: src, Dst: dst}
	defer func() {
		if err != nil {
			err = errors.Join(err, t.Close())
			t = nil
		}
	}()
	for _, ns := range []string{t.PodA, t.Node, t.PodB} {
		if err := run("ip", "netns", "add", ns); err != nil {
			return t, err
		}
	}
	type side struct {
		pod, peer string
		addr, gw  netip.Addr
	}
	for _, s := range []side{{t.PodA, "vetha", src, gatewayA}, {t.PodB, "vethb", dst, gatewayB}} {
		cmds := [][]string{
			{"ip", "-n", s.pod, "link", "add", "eth0", "type", "veth", "peer", "name", s.peer, "netns", t.Node},
			{"ip", "-n", s.pod, "link", "set", "lo", "up"},
			{"ip", "-n", s.pod, "link", "set", "eth0", "up"},
			{"ip", "-n", s.pod, "addr", "add", s.addr.String() + "/32", "dev", "eth0"},
			{"ip", "-n", s.pod, "route", "add", s.gw.String(), "dev", "eth0", "scope", "link"},
			{"ip", "-n", s.pod, "route", "add", "default", "via", s.gw.String(), "dev", "eth0"},
			{"ip", "-n", t.Node, "link", "set", s.peer, "up"},
			{"ip", "-n", t.Node, "addr", "add", s.gw.String() + "/32", "dev", s.peer},
			{"ip", "-n", t.Node, "route", "add", s.addr.String() + "/32", "dev", s.peer},
		}
		for _, c := range cmds {
			if err := run(c[0], c[1:]...); err != nil {
				return t, err
			}
		}
	}
	if err := run("ip", "-n", t.Node, "link", "set", "lo", "up"); err != nil {
		return t, err
	}
	if err := run("ip", "netns", "exec", t.Node, "sysctl", "-qw", "net.ipv4.ip_forward=1"); err != nil {
		return t, err
	}
	return t, nil
}

// Close deletes the three namespaces (and with them the veth pairs and any
// nftables state in them). It is safe to call more than once and on a
// partly built topology.
func (t *Topology) Close() error {
	var errs []error
	for _, ns := range []string{t.PodA, t.Node, t.PodB} {
		if !netnsExists(ns) {
			continue
		}
		if err := run("ip", "netns", "del", ns); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// SetRuleset replaces the node's whole nftables state with text (`nft -f`
// input); an empty text leaves the node without any table.
func (t *Topology) SetRuleset(text string) error {
	if err := runInput("", "ip", "netns", "exec", t.Node, "nft", "flush", "ruleset"); err != nil {
		return err
	}
	if text == "" {
		return nil
	}
	return runInput(text, "ip", "netns", "exec", t.Node, "nft", "-f", "-")
}

// RemoveLeftovers deletes the network namespaces named NetnsPrefix<pid>-…
// whose process no longer runs: what an earlier run that was killed left
// behind. Namespaces of runs still going are kept.
func RemoveLeftovers() error {
	entries, err := os.ReadDir("/var/run/netns")
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("list network namespaces: %w", err)
	}
	var errs []error
	for _, e := range entries {
		name := e.Name()
		rest, ok := strings.CutPrefix(name, NetnsPrefix)
		if !ok {
			continue
		}
		pidText, _, _ := strings.Cut(rest, "-")
		if pid, err := strconv.Atoi(pidText); err == nil && pid > 0 && processAlive(pid) {
			continue
		}
		if err := run("ip", "netns", "del", name); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

func netnsExists(name string) bool {
	_, err := os.Stat("/var/run/netns/" + name)
	return err == nil
}

func run(name string, args ...string) error { return runInput("", name, args...) }

func runInput(stdin, name string, args ...string) error {
	cmd := exec.Command(name, args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(out.String())
		if len(msg) > 2000 {
			msg = msg[:2000] + "…"
		}
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, msg)
	}
	return nil
}
