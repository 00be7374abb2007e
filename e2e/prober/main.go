// Command prober is the traffic of the real cluster's lifecycle tests
// (e2e/lifecycle): run in a pod, it opens new connections to each target,
// over and over, and prints once a second, per target, how many succeeded
// and how many failed in that second:
//
//	UNIX_SECONDS TARGET OK FAIL
//
// A target is NAME=PROTO://IP:PORT/TIMEOUT (PROTO tcp or udp). A TCP probe
// is a connect; a UDP probe sends "hostname\n" and waits for the reply
// (agnhost netexec answers it). A probe that does not complete within
// TIMEOUT fails, which is how a dropped packet shows; a new probe starts
// every -interval, so an opening as short as the interval plus the timeout
// is seen.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"time"
)

type target struct {
	name, proto, addr string
	timeout           time.Duration

	mu       sync.Mutex
	ok, fail int
}

func parse(s string) (*target, error) {
	name, rest, ok := strings.Cut(s, "=")
	proto, rest2, ok2 := strings.Cut(rest, "://")
	i := strings.LastIndex(rest2, "/")
	if !ok || !ok2 || i < 0 || name == "" || (proto != "tcp" && proto != "udp") {
		return nil, fmt.Errorf("target %q: want NAME=tcp|udp://IP:PORT/TIMEOUT", s)
	}
	d, err := time.ParseDuration(rest2[i+1:])
	if err != nil {
		return nil, fmt.Errorf("target %q: %w", s, err)
	}
	if _, _, err := net.SplitHostPort(rest2[:i]); err != nil {
		return nil, fmt.Errorf("target %q: %w", s, err)
	}
	return &target{name: name, proto: proto, addr: rest2[:i], timeout: d}, nil
}

// probe opens one new connection and reports whether it completed in time.
func (t *target) probe() bool {
	c, err := net.DialTimeout(t.proto, t.addr, t.timeout)
	if err != nil {
		return false
	}
	defer c.Close()
	if t.proto == "tcp" {
		return true
	}
	if err := c.SetDeadline(time.Now().Add(t.timeout)); err != nil {
		return false
	}
	if _, err := c.Write([]byte("hostname\n")); err != nil {
		return false
	}
	buf := make([]byte, 256)
	n, err := c.Read(buf)
	return err == nil && n > 0
}

func (t *target) run(interval time.Duration) {
	for {
		start := time.Now()
		ok := t.probe()
		t.mu.Lock()
		if ok {
			t.ok++
		} else {
			t.fail++
		}
		t.mu.Unlock()
		if d := interval - time.Since(start); d > 0 {
			time.Sleep(d)
		}
	}
}

func main() {
	interval := flag.Duration("interval", 100*time.Millisecond, "how often each target is probed")
	flag.Parse()
	var targets []*target
	for _, a := range flag.Args() {
		t, err := parse(a)
		if err != nil {
			fmt.Fprintln(os.Stderr, "prober:", err)
			os.Exit(2)
		}
		targets = append(targets, t)
	}
	if len(targets) == 0 {
		fmt.Fprintln(os.Stderr, "usage: prober [-interval D] NAME=tcp|udp://IP:PORT/TIMEOUT ...")
		os.Exit(2)
	}
	for _, t := range targets {
		go t.run(*interval)
	}
	for now := range time.Tick(time.Second) {
		for _, t := range targets {
			t.mu.Lock()
			ok, fail := t.ok, t.fail
			t.ok, t.fail = 0, 0
			t.mu.Unlock()
			fmt.Printf("%d %s %d %d\n", now.Unix(), t.name, ok, fail)
		}
	}
}
