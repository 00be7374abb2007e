package report

import (
	"fmt"
	"io"
	"regexp"
	"strings"
)

// Inputs are the result files of one make e2e run and what was asked of
// each suite. An empty path means the suite was not run, which is a failure:
// the summary line never reads as a pass for a suite that did not run.
type Inputs struct {
	// Netpol is e2e.test's JUnit file; NetpolFocus and NetpolSkip the
	// --ginkgo.focus and --ginkgo.skip it ran with.
	Netpol, NetpolFocus, NetpolSkip string
	// NetpolMin is the fewest specs the focus must select (CI: 8).
	NetpolMin int
	// CNP is the network-policy-api suite's JUnit file (FromTest2JSON);
	// CNPRun the regular expression its ConformanceTests were selected by
	// (empty: all), CNPMin the fewest tests it must select (CI: 5).
	CNP, CNPRun string
	CNPMin      int
	// Lifecycle is the lifecycle tests' JUnit file; empty when not run
	// (it is then left out of the line).
	Lifecycle string
}

// sctpFeature marks e2e.test's SCTP connectivity specs.
var sctpFeature = regexp.MustCompile(`SCTPConnectivity`)

// Summarize writes, per suite, what failed and what was skipped for SCTP and
// why, then the one summary line:
//
//	e2e: netpol P/N passed, cnp-conformance P/N passed (S skipped: SCTP)
//
// (followed by ", lifecycle P/N passed" when the lifecycle tests ran). N
// counts what had to pass: for e2e.test every spec the focus selects except
// the SCTP ones; for the conformance suite every step (t.Run) of the
// selected tests except those needing SCTP. S counts both suites' SCTP
// skips. It returns false unless everything that had to pass did, and the
// suites ran what they were asked to.
func Summarize(w io.Writer, in Inputs) (bool, error) {
	ok := true
	fail := func(format string, a ...any) {
		ok = false
		fmt.Fprintf(w, "FAIL: "+format+"\n", a...)
	}

	// e2e.test: its JUnit file lists every spec of the binary, those the
	// focus left out as skipped.
	var np Count
	npSCTP := 0
	if in.Netpol == "" {
		fail("netpol: not run")
	} else {
		s, err := ReadJUnit(in.Netpol)
		if err != nil {
			return false, err
		}
		focus, err := regexp.Compile(in.NetpolFocus)
		if err != nil {
			return false, fmt.Errorf("netpol focus: %w", err)
		}
		skip, err := regexp.Compile(orNever(in.NetpolSkip))
		if err != nil {
			return false, fmt.Errorf("netpol skip: %w", err)
		}
		for _, c := range s.Cases() {
			if !focus.MatchString(c.Name) {
				continue
			}
			if sctpFeature.MatchString(c.Name) {
				npSCTP++
				fmt.Fprintf(w, "skipped (netpol): %s: needs SCTP, and this kernel has no SCTP\n", c.Name)
				continue
			}
			if skip.MatchString(c.Name) {
				// Only SCTP specs may be skipped; the skip pattern must
				// leave every other selected spec to run.
				fail("netpol: %s is skipped by %q but does not need SCTP", c.Name, in.NetpolSkip)
				continue
			}
			np.add(c)
		}
		for _, n := range np.FailedNames {
			fail("netpol: %s", n)
		}
		if np.Skipped > 0 {
			fail("netpol: %d selected specs did not run", np.Skipped)
		}
		if np.Ran()+np.Skipped < max(in.NetpolMin, 1) {
			fail("netpol: %d specs selected by %q, want at least %d", np.Ran()+np.Skipped, in.NetpolFocus, max(in.NetpolMin, 1))
		}
	}

	// The conformance suite: steps are depth-3 cases
	// (TestConformanceProfiles/Test/step).
	var cp Count
	cnpTotal, cnpSkipped := 0, 0
	if in.CNP == "" {
		fail("cnp-conformance: not run")
	} else {
		skips, err := SCTPSkips()
		if err != nil {
			return false, err
		}
		if cnpTotal, cnpSkipped, err = CNPSteps(in.CNPRun, skips); err != nil {
			return false, err
		}
		for _, sk := range skips {
			if selectedTest(in.CNPRun, sk.Name) {
				fmt.Fprintf(w, "skipped (cnp-conformance): %s: %s\n", sk.Name, sk.Reason)
			}
		}
		s, err := ReadJUnit(in.CNP)
		if err != nil {
			return false, err
		}
		inRun := func(c Case) bool { return Depth(c.Name) >= 2 && selectedTest(in.CNPRun, c.Name) }
		cp = CountCases(s, func(c Case) bool { return Depth(c.Name) == 3 && inRun(c) })
		// A failure above the steps (setup, a test's manifests) fails too.
		for _, c := range s.Cases() {
			if Depth(c.Name) < 3 && c.Outcome() == Failed && !hasFailedChild(s, c.Name) {
				fail("cnp-conformance: %s", c.Name)
			}
		}
		for _, n := range cp.FailedNames {
			fail("cnp-conformance: %s", n)
		}
		if want := cnpTotal - cnpSkipped; cp.Ran() != want {
			fail("cnp-conformance: %d steps ran, want %d (%d in the selected tests, %d skipped for SCTP)", cp.Ran(), want, cnpTotal, cnpSkipped)
		}
		tests := CountCases(s, func(c Case) bool { return Depth(c.Name) == 2 && inRun(c) })
		if tests.Ran() < max(in.CNPMin, 1) {
			fail("cnp-conformance: %d tests ran, want at least %d", tests.Ran(), max(in.CNPMin, 1))
		}
	}

	var lc Count
	if in.Lifecycle != "" {
		s, err := ReadJUnit(in.Lifecycle)
		if err != nil {
			return false, err
		}
		lc = CountCases(s, func(c Case) bool { return Depth(c.Name) == 1 })
		for _, n := range lc.FailedNames {
			fail("lifecycle: %s", n)
		}
		if lc.Skipped > 0 {
			fail("lifecycle: %d tests skipped", lc.Skipped)
		}
		if lc.Ran() == 0 {
			fail("lifecycle: no test ran")
		}
	}

	line := fmt.Sprintf("e2e: netpol %d/%d passed, cnp-conformance %d/%d passed (%d skipped: SCTP)",
		np.Passed, np.Ran()+np.Skipped, cp.Passed, cnpTotal-cnpSkipped, npSCTP+cnpSkipped)
	if in.Lifecycle != "" {
		line += fmt.Sprintf(", lifecycle %d/%d passed", lc.Passed, lc.Ran()+lc.Skipped)
	}
	fmt.Fprintln(w, line)
	return ok, nil
}

func orNever(re string) string {
	if re == "" {
		return `$^`
	}
	return re
}

// selectedTest reports whether the ConformanceTest that name (a depth 2 or
// 3 Go test name) belongs to is selected by run (a regular expression on
// the test's name; empty selects all).
func selectedTest(run, name string) bool {
	if run == "" {
		return true
	}
	re, err := regexp.Compile(run)
	return err == nil && re.MatchString(strings.Split(name, "/")[1])
}

func hasFailedChild(s *Suites, name string) bool {
	for _, c := range s.Cases() {
		if strings.HasPrefix(c.Name, name+"/") && c.Outcome() == Failed {
			return true
		}
	}
	return false
}
