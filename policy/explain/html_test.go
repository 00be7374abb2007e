package explain

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"golang.org/x/net/html"

	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/policy/model"
	"github.com/policyd/policyd/selectors/selectorstest"
)

// hostile is a reason text that would break out of an attribute and run a
// script if it were not escaped.
const hostile = `"><script>alert(1)</script><img src=x onerror=alert(2)> & 'q'`

// renderHTML renders snap's matrix page and parses it.
func renderHTML(t *testing.T, snap *cluster.Snapshot) (string, *html.Node) {
	t.Helper()
	var buf bytes.Buffer
	if err := WriteMatrixHTML(&buf, snap); err != nil {
		t.Fatalf("WriteMatrixHTML: %v", err)
	}
	doc, err := html.Parse(strings.NewReader(buf.String()))
	if err != nil {
		t.Fatalf("page does not parse: %v", err)
	}
	return buf.String(), doc
}

// findAll returns the elements under n for which match holds, in document
// order.
func findAll(n *html.Node, match func(*html.Node) bool) []*html.Node {
	var out []*html.Node
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode && match(n) {
			out = append(out, n)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return out
}

func attr(n *html.Node, key string) (string, bool) {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val, true
		}
	}
	return "", false
}

func hasClass(n *html.Node, class string) bool {
	v, _ := attr(n, "class")
	for _, c := range strings.Fields(v) {
		if c == class {
			return true
		}
	}
	return false
}

func text(n *html.Node) string {
	var b strings.Builder
	for _, t := range findAllText(n) {
		b.WriteString(t)
	}
	return b.String()
}

func findAllText(n *html.Node) []string {
	if n.Type == html.TextNode {
		return []string{n.Data}
	}
	var out []string
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		out = append(out, findAllText(c)...)
	}
	return out
}

// pageData is the compact data of a rendered page, decoded in Go the way the
// page's script decodes it.
type pageData struct {
	matrixData
	raw map[int]bool
	pos [][]int // pos[p][j]: pod j's place among port p's destinations, or -1
}

// decodePage finds the page's matrix-data script and decodes it.
func decodePage(t testing.TB, doc *html.Node) *pageData {
	t.Helper()
	scripts := findAll(doc, func(n *html.Node) bool { id, _ := attr(n, "id"); return n.Data == "script" && id == "matrix-data" })
	if len(scripts) != 1 {
		t.Fatalf("%d matrix-data scripts, want 1", len(scripts))
	}
	d := &pageData{raw: map[int]bool{}}
	if err := json.Unmarshal([]byte(text(scripts[0])), &d.matrixData); err != nil {
		t.Fatalf("matrix data does not decode: %v", err)
	}
	for _, i := range d.Raw {
		d.raw[i] = true
	}
	for p := range d.Ports {
		pos, n := make([]int, len(d.Pods)), 0
		for j, pod := range d.Pods {
			pos[j] = -1
			if slices.Contains(pod.Ports, p) {
				pos[j] = n
				n++
			}
		}
		d.pos = append(d.pos, pos)
	}
	return d
}

// row expands source i's run-length coded row on port p: a code per
// destination of the port, -1 at i itself.
func (d *pageData) row(t testing.TB, p, i int) []int {
	t.Helper()
	n := 0
	for _, x := range d.pos[p] {
		if x >= 0 {
			n++
		}
	}
	rle := d.Grids[p].Table[d.Grids[p].Rows[i]]
	var out []int
	for x := 0; x+1 < len(rle); x += 2 {
		for range rle[x+1] {
			if len(out) == d.pos[p][i] {
				out = append(out, -1)
			}
			out = append(out, rle[x])
		}
	}
	if len(out) == d.pos[p][i] {
		out = append(out, -1)
	}
	if len(out) != n {
		t.Fatalf("port %d row %d: %d codes, want %d", p, i, len(out), n)
	}
	return out
}

func (d *pageData) text(t int, vals []string) string {
	s := d.Texts[t]
	if d.raw[t] {
		return s
	}
	for m, v := range vals {
		if v != "" {
			s = strings.ReplaceAll(s, templateMarkers[m:m+1], v)
		}
	}
	return s
}

// cell is what the page shows for source i, destination j on port p: the
// state, the mark and the title.
func (d *pageData) cell(t testing.TB, p, i, j int) (state, mark, title string) {
	a, b, l := d.Pods[i], d.Pods[j], d.Ports[p].Label
	switch {
	case i == j:
		return stateSelf, htmlMarkNA, a.Key + " → itself " + l + ": not applicable (a pod's traffic to itself is always allowed and not probed)"
	case d.pos[p][j] < 0:
		return stateUnserved, htmlMarkNA, a.Key + " → " + b.Key + " " + l + ": not applicable (" + b.Key + " does not declare " + l + " in its containerPorts)"
	}
	code := d.row(t, p, i)[d.pos[p][j]]
	if code == 0 {
		return stateNoFamily, htmlMarkNA, a.Key + " → " + b.Key + " " + l + ": not applicable (the pods have no address family in common)"
	}
	k := d.Kinds[code-1]
	vals := []string{a.Key, b.Key, at(a.Addrs, 0), at(a.Addrs, 1), at(b.Addrs, 0), at(b.Addrs, 1), l}
	state, mark, verdict := stateAllowed, htmlMarkAllowed, "ALLOWED"
	if k[0] == 0 {
		state, mark, verdict = stateDenied, htmlMarkDenied, "DENIED"
	}
	return state, mark, a.Key + " → " + b.Key + " " + l + ": " + verdict + "\n" + d.text(k[1], vals) + "\n" + d.text(k[2], vals)
}

// checkEveryCell requires the page's data to show every cell of em as the
// model answers it: each probed cell allowed or denied with cellTitle's
// deciders, every other pair not applicable.
// It returns the decoded titles.
func checkEveryCell(t *testing.T, em model.ExplainedMatrix, doc *html.Node) []string {
	t.Helper()
	d := decodePage(t, doc)
	want := map[string]model.ExplainedCell{}
	for _, c := range em.Cells {
		want[fmt.Sprintf("%s %s %s/%d", c.From, c.To, c.Protocol, c.Port)] = c
	}
	var ports []string
	for _, p := range em.Pods {
		for _, pp := range p.Ports {
			if !contains(ports, pp.String()) {
				ports = append(ports, pp.String())
			}
		}
	}
	if len(d.Ports) != len(ports) || len(d.Pods) != len(em.Pods) {
		t.Fatalf("data has %d ports and %d pods, want %d (%v) and %d", len(d.Ports), len(d.Pods), len(ports), ports, len(em.Pods))
	}
	sections := findAll(doc, func(n *html.Node) bool { return n.Data == "details" && hasClass(n, "port") })
	if len(sections) != len(ports) {
		t.Fatalf("%d port sections, want %d (%v)", len(sections), len(ports), ports)
	}
	var titles []string
	seen := 0
	for p, s := range sections {
		port, _ := attr(s, "data-port")
		if port != d.Ports[p].Label {
			t.Fatalf("section %d is %q, data says %q", p, port, d.Ports[p].Label)
		}
		for i, from := range em.Pods {
			if d.Pods[i].Key != from.Key || d.Namespaces[d.Pods[i].Namespace] != from.Namespace || d.Pods[i].Name != from.Name {
				t.Fatalf("data pod %d is %+v, want %s", i, d.Pods[i], from.Key)
			}
			for j, to := range em.Pods {
				state, mark, title := d.cell(t, p, i, j)
				c, probed := want[from.Key+" "+to.Key+" "+port]
				switch {
				case !probed:
					if state != stateSelf && state != stateUnserved && state != stateNoFamily {
						t.Errorf("%s %s -> %s: state %q, want not applicable", port, from.Key, to.Key, state)
					}
					if mark != htmlMarkNA || !strings.Contains(title, "not applicable") {
						t.Errorf("%s %s -> %s: mark %q title %q, want %q and a reason", port, from.Key, to.Key, mark, title, htmlMarkNA)
					}
					if (i == j) != (state == stateSelf) {
						t.Errorf("%s %s -> %s: state %q on/off the diagonal", port, from.Key, to.Key, state)
					}
					if state == stateUnserved && slices.ContainsFunc(to.Ports, func(pp model.PortProto) bool { return pp.String() == port }) {
						t.Errorf("%s %s -> %s: unserved, but the destination declares the port", port, from.Key, to.Key)
					}
				default:
					seen++
					wantState, wantMark := stateDenied, htmlMarkDenied
					if c.Allowed {
						wantState, wantMark = stateAllowed, htmlMarkAllowed
					}
					if state != wantState || mark != wantMark {
						t.Errorf("%s %s -> %s: state %q mark %q, want %q %q", port, from.Key, to.Key, state, mark, wantState, wantMark)
					}
					if title != cellTitle(c) {
						t.Errorf("%s %s -> %s: title\n%s\nwant\n%s", port, from.Key, to.Key, title, cellTitle(c))
					}
					if !strings.Contains(title, "egress ") || !strings.Contains(title, "ingress ") {
						t.Errorf("%s %s -> %s: title lacks a direction: %q", port, from.Key, to.Key, title)
					}
					titles = append(titles, title)
				}
			}
		}
	}
	if seen != len(em.Cells) {
		t.Errorf("found %d probed cells, want %d", seen, len(em.Cells))
	}
	if len(findAll(doc, func(n *html.Node) bool { return n.Data == "aside" && hasClass(n, "legend") })) != 1 {
		t.Errorf("no legend")
	}
	return titles
}

// TestMatrixHTML_EveryCell decodes the page's compact data in Go, as its
// script does, and checks that every port's grid has a cell for every
// (source, destination) pair whose state and title agree with the model:
// allowed/denied with the deciders of both directions, the rest not
// applicable.
func TestMatrixHTML_EveryCell(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		snap func(testing.TB) *cluster.Snapshot
	}{
		{"networkpolicies", func(t testing.TB) *cluster.Snapshot { return snapshot(t) }},
		{"clusternetworkpolicies", cnpSnapshot},
		{"synthetic", func(testing.TB) *cluster.Snapshot { return selectorstest.Synthetic(60, 12, 4, 3) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			snap := tt.snap(t)
			_, doc := renderHTML(t, snap)
			checkEveryCell(t, model.ExplainMatrix(snap), doc)
		})
	}
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// TestMatrixHTML_Deciders checks the detail of cells decided by each kind
// of rule: a NetworkPolicy rule, a nearest miss, a ClusterNetworkPolicy rule
// with tier, priority and action, and an Admin Pass.
func TestMatrixHTML_Deciders(t *testing.T) {
	t.Parallel()
	snap := snapshot(t)
	_, doc := renderHTML(t, snap)
	titles := strings.Join(checkEveryCell(t, model.ExplainMatrix(snap), doc), "\n\n")
	for _, want := range []string{
		// web -> db TCP/5432: both directions admit.
		"shop/web → shop/db TCP/5432: ALLOWED\negress shop/web: allowed by shop/web-egress egress[0] peer 0 all ports (isolated by shop/web-egress)\ningress shop/db: allowed by shop/db-ingress ingress[0] peer 0 port 0 (isolated by shop/db-ingress)",
		// web -> db UDP/5432: ingress misses on the port.
		"shop/web → shop/db UDP/5432: DENIED",
		"ingress shop/db: denied: isolated by shop/db-ingress; no rule admits it; nearest miss shop/db-ingress ingress[0] peer 0, no port entry matched: ",
	} {
		if !strings.Contains(titles, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	snap = cnpSnapshot(t)
	_, doc = renderHTML(t, snap)
	titles = strings.Join(checkEveryCell(t, model.ExplainMatrix(snap), doc), "\n\n")
	for _, want := range []string{
		`ingress shop/db: passed to NetworkPolicies by Admin ClusterNetworkPolicy admin-pass (priority 10) ingress[0] "pass-web": Pass`,
		`ingress shop/web: denied by Baseline ClusterNetworkPolicy base-deny (priority 5) ingress[0] "deny-all": Deny`,
	} {
		if !strings.Contains(titles, want) {
			t.Errorf("page lacks %q", want)
		}
	}
}

// hostileMatrix is a matrix whose reason, rule name and pod names carry
// markup, and a marker character of the page's templates.
func hostileMatrix() model.ExplainedMatrix {
	miss := &model.Miss{RuleRef: model.RuleRef{Policy: "x/p", Direction: "ingress", Peer: model.None, Port: model.All}, Reason: hostile + " \x02"}
	return model.ExplainedMatrix{
		Pods: []model.MatrixPod{
			{Key: "x/a" + hostile, Namespace: "x", Name: "a" + hostile},
			{Key: "x/b", Namespace: "x", Name: "b", Ports: []model.PortProto{{Port: 80, Protocol: cluster.ProtocolTCP}}},
		},
		Cells: []model.ExplainedCell{{
			Cell: model.Cell{From: "x/a" + hostile, To: "x/b", Port: 80, Protocol: cluster.ProtocolTCP},
			Decision: model.Decision{
				Egress: model.Direction{Direction: "egress", Pod: "x/a", Allowed: true, Tier: "Admin",
					ClusterRule: &model.ClusterRuleRef{Policy: "c", Tier: "Admin", Priority: 1, Direction: "egress", Name: hostile, Action: "Allow"}},
				Ingress: model.Direction{Direction: "ingress", Pod: "x/b", Isolated: true, Policies: []string{"x/p"}, NearestMiss: miss},
			},
		}},
	}
}

func renderMatrix(t testing.TB, em model.ExplainedMatrix) string {
	t.Helper()
	var buf bytes.Buffer
	if err := writeMatrixHTML(&buf, nil, em.Pods, slices.Values(em.Cells)); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

// TestMatrixHTML_EscapesReasons renders a matrix whose reason, rule name
// and pod names carry markup, and requires the page to hold them only as
// data: no element or attribute comes from them, and the decoded title is
// the original string, marker character included.
func TestMatrixHTML_EscapesReasons(t *testing.T) {
	t.Parallel()
	em := hostileMatrix()
	page := renderMatrix(t, em)
	for _, bad := range []string{"<script>alert", "<img", "onerror=alert(2)>", "</script><"} {
		if strings.Contains(page, bad) {
			t.Errorf("page holds unescaped %q", bad)
		}
	}
	doc, err := html.Parse(strings.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(findAll(doc, func(n *html.Node) bool { return n.Data == "script" })); n != 2 {
		t.Errorf("%d script elements, want only the page's data and code", n)
	}
	if n := len(findAll(doc, func(n *html.Node) bool { return n.Data == "img" })); n != 0 {
		t.Errorf("%d img elements, want none", n)
	}
	titles := checkEveryCell(t, em, doc)
	if len(titles) != 1 {
		t.Fatalf("%d probed cells, want 1", len(titles))
	}
	if !strings.Contains(titles[0], "nearest miss x/p ingress[0] no peer entry matched, all ports: "+hostile+" \x02") {
		t.Errorf("title does not hold the reason verbatim: %q", titles[0])
	}
	if !strings.Contains(titles[0], fmt.Sprintf("%q: Allow", hostile)) {
		t.Errorf("title does not hold the rule name verbatim: %q", titles[0])
	}
}

// TestMatrixHTML_SelfContained checks that the page references nothing
// outside itself: no URL, no src, no link element, only in-page anchors.
func TestMatrixHTML_SelfContained(t *testing.T) {
	t.Parallel()
	page, doc := renderHTML(t, cnpSnapshot(t))
	for _, bad := range []string{"http://", "https://", "src=", "<link", "@import", "url("} {
		if strings.Contains(page, bad) {
			t.Errorf("page holds %q", bad)
		}
	}
	for _, n := range findAll(doc, func(*html.Node) bool { return true }) {
		for _, a := range n.Attr {
			switch a.Key {
			case "src", "srcset", "action", "formaction", "data", "poster":
				t.Errorf("<%s %s=%q>", n.Data, a.Key, a.Val)
			case "href":
				if !strings.HasPrefix(a.Val, "#") {
					t.Errorf("<%s href=%q>: not an in-page anchor", n.Data, a.Val)
				}
			}
		}
	}
}

// TestMatrixHTML_Deterministic renders twice from separately built
// snapshots and requires the same bytes.
func TestMatrixHTML_Deterministic(t *testing.T) {
	t.Parallel()
	a, _ := renderHTML(t, cnpSnapshot(t))
	b, _ := renderHTML(t, cnpSnapshot(t))
	if a != b {
		t.Errorf("two renderings differ")
	}
}

// TestMatrixHTML_Size renders a 200-pod synthetic cluster (a page of 185 MB
// when every cell carried its detail as HTML) and requires the page to stay
// under 500 kB: it grows with the pods and the distinct deciders, not with
// pods² × detail. The browser test holds 1,000 pods to 5 MB.
func TestMatrixHTML_Size(t *testing.T) {
	t.Parallel()
	snap := selectorstest.Synthetic(200, 50, 10, 1)
	var buf bytes.Buffer
	if err := WriteMatrixHTML(&buf, snap); err != nil {
		t.Fatal(err)
	}
	t.Logf("200 pods, 50 policies, 10 namespaces: page %d bytes", buf.Len())
	if buf.Len() >= 500_000 {
		t.Errorf("page is %d bytes, want under 500000", buf.Len())
	}
}
