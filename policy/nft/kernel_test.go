package nft

import (
	"context"
	"strings"
	"testing"

	"github.com/vishvananda/netns"

	"github.com/policyd/policyd/internal/netnstest"
	"github.com/policyd/policyd/policy/ruleset"
)

// kernelNS creates a namespace for a kernel test and a Backend bound to it.
func kernelNS(t *testing.T) (string, *Backend) {
	t.Helper()
	netnstest.RequireRoot(t)
	netnstest.RequireCommand(t, "ip", "nft")
	name, h := netnstest.New(t, "pdnft")
	b, err := New(Options{NetNS: int(h)})
	if err != nil {
		t.Fatal(err)
	}
	return name, b
}

func listTable(t *testing.T, ns string) string {
	t.Helper()
	return netnstest.MustExec(t, ns, "nft", "list", "table", "inet", ruleset.TableName)
}

func applyText(t *testing.T, ns, text string) {
	t.Helper()
	if out, err := netnstest.ExecInput(t, ns, text, "nft", "-f", "-"); err != nil {
		t.Fatalf("nft -f of Ruleset.Text failed: %v\n%s\ntext:\n%s", err, out, text)
	}
}

// TestLower_MatchesNftText applies Ruleset.Text with nft -f in one namespace
// and the netlink lowering in another, and requires `nft list` to print the
// same table: every shape is lowered to what nft generates for its text.
func TestLower_MatchesNftText(t *testing.T) {
	gotX := requireSameAsNftText(t, fullRuleset())
	if !strings.Contains(gotX, "byteorder") || !strings.Contains(gotX, "lookup reg 1 set __set") {
		t.Fatalf("expression dump lacks expected expressions:\n%s", gotX)
	}
}

// TestLower_EveryShapeMatchesNftText does the same for the sample of every
// writable shape of ruleset.Shapes: a shape whose text nft rejects, or whose
// netlink form lists differently, fails here.
func TestLower_EveryShapeMatchesNftText(t *testing.T) {
	requireSameAsNftText(t, ruleset.ShapesRuleset())
}

// requireSameAsNftText applies want.Text with nft -f in one namespace and
// Syncs want through netlink in another, and requires both the listing and
// the rule expressions to be equal. It returns the expression dump.
func requireSameAsNftText(t *testing.T, want *ruleset.Ruleset) string {
	t.Helper()
	textNS, _ := kernelNS(t)
	nlNS, b := kernelNS(t)
	applyText(t, textNS, want.Text())
	stats, err := b.Sync(context.Background(), want)
	if err != nil {
		t.Fatal(err)
	}
	if !stats.Full {
		t.Error("first Sync did not read the kernel")
	}
	got, exp := listTable(t, nlNS), listTable(t, textNS)
	if testing.Verbose() {
		t.Logf("nft list of the netlink lowering:\n%s", got)
	}
	if got != exp {
		t.Fatalf("nft list differs (-nft -f +netlink):\n%s", lineDiff(exp, got))
	}
	// The listing is a decompilation; also compare the expressions the
	// kernel holds for every rule.
	gotX, expX := ruleExprs(t, nlNS), ruleExprs(t, textNS)
	if gotX != expX {
		t.Fatalf("rule expressions differ (-nft -f +netlink):\n%s", lineDiff(expX, gotX))
	}
	return gotX
}

// ruleExprs returns the kernel's expressions of every rule of the table, per
// chain, from `nft --debug=netlink list table`, without handles, userdata
// and set elements.
func ruleExprs(t *testing.T, ns string) string {
	t.Helper()
	out := netnstest.MustExec(t, ns, "nft", "--debug=netlink", "list", "table", "inet", ruleset.TableName)
	var b strings.Builder
	prefix := "inet " + ruleset.TableName + " "
	for _, line := range strings.Split(out, "\n") {
		switch {
		case strings.HasPrefix(line, prefix) && !strings.HasPrefix(line, prefix+"@"):
			// "inet policyd CHAIN HANDLE [POSITION]"
			f := strings.Fields(line)
			b.WriteString("rule in " + f[2] + "\n")
		case strings.HasPrefix(line, "  ["):
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}

// lineDiff is a small line diff for readable failures.
func lineDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	var out strings.Builder
	n := max(len(al), len(bl))
	for i := range n {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x == y {
			out.WriteString("  " + x + "\n")
			continue
		}
		out.WriteString("- " + x + "\n+ " + y + "\n")
	}
	return out.String()
}

// nsHandle opens the named namespace.
func nsHandle(name string) (netns.NsHandle, error) { return netns.GetFromName(name) }
