// Package netnsutil runs code inside a network namespace without ever
// letting that namespace leak into other goroutines.
//
// Go schedules goroutines on OS threads, and a network namespace belongs to a
// thread. Every function here runs fn on a new goroutine locked to its thread
// and returns without unlocking it, so the runtime destroys the thread
// afterwards instead of reusing it: whatever fn did to the thread can never
// reach other code, even where switching back would have failed. Sockets fn
// creates stay in the namespace for their whole life, whichever thread uses
// them later.
package netnsutil

import (
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
)

// OnFreshThread runs fn on a thread of its own, discarded afterwards, and
// waits for it. The runtime creates threads for locked goroutines from its
// template thread, so no new thread inherits what fn did.
func OnFreshThread(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		errc <- fn()
	}()
	return <-errc
}

// Do runs fn on a fresh thread that has entered the network namespace ns.
func Do(ns netns.NsHandle, fn func() error) error {
	return OnFreshThread(func() error {
		if err := netns.Set(ns); err != nil {
			return fmt.Errorf("entering network namespace: %w", err)
		}
		return fn()
	})
}

// DoNamed runs fn on a fresh thread that has entered the named network
// namespace (/run/netns/NAME, as `ip netns add` makes).
func DoNamed(name string, fn func() error) error {
	ns, err := netns.GetFromName(name)
	if err != nil {
		return fmt.Errorf("opening network namespace %s: %w", name, err)
	}
	defer ns.Close()
	if err := Do(ns, fn); err != nil {
		return fmt.Errorf("in network namespace %s: %w", name, err)
	}
	return nil
}
