package explain

import (
	"bytes"
	"encoding/json"
	"fmt"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"os"
	"slices"
	"strings"
	"testing"
)

// field is one documented field of an object in docs/explain-json.md: its
// JSON kind ("string", "number", "bool", "array", "object") and whether it
// is always present.
type field struct {
	kind     string
	optional bool
}

// The shapes docs/explain-json.md documents, object by object. A field the
// doc lists is here under exactly that name; nothing else may appear.
var (
	resultShape = map[string]field{
		"from": {kind: "string"}, "to": {kind: "string"}, "port": {kind: "number"}, "protocol": {kind: "string"},
		"allowed": {kind: "bool"}, "egress": {kind: "object"}, "ingress": {kind: "object"},
		"trace": {kind: "object", optional: true}, "service": {kind: "object", optional: true},
		"hostPort": {kind: "object", optional: true}, "invalid": {kind: "array", optional: true},
	}
	invalidShape = map[string]field{
		"kind": {kind: "string", optional: true}, "name": {kind: "string", optional: true}, "field": {kind: "string", optional: true},
		"value": {kind: "string", optional: true}, "message": {kind: "string"},
	}
	directionShape = map[string]field{
		"direction": {kind: "string"}, "pod": {kind: "string"}, "isolated": {kind: "bool"},
		"policies": {kind: "array", optional: true}, "allowed": {kind: "bool"}, "reason": {kind: "string"},
		"match": {kind: "object", optional: true}, "nearestMiss": {kind: "object", optional: true},
		"tier": {kind: "string", optional: true}, "clusterRule": {kind: "object", optional: true},
		"passed": {kind: "array", optional: true}, "claimants": {kind: "array", optional: true},
	}
	matchShape = map[string]field{
		"policy": {kind: "string"}, "direction": {kind: "string"}, "rule": {kind: "number"}, "peer": {kind: "number"}, "port": {kind: "number"},
	}
	nearestMissShape = map[string]field{
		"policy": {kind: "string"}, "direction": {kind: "string"}, "rule": {kind: "number"}, "peer": {kind: "number"}, "port": {kind: "number"},
		"reason": {kind: "string"},
	}
	traceShape = map[string]field{"allowed": {kind: "bool"}, "agrees": {kind: "bool"}, "hops": {kind: "array"}}
	hopShape   = map[string]field{"node": {kind: "string"}, "hook": {kind: "string"}, "verdict": {kind: "string"}, "rules": {kind: "array"}}
	ruleShape  = map[string]field{
		"chain": {kind: "string"}, "rule": {kind: "number"}, "text": {kind: "string"},
		"comment": {kind: "string", optional: true}, "matched": {kind: "bool"},
	}
	cellShape = map[string]field{"from": {kind: "string"}, "to": {kind: "string"}, "port": {kind: "number"}, "protocol": {kind: "string"}, "allowed": {kind: "bool"}}
)

func kindOf(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case float64:
		return "number"
	case bool:
		return "bool"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}

// shapeChecker compares decoded JSON objects with shapes and remembers which
// optional fields it has seen, so a test can require that its data covers
// every documented field.
type shapeChecker struct {
	t    *testing.T
	seen map[string]bool // "shape.field"
}

func (c *shapeChecker) check(where, shape string, want map[string]field, v any) map[string]any {
	c.t.Helper()
	obj, ok := v.(map[string]any)
	if !ok {
		c.t.Fatalf("%s: got %s, want an object", where, kindOf(v))
	}
	for name, f := range want {
		got, present := obj[name]
		if !present {
			if !f.optional {
				c.t.Errorf("%s: documented field %q is missing", where, name)
			}
			continue
		}
		c.seen[shape+"."+name] = true
		if k := kindOf(got); k != f.kind {
			c.t.Errorf("%s.%s: got a %s, documented as %s", where, name, k, f.kind)
		}
	}
	for name := range obj {
		if _, ok := want[name]; !ok {
			c.t.Errorf("%s: field %q is not documented in docs/explain-json.md", where, name)
		}
	}
	return obj
}

// TestResult_JSONShape marshals results that use every documented field
// (an allowed connection with matches on both sides, a denied one with a
// nearest miss, traced and not) and compares every object with the shape
// docs/explain-json.md documents, field names exactly.
func TestResult_JSONShape(t *testing.T) {
	t.Parallel()
	snap := snapshot(t)
	var results []Result
	for _, q := range []Query{
		{Src: "shop/web", Dst: "shop/db", Trace: true},                            // allowed both ways, by matches
		{Src: "shop/web", Dst: "shop/db", Port: 9999, Trace: true},                // denied at ingress: nearest miss
		{Src: "shop/db", Dst: "shop/web", Port: 80, Protocol: "tcp", Trace: true}, // neither isolated
		{Src: "shop/web", Dst: "shop/db", Port: 5432},                             // not traced: no trace field
	} {
		rs, err := Explain(snap, q)
		if err != nil {
			t.Fatalf("Explain(%+v): %v", q, err)
		}
		results = append(results, rs...)
	}
	// ClusterNetworkPolicies and an address conflict: an Admin Pass, a
	// Baseline Deny, claimants.
	cnp := cnpSnapshot(t)
	for _, q := range []Query{
		{Src: "shop/web", Dst: "shop/db", Port: 5432, Trace: true}, // Admin Pass, then NetworkPolicy allows
		{Src: "shop/db", Dst: "shop/web", Port: 80, Trace: true},   // Baseline Deny
	} {
		rs, err := Explain(cnp, q)
		if err != nil {
			t.Fatalf("Explain(%+v): %v", q, err)
		}
		if err := Disagreement(rs); err != nil {
			t.Fatalf("Explain(%+v): %v", q, err)
		}
		results = append(results, rs...)
	}
	// Through a Service, and through a hostPort.
	rs, err := Explain(serviceSnapshot(t, false), Query{Src: "shop/web", Dst: "svc/shop/db", Port: 5432})
	if err != nil {
		t.Fatal(err)
	}
	results = append(results, rs...)
	hp := snapshot(t, func(o *objects) { o.pods[1].Spec.Containers[0].Ports[0].HostPort = 15432 })
	if errs := hp.AddClusterPolicies(nil, []*corev1.Node{{ObjectMeta: metav1.ObjectMeta{Name: "node-b"}, Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.168.0.2"}}}}}); len(errs) > 0 {
		t.Fatal(errs)
	}
	if rs, err = Explain(hp, Query{Src: "198.51.100.1", Dst: "192.168.0.2", Port: 15432}); err != nil {
		t.Fatal(err)
	}
	results = append(results, rs...)
	// Invalid input: a port out of range.
	p80800 := intstr.FromInt32(80800)
	if rs, err = Explain(invalidSnapshot(t, dbPort(networkingv1.NetworkPolicyPort{Port: &p80800})), Query{Src: "shop/web", Dst: "shop/db", Port: 5432}); err != nil {
		t.Fatal(err)
	}
	results = append(results, rs...)
	var buf bytes.Buffer
	if err := WriteJSON(&buf, results); err != nil {
		t.Fatal(err)
	}
	var decoded []any
	if err := json.Unmarshal(buf.Bytes(), &decoded); err != nil {
		t.Fatalf("WriteJSON wrote no JSON array: %v\n%s", err, buf.String())
	}
	if len(decoded) != len(results) {
		t.Fatalf("got %d objects, want %d", len(decoded), len(results))
	}
	c := &shapeChecker{t: t, seen: map[string]bool{}}
	for i, v := range decoded {
		where := fmt.Sprintf("[%d]", i)
		r := c.check(where, "result", resultShape, v)
		for _, dir := range []string{"egress", "ingress"} {
			d := c.check(where+"."+dir, "direction", directionShape, r[dir])
			if m, ok := d["match"]; ok {
				c.check(where+"."+dir+".match", "match", matchShape, m)
			}
			if m, ok := d["nearestMiss"]; ok {
				c.check(where+"."+dir+".nearestMiss", "nearestMiss", nearestMissShape, m)
			}
		}
		if inv, ok := r["invalid"].([]any); ok {
			for j, v := range inv {
				c.check(fmt.Sprintf("%s.invalid[%d]", where, j), "invalid", invalidShape, v)
			}
		}
		if tr, ok := r["trace"]; ok {
			tro := c.check(where+".trace", "trace", traceShape, tr)
			hops, _ := tro["hops"].([]any)
			for j, h := range hops {
				ho := c.check(fmt.Sprintf("%s.trace.hops[%d]", where, j), "hop", hopShape, h)
				rules, _ := ho["rules"].([]any)
				for k, rule := range rules {
					c.check(fmt.Sprintf("%s.trace.hops[%d].rules[%d]", where, j, k), "rule", ruleShape, rule)
				}
			}
		}
	}
	for shape, fields := range map[string]map[string]field{
		"result": resultShape, "direction": directionShape, "match": matchShape, "nearestMiss": nearestMissShape,
		"trace": traceShape, "hop": hopShape, "rule": ruleShape, "invalid": invalidShape,
	} {
		for name := range fields {
			if !c.seen[shape+"."+name] {
				t.Errorf("the test data never produced %s field %q: extend the queries", shape, name)
			}
		}
	}
}

// TestMatrixJSONL_Shape checks every line of WriteMatrixJSONL against the
// documented cell object.
func TestMatrixJSONL_Shape(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	if err := WriteMatrixJSONL(&buf, snapshot(t)); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	// web and db declare 1 and 2 ports; the hostNetwork pod is left out.
	if len(lines) != 3 {
		t.Fatalf("got %d lines, want 3:\n%s", len(lines), buf.String())
	}
	c := &shapeChecker{t: t, seen: map[string]bool{}}
	for i, l := range lines {
		var v any
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			t.Fatalf("line %d is not JSON: %v: %s", i+1, err, l)
		}
		c.check(fmt.Sprintf("line %d", i+1), "cell", cellShape, v)
	}
}

// TestShapes_AreTheDocumentedNames keeps the shapes above honest: every
// field name they hold appears in docs/explain-json.md as `name`.
func TestShapes_AreTheDocumentedNames(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../../docs/explain-json.md")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range []map[string]field{resultShape, directionShape, matchShape, nearestMissShape, traceShape, hopShape, ruleShape, cellShape, invalidShape} {
		for n := range s {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	for _, n := range slices.Compact(names) {
		if !bytes.Contains(doc, []byte("`"+n+"`")) && !bytes.Contains(doc, []byte(`"`+n+`"`)) {
			t.Errorf("field %q is not in docs/explain-json.md", n)
		}
	}
}
