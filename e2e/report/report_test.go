package report

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func ev(action, test, output string) string {
	return fmt.Sprintf(`{"Action":%q,"Package":"p","Test":%q,"Output":%q,"Elapsed":0.5}`, action, test, output)
}

func TestFromTest2JSON(t *testing.T) {
	stream := strings.Join([]string{
		ev("run", "TestA", ""),
		ev("output", "TestA", "=== RUN   TestA\n"),
		ev("run", "TestA/ok", ""),
		ev("pass", "TestA/ok", ""),
		ev("run", "TestA/bad", ""),
		ev("output", "TestA/bad", "    probe failed\n"),
		ev("fail", "TestA/bad", ""),
		ev("fail", "TestA", ""),
		ev("run", "TestB", ""),
		ev("skip", "TestB", ""),
		ev("run", "TestC", ""), // never ends: the binary died
		"not json at all",
		ev("fail", "", "FAIL\n"),
	}, "\n")
	var echo bytes.Buffer
	s, err := FromTest2JSON(strings.NewReader(stream), "suite", &echo)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]Outcome{}
	for _, c := range s.Cases() {
		got[c.Name] = c.Outcome()
	}
	want := map[string]Outcome{"TestA": Failed, "TestA/ok": Passed, "TestA/bad": Failed, "TestB": Skipped, "TestC": Failed}
	for n, o := range want {
		if got[n] != o {
			t.Errorf("%s: outcome %v, want %v", n, got[n], o)
		}
	}
	if len(got) != len(want) {
		t.Errorf("cases %v, want %v", got, want)
	}
	su := s.Suites[0]
	if su.Tests != 5 || su.Failures != 3 || su.Skipped != 1 {
		t.Errorf("suite counts tests=%d failures=%d skipped=%d, want 5 3 1", su.Tests, su.Failures, su.Skipped)
	}
	if !strings.Contains(echo.String(), "probe failed") || !strings.Contains(echo.String(), "not json at all") {
		t.Errorf("echo lost output: %q", echo.String())
	}
	var buf bytes.Buffer
	if err := WriteJUnit(&buf, s); err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "j.xml")
	if err := os.WriteFile(f, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	back, err := ReadJUnit(f)
	if err != nil {
		t.Fatal(err)
	}
	if c := CountCases(back, func(Case) bool { return true }); c.Passed != 1 || c.Failed != 3 || c.Skipped != 1 {
		t.Errorf("round trip counts %+v", c)
	}
}

// A binary that fails before any test (a bad flag) is not a pass.
func TestFromTest2JSON_FailureOutsideTests(t *testing.T) {
	s, err := FromTest2JSON(strings.NewReader(ev("output", "", "flag provided but not defined\n")+"\n"+ev("fail", "", "")), "suite", nil)
	if err != nil {
		t.Fatal(err)
	}
	if c := CountCases(s, func(Case) bool { return true }); c.Failed != 1 {
		t.Errorf("counts %+v, want one failure", c)
	}
}

// fixture writes the three result files of a passing run: a Ginkgo JUnit
// file with two Netpol specs passed, one SCTP spec and one unrelated spec
// skipped; the conformance suite with every non-SCTP step passed; one
// lifecycle test passed. mutate may change the conformance stream.
func fixture(t *testing.T, mutate func(lines []string) []string) Inputs {
	t.Helper()
	dir := t.TempDir()
	netpol := `<?xml version="1.0"?>
<testsuites><testsuite name="Kubernetes e2e suite" tests="4">
<testcase name="[It] [sig-network] Netpol should allow TCP" status="passed"></testcase>
<testcase name="[It] [sig-network] Netpol should allow UDP" status="passed"></testcase>
<testcase name="[It] [sig-network] Netpol should allow SCTP [Feature:SCTPConnectivity]" status="skipped"><skipped message="skipped"/></testcase>
<testcase name="[It] [sig-storage] something else" status="skipped"><skipped message="skipped"/></testcase>
</testsuite></testsuites>`
	must(t, os.WriteFile(filepath.Join(dir, "netpol.xml"), []byte(netpol), 0o644))

	skips, err := SCTPSkips()
	must(t, err)
	skipped := map[string]bool{}
	for _, s := range skips {
		skipped[s.Name] = true
	}
	tests, err := cnpTestsForFixture()
	must(t, err)
	lines := []string{ev("run", CNPTest, "")}
	for _, ct := range tests {
		lines = append(lines, ev("run", CNPTest+"/"+ct.name, ""))
		for _, st := range ct.steps {
			n := CNPTest + "/" + ct.name + "/" + st
			if skipped[n] {
				continue
			}
			lines = append(lines, ev("run", n, ""), ev("pass", n, ""))
		}
		lines = append(lines, ev("pass", CNPTest+"/"+ct.name, ""))
	}
	lines = append(lines, ev("pass", CNPTest, ""))
	if mutate != nil {
		lines = mutate(lines)
	}
	s, err := FromTest2JSON(strings.NewReader(strings.Join(lines, "\n")), "cnp", nil)
	must(t, err)
	var buf bytes.Buffer
	must(t, WriteJUnit(&buf, s))
	must(t, os.WriteFile(filepath.Join(dir, "cnp.xml"), buf.Bytes(), 0o644))

	s, err = FromTest2JSON(strings.NewReader(ev("run", "TestRollingUpdate", "")+"\n"+ev("pass", "TestRollingUpdate", "")), "lifecycle", nil)
	must(t, err)
	buf.Reset()
	must(t, WriteJUnit(&buf, s))
	must(t, os.WriteFile(filepath.Join(dir, "lifecycle.xml"), buf.Bytes(), 0o644))

	return Inputs{
		Netpol: filepath.Join(dir, "netpol.xml"), NetpolFocus: "Netpol", NetpolSkip: "SCTPConnectivity",
		CNP: filepath.Join(dir, "cnp.xml"), Lifecycle: filepath.Join(dir, "lifecycle.xml"),
	}
}

type fixtureTest struct {
	name  string
	steps []string
}

func cnpTestsForFixture() ([]fixtureTest, error) {
	tests, err := cnpTests()
	if err != nil {
		return nil, err
	}
	var out []fixtureTest
	for _, ct := range tests {
		out = append(out, fixtureTest{name: ct.Name, steps: stepNames(ct)})
	}
	return out, nil
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestSummarize(t *testing.T) {
	replace := func(from, to string) func([]string) []string {
		return func(lines []string) []string {
			for i, l := range lines {
				if strings.Contains(l, from) {
					lines[i] = strings.Replace(l, `"Action":"pass"`, `"Action":"`+to+`"`, 1)
				}
			}
			return lines
		}
	}
	tests := []struct {
		name     string
		mutate   func([]string) []string
		tweak    func(*Inputs)
		wantOK   bool
		wantLine string
		wantFail string
	}{
		{
			name:     "all passed",
			wantOK:   true,
			wantLine: "e2e: netpol 2/2 passed, cnp-conformance 72/72 passed (41 skipped: SCTP), lifecycle 1/1 passed",
		},
		{
			name:     "a step failed",
			mutate:   replace(`CNPAdminTierIngressTCP/Should_support_an_'allow-ingress'_policy_for_TCP_protocol;_ensure_rule_ordering_is_respected"`, "fail"),
			wantLine: "cnp-conformance 71/72 passed",
			wantFail: "FAIL: cnp-conformance: TestConformanceProfiles/CNPAdminTierIngressTCP/",
		},
		{
			name: "an SCTP step ran",
			mutate: func(lines []string) []string {
				n := CNPTest + "/CNPAdminTierEgressSCTP/Should_support_an_'allow-egress'_policy_for_SCTP_protocol_at_the_specified_port"
				return append(lines[:len(lines)-1], ev("run", n, ""), ev("pass", n, ""), lines[len(lines)-1])
			},
			wantFail: "FAIL: cnp-conformance: 73 steps ran, want 72",
		},
		{
			name: "a step never ran",
			mutate: func(lines []string) []string {
				var out []string
				for _, l := range lines {
					if !strings.Contains(l, "CNPAdminTierIngressTCP/") {
						out = append(out, l)
					}
				}
				return out
			},
			wantFail: "steps ran, want 72",
		},
		{
			name:     "a netpol spec skipped for another reason",
			tweak:    func(in *Inputs) { in.NetpolSkip = "SCTPConnectivity|allow UDP" },
			wantFail: "is skipped by",
		},
		{
			name:     "too few netpol specs",
			tweak:    func(in *Inputs) { in.NetpolMin = 8 },
			wantFail: "want at least 8",
		},
		{
			name:     "a subset of the conformance suite",
			tweak:    func(in *Inputs) { in.CNPRun = "^CNPAdminTierIngressTCP$"; in.CNPMin = 5 },
			wantFail: "tests ran, want at least 5",
		},
		{
			name:     "conformance suite not run",
			tweak:    func(in *Inputs) { in.CNP = "" },
			wantFail: "FAIL: cnp-conformance: not run",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := fixture(t, tt.mutate)
			if tt.tweak != nil {
				tt.tweak(&in)
			}
			var out bytes.Buffer
			ok, err := Summarize(&out, in)
			if err != nil {
				t.Fatal(err)
			}
			if ok != tt.wantOK {
				t.Errorf("ok = %v, want %v\n%s", ok, tt.wantOK, out.String())
			}
			lines := strings.Split(strings.TrimSpace(out.String()), "\n")
			last := lines[len(lines)-1]
			if !strings.HasPrefix(last, "e2e: netpol ") {
				t.Errorf("last line %q is not the summary", last)
			}
			if tt.wantLine != "" && !strings.Contains(last, tt.wantLine) {
				t.Errorf("summary %q, want it to contain %q", last, tt.wantLine)
			}
			if tt.wantFail != "" && !strings.Contains(out.String(), tt.wantFail) {
				t.Errorf("output lacks %q:\n%s", tt.wantFail, out.String())
			}
		})
	}
}
