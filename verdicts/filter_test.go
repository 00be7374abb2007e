package verdicts_test

import (
	"net/netip"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/policyd/policyd/policy/decider"
	"github.com/policyd/policyd/verdicts"
)

func ep(ns, pod string) verdicts.Endpoint {
	return verdicts.Endpoint{IP: netip.MustParseAddr("10.0.0.9"), Namespace: ns, Pod: pod}
}

// TestFilter_Match: each flag of policyd observe against records of every
// kind; names without a namespace match in any namespace unless -n is given.
func TestFilter_Match(t *testing.T) {
	t.Parallel()
	np := &verdicts.Record{Src: ep("shop", "frontend-1"), Dst: ep("shop", "db"), Decider: decider.Decider{Verdict: decider.VerdictDeny, Kind: decider.KindNetworkPolicy, Policies: []string{"shop/db", "shop/default-deny"}}}
	cnp := &verdicts.Record{Src: ep("monitoring", "prometheus"), Dst: ep("shop", "db"), Decider: decider.Decider{Verdict: decider.VerdictDeny, Kind: decider.KindClusterNetworkPolicy, Policies: []string{"no-scrape-db"}}}
	allow := &verdicts.Record{Src: ep("shop", "frontend-1"), Dst: verdicts.Endpoint{IP: netip.MustParseAddr("10.1.2.3")}, Decider: decider.Decider{Verdict: decider.VerdictAllow, Kind: decider.KindNetworkPolicy, Policies: []string{"shop/frontend"}}}
	for _, tt := range []struct {
		name string
		f    verdicts.Filter
		want [3]bool // np, cnp, allow
	}{
		{"zero", verdicts.Filter{}, [3]bool{true, true, true}},
		{"namespace either end", verdicts.Filter{Namespace: "monitoring"}, [3]bool{false, true, false}},
		{"namespace shop", verdicts.Filter{Namespace: "shop"}, [3]bool{true, true, true}},
		{"pod by name, any namespace", verdicts.Filter{Pod: "db"}, [3]bool{true, true, false}},
		{"pod ns/name", verdicts.Filter{Pod: "shop/frontend-1"}, [3]bool{true, false, true}},
		{"pod name in -n", verdicts.Filter{Namespace: "monitoring", Pod: "db"}, [3]bool{false, false, false}},
		{"pod name in its -n", verdicts.Filter{Namespace: "shop", Pod: "db"}, [3]bool{true, true, false}},
		{"verdict deny", verdicts.Filter{Verdict: "deny"}, [3]bool{true, true, false}},
		{"verdict allow", verdicts.Filter{Verdict: "allow"}, [3]bool{false, false, true}},
		{"policy key", verdicts.Filter{Policy: "shop/default-deny"}, [3]bool{true, false, false}},
		{"policy name of a NetworkPolicy", verdicts.Filter{Policy: "db"}, [3]bool{true, false, false}},
		{"policy name in another -n", verdicts.Filter{Policy: "db", Namespace: "monitoring"}, [3]bool{false, false, false}},
		{"cnp name", verdicts.Filter{Policy: "no-scrape-db"}, [3]bool{false, true, false}},
		{"a cnp is not namespaced", verdicts.Filter{Policy: "shop/no-scrape-db"}, [3]bool{false, false, false}},
		{"all together", verdicts.Filter{Namespace: "shop", Pod: "frontend-1", Verdict: "allow", Policy: "frontend"}, [3]bool{false, false, true}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			assert.Equal(t, tt.want, [3]bool{tt.f.Match(np), tt.f.Match(cnp), tt.f.Match(allow)})
		})
	}
}

// TestFilter_QueryRoundTripAndValidation: the query the client sends is
// the filter the agent applies; bad values are refused by name.
func TestFilter_QueryRoundTripAndValidation(t *testing.T) {
	t.Parallel()
	f := verdicts.Filter{Namespace: "shop", Pod: "db", Verdict: "deny", Policy: "x", Since: 90 * time.Second}
	got, err := verdicts.ParseFilter(f.Values())
	require.NoError(t, err)
	assert.Equal(t, f, got)
	got, err = verdicts.ParseFilter(url.Values{})
	require.NoError(t, err)
	assert.Equal(t, verdicts.Filter{}, got)
	for q, msg := range map[string]string{
		"verdict=drop":    `verdict "drop"`,
		"pod=a/b/c":       `pod "a/b/c"`,
		"policy=/x":       `policy "/x"`,
		"namespace=a/b":   `namespace "a/b"`,
		"since=yesterday": `since "yesterday"`,
		"since=-1m":       "positive",
		"nodes=1":         `unknown parameter "nodes"`,
	} {
		v, err := url.ParseQuery(q)
		require.NoError(t, err)
		_, err = verdicts.ParseFilter(v)
		assert.ErrorContains(t, err, msg, q)
	}
}
