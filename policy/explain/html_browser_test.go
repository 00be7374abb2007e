package explain

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/policyd/policyd/policy/model"
)

// chromium finds the headless browser for the browser tests. Without it the
// tests skip, except in CI (CI set), where .ci/run installs it: there a
// missing browser fails the test rather than hiding it.
func chromium(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") == "" {
			t.Skip("chromium not installed (apt-get install chromium); CI unset, so skipping the browser test")
		}
		t.Fatalf("CI=%s but chromium is missing: %v (.ci/run installs it)", os.Getenv("CI"), err)
	}
	return path
}

// runChromium runs headless chromium on the page at file with extra
// arguments and returns its standard output.
func runChromium(t *testing.T, bin, file string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	base := []string{
		"--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
		"--disable-extensions", "--disable-dev-shm-usage",
		"--user-data-dir=" + t.TempDir(),
	}
	cmd := exec.CommandContext(ctx, bin, append(append(base, args...), "file://"+file)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %v: %v\nstderr:\n%s", args, err, stderr.String())
	}
	return stdout.Bytes()
}

// TestMatrixHTML_Chromium loads the page in headless Chromium and checks
// the DOM after its script ran: the number of cells (and that the script
// counted the same), a denied cell's decider, and the legend; then takes a
// screenshot and checks it is a PNG.
func TestMatrixHTML_Chromium(t *testing.T) {
	bin := chromium(t)
	t.Parallel()
	snap := cnpSnapshot(t)
	em := model.ExplainMatrix(snap)
	var page bytes.Buffer
	if err := WriteMatrixHTML(&page, snap); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "matrix.html")
	if err := os.WriteFile(file, page.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}

	dom := runChromium(t, bin, file, "--dump-dom")
	doc, err := html.Parse(bytes.NewReader(dom))
	if err != nil {
		t.Fatalf("dumped DOM does not parse: %v", err)
	}

	ports := map[model.PortProto]bool{}
	for _, p := range em.Pods {
		for _, pp := range p.Ports {
			ports[pp] = true
		}
	}
	wantCells := len(ports) * len(em.Pods) * len(em.Pods)
	cells := findAll(doc, func(n *html.Node) bool { return n.Data == "td" && hasClass(n, "c") })
	if len(cells) != wantCells {
		t.Errorf("%d cells in the DOM, want %d (%d ports × %d × %d pods)", len(cells), wantCells, len(ports), len(em.Pods), len(em.Pods))
	}
	bodies := findAll(doc, func(n *html.Node) bool { return n.Data == "body" })
	if len(bodies) != 1 {
		t.Fatalf("%d body elements", len(bodies))
	}
	if got, ok := attr(bodies[0], "data-cells"); !ok || got != strconv.Itoa(wantCells) {
		t.Errorf("body data-cells = %q (set %v), want %d: the page's script did not run or counted otherwise", got, ok, wantCells)
	}

	// The first denied cell of the model, and its decider as the page
	// should show it on hover.
	var denied *model.ExplainedCell
	for i := range em.Cells {
		if !em.Cells[i].Allowed {
			denied = &em.Cells[i]
			break
		}
	}
	if denied == nil {
		t.Fatal("fixture has no denied cell")
	}
	want := cellTitle(*denied)
	found := false
	for _, c := range cells {
		if title, _ := attr(c, "title"); title == want {
			found = true
			if state, _ := attr(c, "data-state"); state != stateDenied || text(c) != htmlMarkDenied {
				t.Errorf("cell %q: state %q mark %q, want denied %s", want, state, text(c), htmlMarkDenied)
			}
		}
	}
	if !found {
		t.Errorf("no cell with the denied decider\n%s", want)
	}
	if !strings.Contains(want, "denied by Baseline ClusterNetworkPolicy base-deny (priority 5)") {
		t.Errorf("denied decider does not name the deciding rule:\n%s", want)
	}

	legends := findAll(doc, func(n *html.Node) bool { v, _ := attr(n, "id"); return v == "legend" })
	if len(legends) != 1 {
		t.Fatalf("%d legends, want 1", len(legends))
	}
	for _, s := range []string{htmlMarkAllowed, "allowed", htmlMarkDenied, "denied", htmlMarkNA, "not applicable"} {
		if !strings.Contains(text(legends[0]), s) {
			t.Errorf("legend lacks %q", s)
		}
	}

	png := filepath.Join(t.TempDir(), "matrix.png")
	runChromium(t, bin, file, "--hide-scrollbars", "--window-size=1400,900", "--screenshot="+png)
	b, err := os.ReadFile(png)
	if err != nil {
		t.Fatalf("no screenshot: %v", err)
	}
	if !bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")) {
		t.Errorf("screenshot is not a PNG")
	}
}
