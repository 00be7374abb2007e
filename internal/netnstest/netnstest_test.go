package netnstest

import (
	"os"
	"strings"
	"testing"

	"github.com/vishvananda/netns"
)

func TestNew_CreatesIsolatedNamespaceAndRemovesIt(t *testing.T) {
	RequireCommand(t, "ip")
	var name string
	t.Run("inner", func(t *testing.T) {
		n, h := New(t, "nstest")
		name = n
		if !h.IsOpen() {
			t.Fatal("handle is not open")
		}
		cur, err := netns.Get()
		if err != nil {
			t.Fatal(err)
		}
		defer cur.Close()
		if cur.Equal(h) {
			t.Fatal("the calling thread was left in the new namespace")
		}
		if _, err := os.Stat("/var/run/netns/" + n); err != nil {
			t.Fatalf("namespace %s has no mount point: %v", n, err)
		}
		out := MustExec(t, n, "ip", "-o", "link", "show")
		// A fresh namespace has only the loopback device.
		if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 1 || !strings.Contains(lines[0], "lo:") {
			t.Fatalf("new namespace has unexpected links:\n%s", out)
		}
		if _, err := Exec(t, n, "false"); err == nil {
			t.Fatal("Exec of a failing command returned no error")
		}
		got, err := ExecInput(t, n, "hello", "cat")
		if err != nil || got != "hello" {
			t.Fatalf("ExecInput = %q, %v; want hello", got, err)
		}
	})
	if name == "" {
		t.Fatal("inner test did not create a namespace")
	}
	if _, err := os.Stat("/var/run/netns/" + name); !os.IsNotExist(err) {
		t.Fatalf("namespace %s still exists after cleanup (stat err %v)", name, err)
	}
}

func TestNew_UniqueNames(t *testing.T) {
	a, _ := New(t, "nstest")
	b, _ := New(t, "nstest")
	if a == b {
		t.Fatalf("two namespaces got the same name %q", a)
	}
}
