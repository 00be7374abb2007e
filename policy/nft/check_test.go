package nft

import (
	"context"
	"errors"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/policyd/policyd/policy/ruleset"
)

// TestSync_RefusesWhatCheckRefuses: the Backend and the Fake hold want to
// ruleset.Check before anything is read or sent; a reference to a missing
// object is refused with the kernel's own errno (ENOENT), anything else
// without it.
func TestSync_RefusesWhatCheckRefuses(t *testing.T) {
	t.Parallel()
	// An fd that is no namespace: were the check skipped, dialling would
	// fail instead of touching this host's table.
	b, err := New(Options{NetNS: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	bad := func(r ruleset.Rule) *ruleset.Ruleset {
		return fullRuleset(func(rs *ruleset.Ruleset) {
			rs.Chains = append(rs.Chains, &ruleset.Chain{Name: "bad", Rules: []ruleset.Rule{r}})
		})
	}
	tests := []struct {
		name   string
		want   *ruleset.Ruleset
		err    string
		enoent bool
	}{
		{"jump to a missing chain", bad(&ruleset.VerdictRule{Verdict: jump("nope")}), "chain bad rule 0 (jump nope): jump to missing chain nope", true},
		{"log gated by a missing limit", bad(&ruleset.LogRule{Prefix: "pd:1", Group: 1, Limit: "nope"}), "limit nope does not exist", true},
		{"peer set of the other family", bad(&ruleset.AllowRule{Family: 6, PeerField: ruleset.Saddr, PeerSet: "peer4", Verdict: accept()}), "want an ipv6_addr set", false},
	}
	for _, tt := range tests {
		for name, be := range map[string]Interface{"backend": b, "fake": NewFake()} {
			_, err := be.Sync(context.Background(), tt.want)
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%s: %s: Sync error = %v, want %q", tt.name, name, err, tt.err)
				continue
			}
			if errors.Is(err, unix.ENOENT) != tt.enoent {
				t.Errorf("%s: %s: Sync error %q is ENOENT: %v, want %v", tt.name, name, err, !tt.enoent, tt.enoent)
			}
		}
	}
}

// TestFakeStore_Referrer: one function finds what still refers to a set,
// a limit or a chain: a rule's reference of that kind, or a map entry
// jumping to the chain.
func TestFakeStore_Referrer(t *testing.T) {
	t.Parallel()
	st := newFakeStore(fullRuleset())
	tests := []struct {
		kind ruleset.RefKind
		name string
		want string
	}{
		{ruleset.RefSet, "np6", "chain pol-b"},
		{ruleset.RefSet, "pports", "chain pol-b"},
		{ruleset.RefLimit, "log-limit-5-10", "chain pol-a"},
		{ruleset.RefChain, "pol-b", "map eg6"},
		{ruleset.RefChain, "strict", ""},
		{ruleset.RefSet, "pol-b", ""},
		{ruleset.RefChain, "np6", ""},
		{ruleset.RefLimit, "nope", ""},
	}
	for _, tt := range tests {
		if got := st.referrer(tt.kind, tt.name); got != tt.want {
			t.Errorf("referrer(%d, %s) = %q, want %q", tt.kind, tt.name, got, tt.want)
		}
	}
}
