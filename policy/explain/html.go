package explain

import (
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"iter"
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
// self-contained HTML page (inline CSS and JS, no external references).
//
// The page grows with what it shows, not with pods² × detail. Each
// (port, protocol) gets a summary grid of namespaces, rows sources and
// columns destinations, each cell counting the connections allowed and
// denied between the two namespaces' pods. Clicking a summary cell renders
// the pod grid of that pair of namespaces; a pod cell's detail (the verdict
// and the decider of both directions, as cellTitle words it) is rendered on
// demand from compact data embedded in the page (see matrixData). Pages of
// at most autoExpandPods pods open with every pod grid rendered. A legend
// gives every mark a meaning, so the page reads without colour. The output
// depends only on snap.
func WriteMatrixHTML(w io.Writer, snap *cluster.Snapshot) error {
	pods, cells := model.ExplainMatrixCells(snap)
	return writeMatrixHTML(w, snap, pods, cells)
}

// autoExpandPods is the size up to which the page renders every pod grid
// when it opens: a few thousand cells per port, quick to build.
const autoExpandPods = 60

func writeMatrixHTML(w io.Writer, snap *cluster.Snapshot, pods []model.MatrixPod, cells iter.Seq[model.ExplainedCell]) error {
	page, err := buildMatrixPage(snap, pods, cells)
	if err != nil {
		return err
	}
	return matrixPage.Execute(w, page)
}

type htmlPage struct {
	Pods, Namespaces int
	Allowed, Denied  int
	Tables           []htmlTable
	// Data is the matrixData as JSON, with <, > and & escaped.
	Data template.JS
	// AutoExpand is autoExpandPods, for the script.
	AutoExpand int
	// SummaryBudget is summaryBudget, for the script.
	SummaryBudget int
}

type htmlTable struct {
	// Index is the port's index in matrixData.Ports; ID is the anchor, e.g.
	// "tcp-80"; Label "TCP/80".
	Index           int
	ID, Label       string
	Allowed, Denied int
}

// Summary states besides the cell states.
const (
	stateMixed = "mixed" // some pods' connections allowed, some denied
	stateNA    = "na"    // no connection between the namespaces is probed
)

// summaryBudget is how many namespace-grid cells the script renders when
// the page opens: the ports' grids, in order, while their cells fit; the
// others render when their section is opened.
const summaryBudget = 40000

// htmlMarkMixed marks a summary cell whose connections are partly allowed.
const htmlMarkMixed = "◐"

// matrixData is the compact form of the pod grids that the page's script
// renders on demand. Its size grows with the pods and with the distinct
// deciders, not with their product: a cell is a small code, a source pod's
// row on a port is run-length coded and shared by every pod whose row reads
// the same, and the deciders are templates in which the judged pods, their
// addresses and the port are markers (see templateMarkers).
type matrixData struct {
	Namespaces []string   `json:"ns"`
	Pods       []dataPod  `json:"pods"`
	Ports      []dataPort `json:"ports"`
	Texts      []string   `json:"texts"`
	// Raw lists the Texts that hold no markers and are shown as they are
	// (their original held a marker character).
	Raw   []int      `json:"raw"`
	Kinds [][3]int   `json:"kinds"`
	Grids []dataGrid `json:"grids"`
}

type dataPod struct {
	Key       string   `json:"k"`
	Name      string   `json:"n"`
	Namespace int      `json:"s"`
	Ports     []int    `json:"p"`
	Addrs     []string `json:"a"`
}

type dataPort struct {
	Label string `json:"l"`
	ID    string `json:"id"`
}

// dataGrid codes one port's grid. Its destinations are the pods that declare
// the port, in pod order. Rows[i] indexes Table with source pod i's row: runs
// of (code, length) over those destinations, leaving out pod i itself. Code
// 0 is a pair with no address family in common; code k is Kinds[k-1]:
// allowed (1 or 0), the egress text and the ingress text.
type dataGrid struct {
	Rows  []int   `json:"r"`
	Table [][]int `json:"t"`
}

// templateMarkers stand, in a Text, for the values of the cell it is shown
// for: the source's key, the destination's key, the source's first two
// addresses, the destination's first two addresses, and the port label.
const templateMarkers = "\x01\x02\x03\x04\x05\x06\x07"

// templater replaces a cell's values by templateMarkers, longest value
// first, and interns the result. The replacement is undone exactly by
// replacing each marker by its value, in any order, as long as neither the
// text nor a value holds a marker character; texts that do are kept raw.
type templater struct {
	texts []string
	raw   []int
	index map[string]int
	rawIx map[string]int
}

type cellValues struct {
	vals  [7]string
	order []int // indexes of the non-empty vals, longest first
	clean bool  // no value holds a marker
}

func newCellValues(vals [7]string) cellValues {
	cv := cellValues{vals: vals, clean: true}
	for i, v := range vals {
		if v == "" {
			continue
		}
		if strings.ContainsAny(v, templateMarkers) {
			cv.clean = false
		}
		cv.order = append(cv.order, i)
	}
	slices.SortStableFunc(cv.order, func(a, b int) int { return len(vals[b]) - len(vals[a]) })
	return cv
}

func (t *templater) intern(text string, cv *cellValues) int {
	if !cv.clean || strings.ContainsAny(text, templateMarkers) {
		if i, ok := t.rawIx[text]; ok {
			return i
		}
		t.rawIx[text] = len(t.texts)
		t.raw = append(t.raw, len(t.texts))
		t.texts = append(t.texts, text)
		return len(t.texts) - 1
	}
	for _, i := range cv.order {
		text = strings.ReplaceAll(text, cv.vals[i], templateMarkers[i:i+1])
	}
	if i, ok := t.index[text]; ok {
		return i
	}
	t.index[text] = len(t.texts)
	t.texts = append(t.texts, text)
	return len(t.texts) - 1
}

// directionText is the lines of directionDecider as one text.
func directionText(d model.Direction) string {
	return strings.Join(directionDecider(d), "\n")
}

func buildMatrixPage(snap *cluster.Snapshot, pods []model.MatrixPod, cells iter.Seq[model.ExplainedCell]) (htmlPage, error) {
	addrs := map[string][]string{}
	for _, p := range snapPods(snap) {
		var a []string
		for _, ip := range p.IPs {
			a = append(a, ip.String())
		}
		addrs[p.Key()] = a
	}

	var ports []model.PortProto
	for _, p := range pods {
		for _, pp := range p.Ports {
			if !slices.Contains(ports, pp) {
				ports = append(ports, pp)
			}
		}
	}
	slices.SortFunc(ports, model.PortProto.Compare)

	data := matrixData{Namespaces: []string{}, Texts: []string{}, Raw: []int{}, Kinds: [][3]int{}}
	var nsPods []int
	for i, p := range pods {
		if i == 0 || pods[i-1].Namespace != p.Namespace {
			data.Namespaces = append(data.Namespaces, p.Namespace)
			nsPods = append(nsPods, 0)
		}
		nsPods[len(nsPods)-1]++
		dp := dataPod{Key: p.Key, Name: p.Name, Namespace: len(data.Namespaces) - 1, Ports: []int{}, Addrs: addrs[p.Key]}
		if dp.Addrs == nil {
			dp.Addrs = []string{}
		}
		for _, pp := range p.Ports {
			dp.Ports = append(dp.Ports, slices.Index(ports, pp))
		}
		data.Pods = append(data.Pods, dp)
	}
	if data.Pods == nil {
		data.Pods = []dataPod{}
	}

	// pos[p][j] is pod j's place among port p's destinations, or -1.
	pos := make([][]int, len(ports))
	ndst := make([]int, len(ports))
	for p := range ports {
		pos[p] = make([]int, len(pods))
		for j, pod := range pods {
			pos[p][j] = -1
			if slices.Contains(pod.Ports, ports[p]) {
				pos[p][j] = ndst[p]
				ndst[p]++
			}
		}
		data.Ports = append(data.Ports, dataPort{Label: ports[p].String(), ID: strings.ToLower(ports[p].Protocol.String()) + "-" + fmt.Sprint(ports[p].Port)})
		data.Grids = append(data.Grids, dataGrid{Rows: make([]int, 0, len(pods)), Table: [][]int{}})
	}
	portIx := make(map[model.PortProto]int, len(ports))
	for i, pp := range ports {
		portIx[pp] = i
	}
	podIx := make(map[string]int, len(pods))
	for i, p := range pods {
		podIx[p.Key] = i
	}

	// counts[p] = allowed, denied on port p.
	counts := make([][2]int, len(ports))

	tpl := &templater{index: map[string]int{}, rawIx: map[string]int{}}
	kinds := map[[3]int]int{}
	rows := make([][]int, len(ports)) // the current source's codes per port
	for p := range rows {
		rows[p] = make([]int, ndst[p])
	}
	rowIx := make([]map[string]int, len(ports))
	for p := range rowIx {
		rowIx[p] = map[string]int{}
	}
	flush := func(i int) {
		for p := range ports {
			var rle []int
			for k, code := range rows[p] {
				if k == pos[p][i] {
					continue
				}
				if n := len(rle); n > 0 && rle[n-2] == code {
					rle[n-1]++
				} else {
					rle = append(rle, code, 1)
				}
				rows[p][k] = 0
			}
			if rle == nil {
				rle = []int{}
			}
			key := fmt.Sprint(rle)
			r, ok := rowIx[p][key]
			if !ok {
				r = len(data.Grids[p].Table)
				rowIx[p][key] = r
				data.Grids[p].Table = append(data.Grids[p].Table, rle)
			}
			data.Grids[p].Rows = append(data.Grids[p].Rows, r)
		}
	}

	cur := 0 // the source pod whose row is being filled
	for c := range cells {
		i, okFrom := podIx[c.From]
		j, okTo := podIx[c.To]
		p, okPort := portIx[model.PortProto{Port: c.Port, Protocol: c.Protocol}]
		if !okFrom || !okTo || !okPort || i < cur || i == j || pos[p][j] < 0 {
			return htmlPage{}, fmt.Errorf("matrix cell %s -> %s %s/%d is not one of the matrix's pods and ports, in order", c.From, c.To, c.Protocol, c.Port)
		}
		for ; cur < i; cur++ {
			flush(cur)
		}
		a, b := data.Pods[i].Addrs, data.Pods[j].Addrs
		cvp := newCellValues([7]string{pods[i].Key, pods[j].Key, at(a, 0), at(a, 1), at(b, 0), at(b, 1), data.Ports[p].Label})
		allowed := 0
		if c.Allowed {
			allowed = 1
		}
		k := [3]int{allowed, tpl.intern(directionText(c.Decision.Egress), &cvp), tpl.intern(directionText(c.Decision.Ingress), &cvp)}
		kind, ok := kinds[k]
		if !ok {
			kind = len(data.Kinds)
			kinds[k] = kind
			data.Kinds = append(data.Kinds, k)
		}
		rows[p][pos[p][j]] = kind + 1
		counts[p][1-allowed]++
	}
	for ; cur < len(pods); cur++ {
		flush(cur)
	}
	data.Texts, data.Raw = tpl.texts, tpl.raw
	if data.Texts == nil {
		data.Texts = []string{}
	}
	if data.Raw == nil {
		data.Raw = []int{}
	}
	js, err := json.Marshal(data)
	if err != nil {
		return htmlPage{}, fmt.Errorf("matrix data: %w", err)
	}

	page := htmlPage{Pods: len(pods), Namespaces: len(nsPods), Data: template.JS(js), AutoExpand: autoExpandPods, SummaryBudget: summaryBudget}
	for p := range ports {
		t := htmlTable{Index: p, ID: data.Ports[p].ID, Label: data.Ports[p].Label, Allowed: counts[p][0], Denied: counts[p][1]}
		page.Allowed += t.Allowed
		page.Denied += t.Denied
		page.Tables = append(page.Tables, t)
	}
	return page, nil
}

func snapPods(snap *cluster.Snapshot) []*cluster.Pod {
	if snap == nil {
		return nil
	}
	return snap.Pods
}

func at(ss []string, i int) string {
	if i < len(ss) {
		return ss[i]
	}
	return ""
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
:root { --allowed: #d7f5dd; --allowed-ink: #0b5d1e; --denied: #fbd5d5; --denied-ink: #9b1c1c; --mixed: #fdf0c8; --mixed-ink: #6b4e00; --na: #f1f1f1; --na-ink: #9a9a9a; --rule: #c8c8c8; --group: #333; }
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d1d1d; margin: 1rem 1.2rem; }
h1 { font-size: 1.3rem; margin: 0 0 .3rem; }
h2 { font-size: 1.1rem; margin: 0; font-family: ui-monospace, "DejaVu Sans Mono", monospace; }
.summary { color: #444; margin: 0 0 .8rem; }
nav a { margin-right: .6rem; font-family: ui-monospace, "DejaVu Sans Mono", monospace; }
.layout { display: flex; flex-wrap: wrap; gap: 1rem 1.2rem; align-items: flex-start; }
details.port { margin: 0 0 .4rem; }
details.port > summary { cursor: pointer; margin: 0 0 .4rem; }
details.port > summary h2 { display: inline; }
details.port .counts { color: #555; font-size: .9rem; }
table.matrix { border-collapse: collapse; }
table.matrix th, table.matrix td { border: 1px solid var(--rule); padding: 0; }
table.matrix th { font-weight: 600; background: #fafafa; }
th.corner { font-weight: normal; color: #666; font-size: .75rem; padding: 2px 4px; text-align: left; }
table.matrix th.ns { font-size: .8rem; font-weight: 600; color: #fff; background: var(--group); padding: 3px 4px; }
table.matrix th.ns.vertical { writing-mode: vertical-rl; transform: rotate(180deg); padding: 4px 2px; }
table.matrix th.ns.col.vertical { text-align: left; }
table.matrix th.ns.row { font-size: .75rem; padding: 2px 5px; vertical-align: middle; }
th.pod { font-weight: 500; font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: .8rem; padding: 2px 5px; white-space: nowrap; }
th.pod.col { writing-mode: vertical-rl; transform: rotate(180deg); text-align: left; padding: 6px 3px; }
th.pod.row { text-align: right; }
td.c { width: 2rem; height: 2rem; text-align: center; vertical-align: middle; font-size: 1.1rem; font-weight: 700; cursor: default; }
td.allowed { background: var(--allowed); color: var(--allowed-ink); }
td.denied { background: var(--denied); color: var(--denied-ink); }
td.self, td.unserved, td.nofamily { background: var(--na); color: var(--na-ink); font-weight: 400; }
td.s { padding: 0; }
td.s button { font: inherit; font-size: .8rem; font-weight: 600; border: 0; background: transparent; color: inherit; width: 100%; min-width: 2.4rem; padding: 4px 6px; cursor: pointer; white-space: nowrap; }
td.s.allowed { background: var(--allowed); color: var(--allowed-ink); }
td.s.denied { background: var(--denied); color: var(--denied-ink); }
td.s.mixed { background: var(--mixed); color: var(--mixed-ink); }
td.s.na { background: var(--na); color: var(--na-ink); }
div.pods h3 { font-size: .95rem; margin: .6rem 0 .3rem; }
.legend dt.mixed { background: var(--mixed); color: var(--mixed-ink); }
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
<p class="summary">{{.Pods}} pods in {{.Namespaces}} namespaces, {{len .Tables}} port/protocols: {{.Allowed}} connections allowed, {{.Denied}} denied. Each port's first grid counts the connections between namespaces (rows sources, columns destinations); click a count to show that pair's pods, and hover or click a pod cell for the policy and rule that decided each direction.</p>
<nav>{{range .Tables}}<a href="#{{.ID}}">{{.Label}}</a>{{end}}</nav>
<div id="detail" aria-live="polite">Hover or click a cell to see what decided it.</div>
<div class="layout">
{{- range .Tables}}
<details class="port" id="{{.ID}}" data-port="{{.Label}}" data-index="{{.Index}}">
<summary><h2>{{.Label}}</h2> <span class="counts">{{.Allowed}} allowed, {{.Denied}} denied</span></summary>
<div class="ns-grid"></div>
<div class="pods"></div>
</details>
{{- end}}
<aside class="legend" id="legend">
<h2>Legend</h2>
<dl>
<dt class="allowed">✓</dt><dd>allowed: the source's egress and the destination's ingress both admit the connection</dd>
<dt class="denied">✗</dt><dd>denied: egress, ingress or both refuse it</dd>
<dt class="mixed">◐</dt><dd>mixed (namespace grid only): some of the pods' connections allowed, some denied, with both counts</dd>
<dt class="na">–</dt><dd>not applicable: a pod to itself (hatched), a port the destination does not declare, or pods with no address family in common</dd>
</dl>
<p>One pair of grids per destination port/protocol. The namespace grid counts the pod-to-pod connections allowed (✓) and denied (✗) between two namespaces; click one to show the pod grid of that pair. In a pod grid, rows are sources and columns destinations, grouped by namespace (dark headers), and each cell's title names, for egress and ingress, the NetworkPolicy rule that allowed it, the deciding ClusterNetworkPolicy rule with its tier, priority and action, or the nearest miss.</p>
</aside>
</div>
<script type="application/json" id="matrix-data">{{.Data}}</script>
<script>
(function () {
  "use strict";
  var start = performance.now();
  var D = JSON.parse(document.getElementById("matrix-data").textContent);
  var pods = D.pods, ports = D.ports;
  var NA = "–", MARKS = {allowed: "✓", denied: "✗"};
  var MARKERS = "\u0001\u0002\u0003\u0004\u0005\u0006\u0007";
  var raw = {};
  D.raw.forEach(function (i) { raw[i] = true; });
  var nsPods = D.ns.map(function () { return []; });
  pods.forEach(function (p, i) { nsPods[p.s].push(i); });
  // pos[p][j]: pod j's place among port p's destinations, or -1.
  var pos = ports.map(function (pt, p) {
    var a = new Int32Array(pods.length), n = 0;
    pods.forEach(function (pd, j) { a[j] = pd.p.indexOf(p) >= 0 ? n++ : -1; });
    a.n = n;
    return a;
  });
  // row(p, i): source i's codes over port p's destinations, -1 at itself.
  function row(p, i) {
    var t = D.grids[p].t[D.grids[p].r[i]], own = pos[p][i];
    var out = new Int32Array(pos[p].n), k = 0;
    for (var x = 0; x < t.length; x += 2) {
      for (var y = 0; y < t[x + 1]; y++) {
        if (k === own) { k++; }
        out[k++] = t[x];
      }
    }
    if (own >= 0) { out[own] = -1; }
    return out;
  }
  function text(t, vals) {
    var s = D.texts[t];
    if (raw[t]) { return s; }
    for (var m = 0; m < MARKERS.length; m++) {
      if (vals[m] !== undefined && s.indexOf(MARKERS[m]) >= 0) { s = s.split(MARKERS[m]).join(vals[m]); }
    }
    return s;
  }
  // cell(p, i, j, codes): [state, mark, title] of source i to destination j
  // on port p; codes is row(p, i).
  function cell(p, i, j, codes) {
    var a = pods[i], b = pods[j], l = ports[p].l;
    if (i === j) {
      return ["self", NA, a.k + " → itself " + l + ": not applicable (a pod's traffic to itself is always allowed and not probed)"];
    }
    if (pos[p][j] < 0) {
      return ["unserved", NA, a.k + " → " + b.k + " " + l + ": not applicable (" + b.k + " does not declare " + l + " in its containerPorts)"];
    }
    var code = codes[pos[p][j]];
    if (code === 0) {
      return ["nofamily", NA, a.k + " → " + b.k + " " + l + ": not applicable (the pods have no address family in common)"];
    }
    var kd = D.kinds[code - 1];
    var vals = [a.k, b.k, a.a[0], a.a[1], b.a[0], b.a[1], l];
    var state = kd[0] ? "allowed" : "denied";
    return [state, MARKS[state], a.k + " → " + b.k + " " + l + ": " + (kd[0] ? "ALLOWED" : "DENIED") + "\n" + text(kd[1], vals) + "\n" + text(kd[2], vals)];
  }
  function el(tag, cls, txt) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (txt !== undefined) { e.textContent = txt; }
    return e;
  }
  function groups(list) {
    var out = [];
    list.forEach(function (i) {
      var g = out[out.length - 1];
      if (!g || g.ns !== pods[i].s) { out.push(g = {ns: pods[i].s, span: 0, first: i}); }
      g.span++;
    });
    return out;
  }
  // grid(p, from, to): the pod grid of port p, sources from, destinations to.
  function grid(p, from, to) {
    var table = el("table", "matrix pod-grid"), head = el("thead"), body = el("tbody");
    var cg = groups(to), rg = groups(from), firsts = {};
    cg.forEach(function (g) { firsts[g.first] = true; });
    var r1 = el("tr"), r2 = el("tr"), corner = el("th", "corner", "from ↓ to →");
    corner.colSpan = 2; corner.rowSpan = 2;
    r1.appendChild(corner);
    cg.forEach(function (g) {
      var th = el("th", "ns col first" + (D.ns[g.ns].length > 4 * g.span ? " vertical" : ""), D.ns[g.ns]);
      th.colSpan = g.span; th.scope = "colgroup";
      r1.appendChild(th);
    });
    to.forEach(function (j) {
      var th = el("th", "pod col" + (firsts[j] ? " first" : ""), pods[j].n);
      th.scope = "col"; th.title = pods[j].k;
      r2.appendChild(th);
    });
    head.appendChild(r1); head.appendChild(r2); table.appendChild(head);
    var gi = 0;
    from.forEach(function (i) {
      var tr = el("tr"), codes = row(p, i);
      if (gi < rg.length && rg[gi].first === i) {
        tr.className = "first-row";
        var th = el("th", "ns row", D.ns[rg[gi].ns]);
        th.rowSpan = rg[gi].span; th.scope = "rowgroup";
        tr.appendChild(th);
        gi++;
      }
      var rh = el("th", "pod row", pods[i].n);
      rh.scope = "row"; rh.title = pods[i].k;
      tr.appendChild(rh);
      to.forEach(function (j) {
        var c = cell(p, i, j, codes), td = el("td", "c " + c[0] + (firsts[j] ? " first" : ""), c[1]);
        td.setAttribute("data-state", c[0]);
        td.setAttribute("data-from", i);
        td.setAttribute("data-to", j);
        td.title = c[2];
        tr.appendChild(td);
      });
      body.appendChild(tr);
    });
    table.appendChild(body);
    return table;
  }
  var sections = document.querySelectorAll("details.port");
  // dsts[p]: the pods that declare port p, in pod order.
  var dsts = pos.map(function (a) {
    var out = [];
    for (var j = 0; j < a.length; j++) { if (a[j] >= 0) { out.push(j); } }
    return out;
  });
  // summary(p): the namespace grid of port p, counting each pair's verdicts.
  function summary(p) {
    var n = D.ns.length, c = new Int32Array(n * n * 2);
    for (var i = 0; i < pods.length; i++) {
      var codes = row(p, i), base = pods[i].s * n;
      for (var k = 0; k < codes.length; k++) {
        if (codes[k] > 0) { c[(base + pods[dsts[p][k]].s) * 2 + (D.kinds[codes[k] - 1][0] ? 0 : 1)]++; }
      }
    }
    var table = el("table", "matrix summary-grid"), head = el("thead"), body = el("tbody"), hr = el("tr");
    hr.appendChild(el("th", "corner", "from ↓ to →"));
    D.ns.forEach(function (name, b) {
      var th = el("th", "ns col", name);
      th.scope = "col"; th.title = nsPods[b].length + " pods";
      hr.appendChild(th);
    });
    head.appendChild(hr); table.appendChild(head);
    D.ns.forEach(function (name, a) {
      var tr = el("tr"), th = el("th", "ns row", name);
      th.scope = "row"; th.title = nsPods[a].length + " pods";
      tr.appendChild(th);
      D.ns.forEach(function (to, b) {
        var y = c[(a * n + b) * 2], x = c[(a * n + b) * 2 + 1], state, label;
        if (x + y === 0) { state = "na"; label = NA; }
        else if (x === 0) { state = "allowed"; label = "✓ " + y; }
        else if (y === 0) { state = "denied"; label = "✗ " + x; }
        else { state = "mixed"; label = "◐ " + y + "✓ " + x + "✗"; }
        var td = el("td", "s " + state), bt = el("button", "", label);
        td.setAttribute("data-state", state);
        td.title = name + " → " + to + " " + ports[p].l + ": " + y + " allowed, " + x + " denied, " +
          (nsPods[a].length * nsPods[b].length - x - y) + " not applicable, between " + nsPods[a].length + " and " + nsPods[b].length + " pods; click for the pods";
        bt.type = "button";
        bt.setAttribute("data-from", a); bt.setAttribute("data-to", b);
        td.appendChild(bt); tr.appendChild(td);
      });
      body.appendChild(tr);
    });
    table.appendChild(body);
    return table;
  }
  // open(p): render port p's namespace grid, once.
  function open(p) {
    var box = sections[p].querySelector("div.ns-grid");
    if (!box.firstChild) { box.appendChild(summary(p)); }
  }
  // expand(p, a, b): show the pod grid of namespaces a (sources) and b
  // (destinations) on port p, or of every pod when a and b are -1.
  function expand(p, a, b) {
    var box = sections[p].querySelector("div.pods");
    var from = a < 0 ? pods.map(function (_, i) { return i; }) : nsPods[a];
    var to = b < 0 ? pods.map(function (_, i) { return i; }) : nsPods[b];
    box.textContent = "";
    var h = el("h3", "", a < 0 ? "every pod" : D.ns[a] + " → " + D.ns[b]);
    box.appendChild(h);
    box.appendChild(grid(p, from, to));
    box.setAttribute("data-from", a);
    box.setAttribute("data-to", b);
    open(p);
    sections[p].open = true;
  }
  var detail = document.getElementById("detail"), pinned = null, lit = null;
  function show(td) { detail.textContent = td.getAttribute("title"); }
  // mark highlights the row and the column header of a pod cell.
  function mark(td, on) {
    var tr = td.parentElement, hr = tr.parentElement.parentElement.tHead.rows[1];
    var col = td.cellIndex - (tr.cells.length - hr.cells.length);
    tr.classList.toggle("hl", on);
    if (hr.cells[col]) { hr.cells[col].classList.toggle("hl", on); }
  }
  document.addEventListener("mouseover", function (e) {
    var td = e.target.closest && e.target.closest("td.c");
    if (lit && lit !== td) { mark(lit, false); lit = null; }
    if (!td) { return; }
    lit = td; mark(td, true);
    if (!pinned) { show(td); }
  });
  document.addEventListener("click", function (e) {
    var a = e.target.closest && e.target.closest("nav a");
    if (a) {
      var d = document.getElementById(a.getAttribute("href").slice(1));
      if (d) { d.open = true; }
      return;
    }
    var bt = e.target.closest && e.target.closest("td.s button");
    if (bt) {
      expand(+bt.closest("details.port").getAttribute("data-index"), +bt.getAttribute("data-from"), +bt.getAttribute("data-to"));
      return;
    }
    var td = e.target.closest && e.target.closest("td.c");
    if (!td) { return; }
    if (pinned) { pinned.classList.remove("pinned"); }
    pinned = pinned === td ? null : td;
    if (pinned) { pinned.classList.add("pinned"); show(td); }
  });
  // Open the ports' sections while their namespace grids fit the budget
  // (and the first one in any case); the others render when opened.
  var budget = {{.SummaryBudget}};
  for (var p = 0; p < ports.length; p++) {
    sections[p].addEventListener("toggle", function (e) {
      if (e.target.open) { open(+e.target.getAttribute("data-index")); }
    });
    budget -= D.ns.length * D.ns.length;
    if (p === 0 || budget >= 0) {
      open(p);
      sections[p].open = true;
    }
  }
  if (pods.length <= {{.AutoExpand}}) {
    for (p = 0; p < ports.length; p++) { expand(p, -1, -1); }
  }
  // A link may name what to show: #expand=P.A.B (port P, namespaces A and
  // B) or #cell=P.I.J (port P, pods I and J, into the detail box).
  var m = /^#(expand|cell)=(\d+)\.(-?\d+)\.(-?\d+)$/.exec(location.hash);
  if (m && +m[2] < ports.length) {
    if (m[1] === "expand" && +m[3] < D.ns.length && +m[4] < D.ns.length) {
      expand(+m[2], +m[3], +m[4]);
    } else if (m[1] === "cell" && +m[3] >= 0 && +m[3] < pods.length && +m[4] >= 0 && +m[4] < pods.length) {
      detail.textContent = cell(+m[2], +m[3], +m[4], row(+m[2], +m[3]))[2];
    }
  }
  document.body.setAttribute("data-cells", String(document.querySelectorAll("td.c").length));
  // When the first render was done: since navigation started, and of that
  // the script's own time.
  document.body.setAttribute("data-ready-ms", String(Math.round(performance.now())));
  document.body.setAttribute("data-script-ms", String(Math.round(performance.now() - start)));
})();
</script>
</body>
</html>
`
