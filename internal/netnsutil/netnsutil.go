// Package netnsutil runs code inside a network namespace without ever
// letting that namespace leak into other goroutines, and creates and removes
// named network namespaces (/run/netns/NAME, as `ip netns add` makes them).
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
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NamedDir is where named network namespaces are bind-mounted, as by
// `ip netns add`.
const NamedDir = "/run/netns"

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

// CreateNamed creates the named network namespace NamedDir/name and returns
// an open handle to it. The namespace is created on a thread of its own that
// is discarded afterwards, so no goroutine ever runs in it. It fails, with an
// error matching os.ErrExist, if the name exists; on any other failure it
// removes what it left behind.
func CreateNamed(name string) (netns.NsHandle, error) {
	var h netns.NsHandle
	err := OnFreshThread(func() error {
		var err error
		h, err = netns.NewNamed(name)
		return err
	})
	if err != nil {
		if !errors.Is(err, os.ErrExist) {
			_ = DeleteNamed(name) // NewNamed can leave the file behind
		}
		return netns.None(), fmt.Errorf("creating network namespace %s: %w", name, err)
	}
	return h, nil
}

// DeleteNamed removes the named network namespace. The kernel destroys the
// namespace when its last reference (open handle, socket, process) is gone.
// A missing name is not an error.
func DeleteNamed(name string) error {
	p := filepath.Join(NamedDir, name)
	if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmounting %s: %w", p, err)
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing %s: %w", p, err)
	}
	return nil
}
