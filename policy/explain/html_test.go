package explain

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"golang.org/x/net/html"

	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/policy/model"
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

// TestMatrixHTML_EveryCell checks that every port's grid has a cell for
// every (source, destination) pair, and that each probed cell's state and
// title agree with the model: allowed/denied with the deciders of both
// directions, the rest not applicable.
func TestMatrixHTML_EveryCell(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		snap func(testing.TB) *cluster.Snapshot
	}{
		{"networkpolicies", func(t testing.TB) *cluster.Snapshot { return snapshot(t) }},
		{"clusternetworkpolicies", cnpSnapshot},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			snap := tt.snap(t)
			em := model.ExplainMatrix(snap)
			_, doc := renderHTML(t, snap)

			want := map[string]model.ExplainedCell{}
			var ports []string
			for _, c := range em.Cells {
				want[fmt.Sprintf("%s %s %s/%d", c.From, c.To, c.Protocol, c.Port)] = c
			}
			for _, p := range em.Pods {
				for _, pp := range p.Ports {
					if !contains(ports, pp.String()) {
						ports = append(ports, pp.String())
					}
				}
			}
			sections := findAll(doc, func(n *html.Node) bool { return n.Data == "section" && hasClass(n, "port") })
			if len(sections) != len(ports) {
				t.Fatalf("%d port sections, want %d (%v)", len(sections), len(ports), ports)
			}
			seen := 0
			for _, s := range sections {
				port, _ := attr(s, "data-port")
				rows := findAll(s, func(n *html.Node) bool {
					return n.Data == "tr" && len(findAll(n, func(n *html.Node) bool { return n.Data == "td" })) > 0
				})
				if len(rows) != len(em.Pods) {
					t.Fatalf("%s: %d rows, want %d", port, len(rows), len(em.Pods))
				}
				for i, row := range rows {
					tds := findAll(row, func(n *html.Node) bool { return n.Data == "td" && hasClass(n, "c") })
					if len(tds) != len(em.Pods) {
						t.Fatalf("%s row %s: %d cells, want %d", port, em.Pods[i].Key, len(tds), len(em.Pods))
					}
					for j, td := range tds {
						from, to := em.Pods[i].Key, em.Pods[j].Key
						state, _ := attr(td, "data-state")
						title, _ := attr(td, "title")
						c, probed := want[from+" "+to+" "+port]
						switch {
						case !probed:
							if state != stateSelf && state != stateUnserved && state != stateNoFamily {
								t.Errorf("%s %s -> %s: state %q, want not applicable", port, from, to, state)
							}
							if text(td) != htmlMarkNA || !strings.Contains(title, "not applicable") {
								t.Errorf("%s %s -> %s: mark %q title %q, want %q and a reason", port, from, to, text(td), title, htmlMarkNA)
							}
							if (i == j) != (state == stateSelf) {
								t.Errorf("%s %s -> %s: state %q on/off the diagonal", port, from, to, state)
							}
						default:
							seen++
							wantState, wantMark := stateDenied, htmlMarkDenied
							if c.Allowed {
								wantState, wantMark = stateAllowed, htmlMarkAllowed
							}
							if state != wantState || text(td) != wantMark {
								t.Errorf("%s %s -> %s: state %q mark %q, want %q %q", port, from, to, state, text(td), wantState, wantMark)
							}
							if title != cellTitle(c) {
								t.Errorf("%s %s -> %s: title\n%s\nwant\n%s", port, from, to, title, cellTitle(c))
							}
							if !strings.Contains(title, "egress ") || !strings.Contains(title, "ingress ") {
								t.Errorf("%s %s -> %s: title lacks a direction: %q", port, from, to, title)
							}
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

// TestMatrixHTML_Deciders checks the title of cells decided by each kind of
// rule: a NetworkPolicy rule, a nearest miss, a ClusterNetworkPolicy rule
// with tier, priority and action, and an Admin Pass.
func TestMatrixHTML_Deciders(t *testing.T) {
	t.Parallel()
	page, _ := renderHTML(t, snapshot(t))
	for _, want := range []string{
		// web -> db TCP/5432: both directions admit.
		"shop/web → shop/db TCP/5432: ALLOWED\negress shop/web: allowed by shop/web-egress egress[0] peer 0 all ports (isolated by shop/web-egress)\ningress shop/db: allowed by shop/db-ingress ingress[0] peer 0 port 0 (isolated by shop/db-ingress)",
		// web -> db UDP/5432: ingress misses on the port.
		"shop/web → shop/db UDP/5432: DENIED",
		"ingress shop/db: denied: isolated by shop/db-ingress; no rule admits it; nearest miss shop/db-ingress ingress[0] peer 0, no port entry matched: ",
	} {
		if !strings.Contains(page, html.EscapeString(want)) {
			t.Errorf("page lacks %q", want)
		}
	}
	page, _ = renderHTML(t, cnpSnapshot(t))
	for _, want := range []string{
		`ingress shop/db: passed to NetworkPolicies by Admin ClusterNetworkPolicy admin-pass (priority 10) ingress[0] "pass-web": Pass`,
		`ingress shop/web: denied by Baseline ClusterNetworkPolicy base-deny (priority 5) ingress[0] "deny-all": Deny`,
	} {
		if !strings.Contains(page, html.EscapeString(want)) {
			t.Errorf("page lacks %q", want)
		}
	}
}

// TestMatrixHTML_EscapesReasons renders a matrix whose reason, rule name
// and pod names carry markup, and requires the page to hold them only as
// text: no element or attribute comes from them, and the parsed title is
// the original string.
func TestMatrixHTML_EscapesReasons(t *testing.T) {
	t.Parallel()
	miss := &model.Miss{RuleRef: model.RuleRef{Policy: "x/p", Direction: "ingress", Peer: model.None, Port: model.All}, Reason: hostile}
	em := model.ExplainedMatrix{
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
	var buf bytes.Buffer
	if err := matrixPage.Execute(&buf, buildMatrixPage(em)); err != nil {
		t.Fatal(err)
	}
	page := buf.String()
	for _, bad := range []string{"<script>alert", "<img", "onerror=alert(2)>"} {
		if strings.Contains(page, bad) {
			t.Errorf("page holds unescaped %q", bad)
		}
	}
	doc, err := html.Parse(strings.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(findAll(doc, func(n *html.Node) bool { return n.Data == "script" })); n != 1 {
		t.Errorf("%d script elements, want only the page's own", n)
	}
	if n := len(findAll(doc, func(n *html.Node) bool { return n.Data == "img" })); n != 0 {
		t.Errorf("%d img elements, want none", n)
	}
	denied := findAll(doc, func(n *html.Node) bool { return n.Data == "td" && hasClass(n, stateDenied) })
	if len(denied) != 1 {
		t.Fatalf("%d denied cells, want 1", len(denied))
	}
	title, _ := attr(denied[0], "title")
	if !strings.Contains(title, "nearest miss x/p ingress[0] no peer entry matched, all ports: "+hostile) {
		t.Errorf("title does not hold the reason verbatim: %q", title)
	}
	if !strings.Contains(title, fmt.Sprintf("%q: Allow", hostile)) {
		t.Errorf("title does not hold the rule name verbatim: %q", title)
	}
	rows := findAll(doc, func(n *html.Node) bool { return n.Data == "th" && hasClass(n, "row") && hasClass(n, "pod") })
	if len(rows) != 2 || text(rows[0]) != "a"+hostile {
		t.Errorf("row header does not hold the pod name verbatim")
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
