package explain

import (
	"fmt"
	"html/template"
	"io"
	"slices"
	"strings"

	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/policy/model"
)

// Cell states of the HTML matrix. They are CSS classes and data-state values.
const (
	stateAllowed  = "allowed"
	stateDenied   = "denied"
	stateSelf     = "self"     // the diagonal: a pod to itself is not probed
	stateUnserved = "unserved" // the destination does not declare the port
	stateNoFamily = "nofamily" // the two pods share no address family
)

// Marks of the HTML matrix: every state has a symbol, so it reads without
// colour.
const (
	htmlMarkAllowed = "✓"
	htmlMarkDenied  = "✗"
	htmlMarkNA      = "–"
)

// WriteMatrixHTML writes the reachability matrix of snap as one
// self-contained HTML page (inline CSS and JS, no external references): one
// grid per (port, protocol), rows sources and columns destinations grouped by
// namespace, each cell allowed or denied with the decider of both directions
// in its title, the diagonal and ports the destination does not declare
// marked not applicable, and a legend. The output depends only on snap.
func WriteMatrixHTML(w io.Writer, snap *cluster.Snapshot) error {
	return matrixPage.Execute(w, buildMatrixPage(model.ExplainMatrix(snap)))
}

type htmlPage struct {
	Pods, Namespaces int
	Allowed, Denied  int
	Tables           []htmlTable
}

type htmlTable struct {
	// ID is the anchor, e.g. "tcp-80"; Label "TCP/80".
	ID, Label       string
	Allowed, Denied int
	Groups          []htmlGroup
	Cols            []htmlPod
	Rows            []htmlRow
}

type htmlGroup struct {
	Namespace string
	Span      int
	// Narrow is set when the name is too long to read across its columns:
	// its column header then runs vertically, to keep the cells square.
	Narrow bool
}

type htmlPod struct {
	Key, Name string
	// First marks the first pod of its namespace (a group border).
	First bool
}

type htmlRow struct {
	Pod htmlPod
	// Group is the namespace header spanning this and the next pods of the
	// namespace; set on the namespace's first row only.
	Group *htmlGroup
	Cells []htmlCell
}

type htmlCell struct {
	State, Mark, Title string
	First              bool
}

func buildMatrixPage(m model.ExplainedMatrix) htmlPage {
	var ports []model.PortProto
	for _, p := range m.Pods {
		for _, pp := range p.Ports {
			if !slices.Contains(ports, pp) {
				ports = append(ports, pp)
			}
		}
	}
	slices.SortFunc(ports, model.PortProto.Compare)

	type key struct {
		from, to string
		pp       model.PortProto
	}
	cells := make(map[key]model.ExplainedCell, len(m.Cells))
	for _, c := range m.Cells {
		cells[key{c.From, c.To, model.PortProto{Port: c.Port, Protocol: c.Protocol}}] = c
	}

	var groups []htmlGroup
	pods := make([]htmlPod, len(m.Pods))
	for i, p := range m.Pods {
		first := i == 0 || m.Pods[i-1].Namespace != p.Namespace
		if first {
			groups = append(groups, htmlGroup{Namespace: p.Namespace})
		}
		groups[len(groups)-1].Span++
		pods[i] = htmlPod{Key: p.Key, Name: p.Name, First: first}
	}
	for i := range groups {
		// A 2rem column holds about four characters across.
		groups[i].Narrow = len(groups[i].Namespace) > 4*groups[i].Span
	}

	page := htmlPage{Pods: len(m.Pods), Namespaces: len(groups)}
	for _, pp := range ports {
		t := htmlTable{
			ID:     strings.ToLower(pp.Protocol.String()) + "-" + fmt.Sprint(pp.Port),
			Label:  pp.String(),
			Groups: groups,
			Cols:   pods,
		}
		g := 0
		for i, from := range m.Pods {
			row := htmlRow{Pod: pods[i]}
			if pods[i].First {
				row.Group = &groups[g]
				g++
			}
			for j, to := range m.Pods {
				c := htmlCell{First: pods[j].First}
				ec, probed := cells[key{from.Key, to.Key, pp}]
				switch {
				case i == j:
					c.State, c.Mark = stateSelf, htmlMarkNA
					c.Title = fmt.Sprintf("%s → itself %s: not applicable (a pod's traffic to itself is always allowed and not probed)", from.Key, pp)
				case !slices.Contains(to.Ports, pp):
					c.State, c.Mark = stateUnserved, htmlMarkNA
					c.Title = fmt.Sprintf("%s → %s %s: not applicable (%s does not declare %s in its containerPorts)", from.Key, to.Key, pp, to.Key, pp)
				case !probed:
					c.State, c.Mark = stateNoFamily, htmlMarkNA
					c.Title = fmt.Sprintf("%s → %s %s: not applicable (the pods have no address family in common)", from.Key, to.Key, pp)
				case ec.Allowed:
					c.State, c.Mark = stateAllowed, htmlMarkAllowed
					c.Title = cellTitle(ec)
					t.Allowed++
				default:
					c.State, c.Mark = stateDenied, htmlMarkDenied
					c.Title = cellTitle(ec)
					t.Denied++
				}
				row.Cells = append(row.Cells, c)
			}
			t.Rows = append(t.Rows, row)
		}
		page.Allowed += t.Allowed
		page.Denied += t.Denied
		page.Tables = append(page.Tables, t)
	}
	return page
}

// cellTitle is a probed cell's hover text: the verdict, then the decider of
// egress and of ingress, one line each.
func cellTitle(c model.ExplainedCell) string {
	verdict := "ALLOWED"
	if !c.Allowed {
		verdict = "DENIED"
	}
	lines := []string{fmt.Sprintf("%s → %s %s/%d: %s", c.From, c.To, c.Protocol, c.Port, verdict)}
	for _, d := range []model.Direction{c.Decision.Egress, c.Decision.Ingress} {
		lines = append(lines, directionDecider(d)...)
	}
	return strings.Join(lines, "\n")
}

// directionDecider says what decided one direction: the ClusterNetworkPolicy
// rule, the NetworkPolicy rule that admitted the packet, the nearest miss, or
// why the direction is not judged.
func directionDecider(d model.Direction) []string {
	who := d.Pod
	if who == "" {
		who = "not a pod"
	}
	prefix := d.Direction + " " + who + ": "
	var lines []string
	for _, ps := range d.Passed {
		if ps.Tier == "Admin" {
			lines = append(lines, prefix+"passed to NetworkPolicies by "+describeClusterRule(ps))
		}
	}
	switch {
	case d.ClusterRule != nil:
		verb := "denied"
		if d.Allowed {
			verb = "allowed"
		}
		lines = append(lines, prefix+verb+" by "+describeClusterRule(*d.ClusterRule))
	case d.Allowed && d.Match != nil:
		lines = append(lines, prefix+"allowed by "+d.Match.String()+" (isolated by "+strings.Join(d.Policies, ", ")+")")
	case d.Allowed:
		lines = append(lines, prefix+d.Reason)
	case d.NearestMiss != nil:
		lines = append(lines, prefix+"denied: isolated by "+strings.Join(d.Policies, ", ")+"; no rule admits it; nearest miss "+d.NearestMiss.RuleRef.String()+": "+d.NearestMiss.Reason)
	default:
		lines = append(lines, prefix+"denied: "+d.Reason)
	}
	if len(d.Claimants) > 1 {
		lines = append(lines, prefix+"WARNING: pods "+strings.Join(d.Claimants, ", ")+" all claim this address; policed as the strictest of them")
	}
	return lines
}

var matrixPage = template.Must(template.New("matrix").Parse(matrixHTML))

// matrixHTML is the page. The Content-Security-Policy forbids every fetch:
// only the inline style and script run.
const matrixHTML = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>policyd reachability matrix</title>
<style>
:root { --allowed: #d7f5dd; --allowed-ink: #0b5d1e; --denied: #fbd5d5; --denied-ink: #9b1c1c; --na: #f1f1f1; --na-ink: #9a9a9a; --rule: #c8c8c8; --group: #333; }
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d1d1d; margin: 1rem 1.2rem; }
h1 { font-size: 1.3rem; margin: 0 0 .3rem; }
h2 { font-size: 1.1rem; margin: 0; font-family: ui-monospace, "DejaVu Sans Mono", monospace; }
.summary { color: #444; margin: 0 0 .8rem; }
nav a { margin-right: .6rem; font-family: ui-monospace, "DejaVu Sans Mono", monospace; }
.layout { display: flex; flex-wrap: wrap; gap: 1rem 1.2rem; align-items: flex-start; }
section.port { margin: 0 0 .4rem; }
section.port .counts { color: #555; font-size: .9rem; margin: .1rem 0 .4rem; }
table.matrix { border-collapse: collapse; }
table.matrix th, table.matrix td { border: 1px solid var(--rule); padding: 0; }
table.matrix th { font-weight: 600; background: #fafafa; }
th.corner { font-weight: normal; color: #666; font-size: .75rem; padding: 2px 4px; text-align: left; }
table.matrix th.ns { font-size: .8rem; font-weight: 600; color: #fff; background: var(--group); padding: 3px 4px; }
table.matrix th.ns.vertical { writing-mode: vertical-rl; transform: rotate(180deg); padding: 4px 2px; }
table.matrix th.ns.col.vertical { text-align: left; }
table.matrix th.ns.row { font-size: .75rem; padding: 2px 5px; vertical-align: middle; }
th.pod { font-weight: 500; font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: .8rem; padding: 2px 5px; white-space: nowrap; }
th.pod.col { writing-mode: vertical-rl; transform: rotate(180deg); text-align: left; height: 7.5rem; padding: 6px 3px; }
th.pod.row { text-align: right; }
td.c { width: 2rem; height: 2rem; text-align: center; vertical-align: middle; font-size: 1.1rem; font-weight: 700; cursor: default; }
td.allowed { background: var(--allowed); color: var(--allowed-ink); }
td.denied { background: var(--denied); color: var(--denied-ink); }
td.self, td.unserved, td.nofamily { background: var(--na); color: var(--na-ink); font-weight: 400; }
td.self { background: repeating-linear-gradient(45deg, #ececec 0 4px, #f8f8f8 4px 8px); }
.first { border-left: 2px solid var(--group) !important; }
tr.first-row > * { border-top: 2px solid var(--group) !important; }
td.c:hover, td.c.pinned { outline: 2px solid #1f5fbf; outline-offset: -2px; }
.hl { box-shadow: inset 0 0 0 999px rgba(31, 95, 191, .08); }
.legend { border: 1px solid var(--rule); padding: .5rem .8rem; max-width: 30rem; background: #fcfcfc; }
.legend h2 { font-family: inherit; font-size: 1rem; margin-bottom: .3rem; }
.legend dl { display: grid; grid-template-columns: 2rem 1fr; gap: .3rem .6rem; margin: 0; align-items: center; }
.legend dt { width: 1.6rem; height: 1.6rem; line-height: 1.6rem; text-align: center; font-weight: 700; border: 1px solid var(--rule); }
.legend dd { margin: 0; }
.legend dt.allowed { background: var(--allowed); color: var(--allowed-ink); }
.legend dt.denied { background: var(--denied); color: var(--denied-ink); }
.legend dt.na { background: var(--na); color: var(--na-ink); font-weight: 400; }
.legend p { margin: .5rem 0 0; color: #444; font-size: .9rem; }
#detail { white-space: pre-wrap; font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: .8rem; background: #fffbe6; border: 1px solid #e6d690; padding: .4rem .6rem; min-height: 2.4rem; max-width: 80rem; margin: .4rem 0 .8rem; }
</style>
</head>
<body>
<h1>policyd reachability matrix</h1>
<p class="summary">{{.Pods}} pods in {{.Namespaces}} namespaces, {{len .Tables}} port/protocols: {{.Allowed}} connections allowed, {{.Denied}} denied. Rows are sources, columns destinations; hover a cell for the policy and rule that decided each direction.</p>
<nav>{{range .Tables}}<a href="#{{.ID}}">{{.Label}}</a>{{end}}</nav>
<div id="detail" aria-live="polite">Hover or click a cell to see what decided it.</div>
<div class="layout">
{{- range .Tables}}
<section class="port" id="{{.ID}}" data-port="{{.Label}}">
<h2>{{.Label}}</h2>
<p class="counts">{{.Allowed}} allowed, {{.Denied}} denied</p>
<table class="matrix">
<thead>
<tr><th class="corner" colspan="2" rowspan="2">from ↓<br>to →</th>{{range .Groups}}<th class="ns col first{{if .Narrow}} vertical{{end}}" colspan="{{.Span}}" scope="colgroup">{{.Namespace}}</th>{{end}}</tr>
<tr>{{range .Cols}}<th class="pod col{{if .First}} first{{end}}" scope="col" title="{{.Key}}">{{.Name}}</th>{{end}}</tr>
</thead>
<tbody>
{{- range .Rows}}
<tr{{if .Group}} class="first-row"{{end}}>{{with .Group}}<th class="ns row" rowspan="{{.Span}}" scope="rowgroup">{{.Namespace}}</th>{{end}}<th class="pod row" scope="row" title="{{.Pod.Key}}">{{.Pod.Name}}</th>{{range .Cells}}<td class="c {{.State}}{{if .First}} first{{end}}" data-state="{{.State}}" title="{{.Title}}">{{.Mark}}</td>{{end}}</tr>
{{- end}}
</tbody>
</table>
</section>
{{- end}}
<aside class="legend" id="legend">
<h2>Legend</h2>
<dl>
<dt class="allowed">✓</dt><dd>allowed: the source's egress and the destination's ingress both admit the connection</dd>
<dt class="denied">✗</dt><dd>denied: egress, ingress or both refuse it</dd>
<dt class="na">–</dt><dd>not applicable: a pod to itself (hatched), a port the destination does not declare, or pods with no address family in common</dd>
</dl>
<p>One grid per destination port/protocol. Rows are sources, columns destinations, grouped by namespace (dark headers). Each cell's title names, for egress and ingress, the NetworkPolicy rule that allowed it, the deciding ClusterNetworkPolicy rule with its tier, priority and action, or the nearest miss.</p>
</aside>
</div>
<script>
(function () {
  var detail = document.getElementById("detail");
  var pinned = null;
  function show(td) {
    detail.textContent = td.getAttribute("title");
  }
  function mark(td, on) {
    var tr = td.parentElement;
    var col = td.cellIndex - (tr.cells.length - tr.parentElement.parentElement.tHead.rows[1].cells.length);
    tr.classList.toggle("hl", on);
    var head = tr.parentElement.parentElement.tHead.rows[1].cells[col];
    if (head) { head.classList.toggle("hl", on); }
  }
  document.querySelectorAll("td.c").forEach(function (td) {
    td.addEventListener("mouseenter", function () { mark(td, true); if (!pinned) { show(td); } });
    td.addEventListener("mouseleave", function () { mark(td, false); });
    td.addEventListener("click", function () {
      if (pinned) { pinned.classList.remove("pinned"); }
      pinned = pinned === td ? null : td;
      if (pinned) { pinned.classList.add("pinned"); show(td); }
    });
  });
  document.body.setAttribute("data-cells", String(document.querySelectorAll("td.c").length));
})();
</script>
</body>
</html>
`
