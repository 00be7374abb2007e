package report

import (
	"fmt"
	"regexp"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/policyd/policyd/conformance/cnp"
)

// CNPTest is the network-policy-api conformance suite's top-level test: its
// ConformanceTests are its subtests, and their t.Run steps one level below.
const CNPTest = "TestConformanceProfiles"

// Skip is a part of the network-policy-api conformance suite that is not run,
// and why.
type Skip struct {
	// Name is the Go test name as -test.run and -test.skip see it, e.g.
	// TestConformanceProfiles/CNPAdminTierGress/Should_support_... (one
	// step, a t.Run of the test).
	Name   string
	Reason string
}

// SCTPSkips lists exactly the parts of the suite that need SCTP, from the
// transcription in conformance/cnp (whose steps and probes are checked
// against the upstream source there): every step (t.Run) with an SCTP probe.
// A test all of whose steps are skipped still runs its setup. Upstream stops a step at its first
// failed probe, and an SCTP probe always fails on a kernel without SCTP
// ("protocol not supported", not the TIMEOUT a denial gives), so such a step
// can pass nowhere else; its TCP and UDP probes run in the lab
// (make conformance) instead.
func SCTPSkips() ([]Skip, error) {
	tests, err := cnp.Tests()
	if err != nil {
		return nil, err
	}
	var out []Skip
	for _, t := range tests {
		names := stepNames(t)
		for i, s := range t.Steps {
			n := 0
			for _, p := range s.AllProbes() {
				if p.Protocol == corev1.ProtocolSCTP {
					n++
				}
			}
			if n > 0 {
				out = append(out, Skip{
					Name:   CNPTest + "/" + t.Name + "/" + names[i],
					Reason: fmt.Sprintf("needs SCTP (%d of its %d probes), and this kernel has no SCTP", n, len(s.AllProbes())),
				})
			}
		}
	}
	return out, nil
}

// stepNames returns the names Go's testing package gives the test's steps:
// spaces become underscores, and a repeated name gets #01, #02, ...
func stepNames(t cnp.Test) []string {
	seen := map[string]int{}
	out := make([]string, len(t.Steps))
	for i, s := range t.Steps {
		n := rewrite(s.Name)
		if k := seen[n]; k > 0 {
			out[i] = fmt.Sprintf("%s#%02d", n, k)
		} else {
			out[i] = n
		}
		seen[n]++
	}
	return out
}

// rewrite is testing's rewrite of a subtest name for the parts these names
// use: spaces to underscores.
func rewrite(s string) string { return strings.ReplaceAll(s, " ", "_") }

// SkipPattern is the -test.skip pattern that skips exactly skips: one
// alternative per skip, each element anchored and quoted, so it matches that
// name and nothing else. (Go splits a -test.skip pattern at unbracketed
// slashes and top-level bars, and skips a test only when every element
// matches; a bare "SCTP" would skip nothing, as no top-level test is so
// named.)
func SkipPattern(skips []Skip) (string, error) {
	alts := make([]string, 0, len(skips))
	for _, s := range skips {
		elems := strings.Split(s.Name, "/")
		for i, e := range elems {
			if strings.ContainsAny(e, "|") {
				return "", fmt.Errorf("skip %q: a name with | cannot be matched exactly", s.Name)
			}
			elems[i] = "^" + regexp.QuoteMeta(e) + "$"
		}
		alts = append(alts, strings.Join(elems, "/"))
	}
	return strings.Join(alts, "|"), nil
}

// CNPSteps returns, for the tests whose names match run (all when empty),
// the number of steps and of steps skips covers.
func CNPSteps(run string, skips []Skip) (total, skipped int, err error) {
	var re *regexp.Regexp
	if run != "" {
		if re, err = regexp.Compile(run); err != nil {
			return 0, 0, fmt.Errorf("cnp tests %q: %w", run, err)
		}
	}
	tests, err := cnp.Tests()
	if err != nil {
		return 0, 0, err
	}
	selected := map[string]bool{}
	for _, t := range tests {
		if re == nil || re.MatchString(t.Name) {
			selected[t.Name] = true
			total += len(t.Steps)
		}
	}
	for _, s := range skips {
		if selected[strings.Split(s.Name, "/")[1]] {
			skipped++
		}
	}
	return total, skipped, nil
}

// cnpTests is cnp.Tests, for this package's tests.
var cnpTests = cnp.Tests
