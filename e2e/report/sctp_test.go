package report

import (
	"bufio"
	"bytes"
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/policyd/policyd/conformance/cnp"
)

// upstreamTests returns the directory of the network-policy-api release's
// conformance tests in the module cache.
func upstreamTests(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-json", "sigs.k8s.io/network-policy-api").Output()
	var m struct{ Dir string }
	if err == nil {
		err = json.Unmarshal(out, &m)
	}
	if err != nil || m.Dir == "" {
		if os.Getenv("CI") != "" {
			t.Fatalf("sigs.k8s.io/network-policy-api is not in the module cache (%v); CI must check the skips against it", err)
		}
		t.Skipf("sigs.k8s.io/network-policy-api is not in the module cache (%v)", err)
	}
	return filepath.Join(m.Dir, "conformance", "tests")
}

// upstreamSCTPSteps reads the upstream tests' source: for every
// ConformanceTest, the t.Run steps whose function probes SCTP
// (kubernetes.PokeServer(..., "sctp", ...)), as Go test names.
func upstreamSCTPSteps(t *testing.T, dir string) (sctp []string, steps int) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no upstream tests in %s: %v", dir, err)
	}
	fset := token.NewFileSet()
	for _, f := range files {
		af, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(af, func(n ast.Node) bool {
			cl, ok := n.(*ast.CompositeLit)
			if !ok {
				return true
			}
			if sel, ok := cl.Type.(*ast.SelectorExpr); !ok || sel.Sel.Name != "ConformanceTest" {
				return true
			}
			var short string
			var body ast.Node
			for _, e := range cl.Elts {
				kv := e.(*ast.KeyValueExpr)
				switch kv.Key.(*ast.Ident).Name {
				case "ShortName":
					short, _ = strconv.Unquote(kv.Value.(*ast.BasicLit).Value)
				case "Test":
					body = kv.Value
				}
			}
			ast.Inspect(body, func(n ast.Node) bool {
				c, ok := n.(*ast.CallExpr)
				if !ok || !isCall(c, "t", "Run") {
					return true
				}
				steps++
				name, _ := strconv.Unquote(c.Args[0].(*ast.BasicLit).Value)
				probesSCTP := false
				ast.Inspect(c.Args[1], func(n ast.Node) bool {
					p, ok := n.(*ast.CallExpr)
					if !ok || !isCall(p, "kubernetes", "PokeServer") {
						return true
					}
					for _, a := range p.Args {
						if l, ok := a.(*ast.BasicLit); ok && l.Value == `"sctp"` {
							probesSCTP = true
						}
					}
					return true
				})
				if probesSCTP {
					sctp = append(sctp, CNPTest+"/"+short+"/"+strings.ReplaceAll(name, " ", "_"))
				}
				return false
			})
			return false
		})
	}
	slices.Sort(sctp)
	return sctp, steps
}

func isCall(c *ast.CallExpr, x, fn string) bool {
	sel, ok := c.Fun.(*ast.SelectorExpr)
	if !ok || sel.Sel.Name != fn {
		return false
	}
	id, ok := sel.X.(*ast.Ident)
	return ok && id.Name == x
}

func skipNames(t *testing.T) []string {
	t.Helper()
	skips, err := SCTPSkips()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range skips {
		names = append(names, s.Name)
	}
	slices.Sort(names)
	return names
}

// The skip list is exactly the upstream steps that probe SCTP, named as
// Go's testing package names them, read from the upstream source itself.
func TestSCTPSkips_AreExactlyTheUpstreamStepsThatProbeSCTP(t *testing.T) {
	want, steps := upstreamSCTPSteps(t, upstreamTests(t))
	got := skipNames(t)
	if !slices.Equal(got, want) {
		t.Errorf("skips differ from upstream's SCTP steps\n got: %q\nwant: %q", got, want)
	}
	total, skipped, err := CNPSteps("", nil)
	if err != nil {
		t.Fatal(err)
	}
	if total != steps || skipped != 0 {
		t.Errorf("CNPSteps = %d steps, upstream has %d", total, steps)
	}
	if len(got) == 0 || len(got) >= steps {
		t.Errorf("%d of %d steps skipped", len(got), steps)
	}
}

// helperEnv makes TestConformanceProfiles, below, stand in for the upstream
// test of that name, so that the skip pattern is tried by Go's own matcher.
const helperEnv = "POLICYD_E2E_REPORT_TREE"

// TestConformanceProfiles mimics the upstream suite's tree of tests (every
// ConformanceTest and step, by name) when run by
// TestSkipPattern_SkipsExactlyTheSkips; otherwise it does nothing.
func TestConformanceProfiles(t *testing.T) {
	if os.Getenv(helperEnv) == "" {
		return
	}
	tests, err := cnp.Tests()
	if err != nil {
		t.Fatal(err)
	}
	for _, ct := range tests {
		t.Run(ct.Name, func(t *testing.T) {
			for _, s := range ct.Steps {
				t.Run(s.Name, func(t *testing.T) { t.Log("step ran") })
			}
		})
	}
}

// The -test.skip pattern, given to a real test binary, skips the listed
// steps and nothing else.
func TestSkipPattern_SkipsExactlyTheSkips(t *testing.T) {
	skips, err := SCTPSkips()
	if err != nil {
		t.Fatal(err)
	}
	pattern, err := SkipPattern(skips)
	if err != nil {
		t.Fatal(err)
	}
	run := func(skip string) map[string]bool {
		cmd := exec.Command(os.Args[0], "-test.run", "^"+CNPTest+"$", "-test.skip", skip, "-test.v")
		cmd.Env = append(os.Environ(), helperEnv+"=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("helper: %v\n%s", err, out)
		}
		ran := map[string]bool{}
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			if n, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "=== RUN   "); ok && Depth(n) == 3 {
				ran[n] = true
			}
		}
		return ran
	}
	all := run("")
	total, _, err := CNPSteps("", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != total {
		t.Fatalf("the helper ran %d steps, want %d", len(all), total)
	}
	ran := run(pattern)
	skipped := map[string]bool{}
	for _, s := range skips {
		skipped[s.Name] = true
		if !all[s.Name] {
			t.Errorf("skip %s names no step", s.Name)
		}
	}
	for n := range all {
		if ran[n] == skipped[n] {
			t.Errorf("%s: ran %v, in the skip list %v", n, ran[n], skipped[n])
		}
	}
	// The pattern the issue warns about: a bare SCTP skips nothing.
	if bare := run("SCTP"); len(bare) != len(all) {
		t.Errorf("-test.skip SCTP skipped %d steps; Go's matcher has changed", len(all)-len(bare))
	}
}
