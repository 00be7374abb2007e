// Package netnstest owns the helpers kernel tests use to run inside network
// namespaces they create and always remove: a root check that skips locally
// and fails in CI, a named namespace per test, and command execution inside it.
//
// Nothing here ever changes the network namespace of the calling goroutine:
// namespace switches happen on a dedicated, locked OS thread that is thrown
// away if it cannot be switched back.
package netnstest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/vishvananda/netns"

	"github.com/policyd/policyd/internal/netnsutil"
)

// inCI reports whether the tests run in CI, where missing privileges or tools
// are failures, not reasons to skip.
func inCI() bool { return os.Getenv("CI") != "" }

// skipOrFail skips the test with reason, or fails it when running in CI.
func skipOrFail(t testing.TB, reason string) {
	t.Helper()
	if inCI() {
		t.Fatalf("%s (CI is set, so this kernel test must run)", reason)
	}
	t.Skipf("%s; skipping kernel test", reason)
}

// RequireRoot skips the test unless it runs as root. When the environment
// variable CI is non-empty it fails the test instead, so that kernel tests
// cannot silently stop running in CI.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		skipOrFail(t, "kernel test needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN)")
	}
}

// RequireCommand skips the test unless every named program is in PATH, and
// fails it instead when CI is set.
func RequireCommand(t testing.TB, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			skipOrFail(t, fmt.Sprintf("kernel test needs %q in PATH", n))
		}
	}
}

var counter atomic.Uint64

// New creates a named network namespace whose name starts with prefix and is
// unique to this process (prefix, pid and a counter), and returns its name and
// an open handle to it. The namespace is deleted and the handle closed in
// t.Cleanup, also when the test fails. New calls RequireRoot.
func New(t testing.TB, prefix string) (string, netns.NsHandle) {
	t.Helper()
	RequireRoot(t)
	name := fmt.Sprintf("%s%d-%d", prefix, os.Getpid(), counter.Add(1))
	h, err := netnsutil.CreateNamed(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := h.Close(); err != nil {
			t.Errorf("close handle of network namespace %s: %v", name, err)
		}
		if err := netns.DeleteNamed(name); err != nil {
			t.Errorf("delete network namespace %s: %v", name, err)
		}
	})
	return name, h
}

// Exec runs cmd inside the named namespace (`ip netns exec name cmd...`) and
// returns its combined output. The error, if any, includes the output.
func Exec(t testing.TB, name string, cmd ...string) (string, error) {
	t.Helper()
	if len(cmd) == 0 {
		return "", errors.New("netnstest.Exec: no command")
	}
	args := append([]string{"netns", "exec", name}, cmd...)
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ip netns exec %s %s: %w: %s", name, strings.Join(cmd, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// MustExec is Exec that fails the test on error.
func MustExec(t testing.TB, name string, cmd ...string) string {
	t.Helper()
	out, err := Exec(t, name, cmd...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// ExecInput is Exec with stdin taken from input, e.g. `nft -f -`.
func ExecInput(t testing.TB, name, input string, cmd ...string) (string, error) {
	t.Helper()
	if len(cmd) == 0 {
		return "", errors.New("netnstest.ExecInput: no command")
	}
	args := append([]string{"netns", "exec", name}, cmd...)
	c := exec.Command("ip", args...)
	c.Stdin = strings.NewReader(input)
	out, err := c.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ip netns exec %s %s: %w: %s", name, strings.Join(cmd, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}
