package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/policyd/policyd/internal/netnstest"
)

// TestCleanup_WaitRemovesTheTableThenRunsUntilTerminated: `policyd cleanup
// --wait` (deploy/uninstall/uninstall.yaml's container) removes the table,
// keeps running, and exits 0 on SIGTERM. In a namespace of its own.
func TestCleanup_WaitRemovesTheTableThenRunsUntilTerminated(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary; kernel test")
	}
	netnstest.RequireRoot(t)
	netnstest.RequireCommand(t, "nft", "ip")
	bin := filepath.Join(t.TempDir(), "policyd")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, "%s", out)
	ns, _ := netnstest.New(t, "pdcleanup")
	_, err = netnstest.ExecInput(t, ns, "table inet policyd {\n chain input {\n  type filter hook input priority 0; policy accept;\n }\n}\n", "nft", "-f", "-")
	require.NoError(t, err)
	netnstest.MustExec(t, ns, "nft", "list", "table", "inet", "policyd")

	var stdout strings.Builder
	cmd := exec.Command("ip", "netns", "exec", ns, bin, "cleanup", "--wait")
	cmd.Stdout = &stdout
	require.NoError(t, cmd.Start())
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := netnstest.Exec(t, ns, "nft", "list", "table", "inet", "policyd"); err != nil {
			break // removed
		}
		require.True(t, time.Now().Before(deadline), "table inet policyd still there after 10 s")
		time.Sleep(50 * time.Millisecond)
	}
	select {
	case err := <-done:
		t.Fatalf("cleanup --wait exited after removing the table: %v", err)
	case <-time.After(500 * time.Millisecond):
	}
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-done:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("exit status %d on SIGTERM, want 0", ee.ExitCode())
		}
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("still running 5 s after SIGTERM")
	}
	require.Contains(t, stdout.String(), "removed table inet policyd")
	_ = os.Remove(bin)
}
