// Package report turns the real-cluster suites' results (make e2e) into JUnit
// files and the summary line the run ends with, and says which parts of the
// network-policy-api conformance suite are skipped because this kernel has no
// SCTP.
//
// The Kubernetes e2e binary writes its own JUnit file. The network-policy-api
// suite is a Go test binary: its `go tool test2json` stream is converted here
// (FromTest2JSON), as is the lifecycle tests'.
package report

import (
	"bufio"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"
)

// Suites is a JUnit file: the root element most CI systems read.
type Suites struct {
	XMLName xml.Name `xml:"testsuites"`
	Suites  []Suite  `xml:"testsuite"`
}

// Suite is one <testsuite>.
type Suite struct {
	Name     string  `xml:"name,attr"`
	Tests    int     `xml:"tests,attr"`
	Failures int     `xml:"failures,attr"`
	Errors   int     `xml:"errors,attr"`
	Skipped  int     `xml:"skipped,attr"`
	Time     float64 `xml:"time,attr"`
	Cases    []Case  `xml:"testcase"`
}

// Case is one <testcase>. Status is Ginkgo's attribute (passed, skipped,
// failed, ...); Go tests leave it empty and are judged by Failure and Skipped.
type Case struct {
	Name      string   `xml:"name,attr"`
	Classname string   `xml:"classname,attr"`
	Status    string   `xml:"status,attr,omitempty"`
	Time      float64  `xml:"time,attr"`
	Failure   *Failure `xml:"failure,omitempty"`
	Error     *Failure `xml:"error,omitempty"`
	Skipped   *Failure `xml:"skipped,omitempty"`
	SystemOut string   `xml:"system-out,omitempty"`
}

// Failure is a <failure>, <error> or <skipped> element.
type Failure struct {
	Message string `xml:"message,attr"`
	Text    string `xml:",chardata"`
}

// Outcome is what happened to one test case. The zero value is invalid: a
// case whose outcome was never recorded counts as neither passed nor skipped.
type Outcome int

// Outcomes.
const (
	Unknown Outcome = iota
	Passed
	Failed
	Skipped
)

// Outcome says whether the case passed, failed or was skipped.
func (c Case) Outcome() Outcome {
	switch {
	case c.Failure != nil || c.Error != nil:
		return Failed
	case c.Skipped != nil:
		return Skipped
	}
	switch c.Status {
	case "", "passed":
		return Passed
	case "skipped", "pending":
		return Skipped
	default: // failed, panicked, interrupted, aborted, timedout
		return Failed
	}
}

// Cases returns the cases of every suite.
func (s *Suites) Cases() []Case {
	var out []Case
	for _, su := range s.Suites {
		out = append(out, su.Cases...)
	}
	return out
}

// ReadJUnit reads a JUnit file, whose root is either <testsuites> or a
// single <testsuite>.
func ReadJUnit(path string) (*Suites, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var s Suites
	if err := xml.Unmarshal(b, &s); err == nil {
		return &s, nil
	}
	var one Suite
	if err := xml.Unmarshal(b, &one); err != nil {
		return nil, fmt.Errorf("%s: not JUnit XML: %w", path, err)
	}
	return &Suites{Suites: []Suite{one}}, nil
}

// WriteJUnit writes s as indented XML with a header.
func WriteJUnit(w io.Writer, s *Suites) error {
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(s); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}

// event is one line of `go tool test2json`.
type event struct {
	Time    time.Time `json:"Time"`
	Action  string    `json:"Action"`
	Package string    `json:"Package"`
	Test    string    `json:"Test"`
	Elapsed float64   `json:"Elapsed"`
	Output  string    `json:"Output"`
}

// FromTest2JSON reads a `go tool test2json` stream and returns it as one
// JUnit suite named name, a case per test and subtest (named by its full
// path, e.g. TestConformanceProfiles/CNPAdminTierGress/Should_...), each
// with its own output. Every output line is also copied to echo, if not nil,
// as it arrives. A test that started but never ended (the binary crashed or
// was killed) is a failure.
func FromTest2JSON(r io.Reader, name string, echo io.Writer) (*Suites, error) {
	type state struct {
		out     strings.Builder
		outcome Outcome
		elapsed float64
	}
	tests := map[string]*state{}
	var order []string
	get := func(n string) *state {
		st, ok := tests[n]
		if !ok {
			st = &state{}
			tests[n] = st
			order = append(order, n)
		}
		return st
	}
	var pkgFailed bool
	var pkgOut strings.Builder
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var ev event
		if err := json.Unmarshal(line, &ev); err != nil {
			// Not test2json: pass it through, it belongs to no test.
			if echo != nil {
				fmt.Fprintf(echo, "%s\n", line)
			}
			pkgOut.Write(line)
			pkgOut.WriteByte('\n')
			continue
		}
		if ev.Output != "" && echo != nil {
			_, _ = io.WriteString(echo, ev.Output) // progress, best effort
		}
		if ev.Test == "" {
			pkgOut.WriteString(ev.Output)
			if ev.Action == "fail" {
				pkgFailed = true
			}
			continue
		}
		st := get(ev.Test)
		switch ev.Action {
		case "output":
			st.out.WriteString(ev.Output)
		case "pass":
			st.outcome, st.elapsed = Passed, ev.Elapsed
		case "fail":
			st.outcome, st.elapsed = Failed, ev.Elapsed
		case "skip":
			st.outcome, st.elapsed = Skipped, ev.Elapsed
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	su := Suite{Name: name}
	for _, n := range order {
		st := tests[n]
		c := Case{Name: n, Classname: name, Time: st.elapsed, SystemOut: st.out.String()}
		switch st.outcome {
		case Passed:
		case Skipped:
			c.Skipped = &Failure{Message: "skipped"}
			su.Skipped++
		case Failed:
			c.Failure = &Failure{Message: "failed", Text: st.out.String()}
			su.Failures++
		default:
			c.Failure = &Failure{Message: "did not finish", Text: st.out.String()}
			su.Failures++
		}
		su.Tests++
		su.Time += topLevelElapsed(n, st.elapsed)
		su.Cases = append(su.Cases, c)
	}
	if pkgFailed && su.Failures == 0 {
		// The binary failed outside any test (a flag error, a panic in
		// TestMain): record it, or the file would read as a pass.
		su.Cases = append(su.Cases, Case{Name: name, Classname: name,
			Error: &Failure{Message: "test binary failed outside any test", Text: pkgOut.String()}})
		su.Tests++
		su.Errors++
	}
	return &Suites{Suites: []Suite{su}}, nil
}

func topLevelElapsed(name string, elapsed float64) float64 {
	if strings.Contains(name, "/") {
		return 0
	}
	return elapsed
}

// Count is how many cases passed, failed and were skipped.
type Count struct {
	Passed, Failed, Skipped int
	// FailedNames are the failed (or never finished) cases, sorted.
	FailedNames []string
}

// Ran is the number of cases that ran.
func (c Count) Ran() int { return c.Passed + c.Failed }

func (c *Count) add(cs Case) {
	switch cs.Outcome() {
	case Passed:
		c.Passed++
	case Skipped:
		c.Skipped++
	default:
		c.Failed++
		c.FailedNames = append(c.FailedNames, cs.Name)
	}
}

// CountCases counts the cases keep accepts.
func CountCases(s *Suites, keep func(Case) bool) Count {
	var c Count
	for _, cs := range s.Cases() {
		if keep(cs) {
			c.add(cs)
		}
	}
	sort.Strings(c.FailedNames)
	return c
}

// Depth is the nesting of a Go test name: 1 for TestX, 2 for TestX/sub.
func Depth(name string) int { return strings.Count(name, "/") + 1 }
