package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// FuzzDecode checks that Decode never panics and that what it returns keeps
// its promises: on error, nil objects and only *Error values; on success,
// named objects with namespaces, no duplicates, a recorded source for each,
// a snapshot that can be built, and objects that survive being written out
// as JSON and read back.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(nsShop + "---\n" + podWeb + "---\n" + npDeny))
	f.Add([]byte("apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Pod\n  metadata: {name: a}\n- apiVersion: v1\n  kind: Service\n  metadata: {name: s}\n"))
	f.Add([]byte(`{"apiVersion":"v1","kind":"PodList","items":[{"metadata":{"name":"a","namespace":"shop"}}]}` + "\n" + `{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"b"}}`))
	f.Add([]byte("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n  labels: {foo: y}\n"))
	f.Add([]byte("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p}\nspec:\n  podSelector: {matchExpressions: [{key: a, operator: In, values: [x]}]}\n  ingress:\n  - from: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}}]\n    ports: [{port: 80, endPort: 90}, {port: http, protocol: UDP}]\n"))
	f.Add(utf16LE(podWeb))
	f.Add([]byte("--- foo\n{[\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		o, err := Decode("fuzz", data)
		if err != nil {
			if o != nil {
				t.Fatalf("Decode returned objects with error %v", err)
			}
			var errs []error
			if j, ok := err.(interface{ Unwrap() []error }); ok {
				errs = j.Unwrap()
			} else {
				errs = []error{err}
			}
			for _, e := range errs {
				var me *Error
				if !errors.As(e, &me) || me.Source != "fuzz" || me.Document < 1 {
					t.Fatalf("error is not a located *Error: %#v", e)
				}
			}
			return
		}
		seen := map[objectKey]bool{}
		check := func(kind, ns, name string, namespaced bool) {
			if name == "" || (ns == "") == namespaced {
				t.Fatalf("%s %q/%q: bad name or namespace", kind, ns, name)
			}
			k := objectKey{kind, ns, name}
			if seen[k] {
				t.Fatalf("duplicate %v returned", k)
			}
			seen[k] = true
			if o.Source(kind, ns, name) == "" {
				t.Fatalf("%v has no source", k)
			}
		}
		var out bytes.Buffer
		emit := func(obj runtime.Object, apiVersion, kind string) {
			obj.GetObjectKind().SetGroupVersionKind(gvkFor(apiVersion, kind))
			b, err := json.Marshal(obj)
			if err != nil {
				t.Fatalf("marshal %s: %v", kind, err)
			}
			out.Write(b)
			out.WriteByte('\n')
		}
		for _, ns := range o.Namespaces {
			check(KindNamespace, ns.Namespace, ns.Name, false)
			emit(ns.DeepCopy(), "v1", KindNamespace)
		}
		for _, p := range o.Pods {
			check(KindPod, p.Namespace, p.Name, true)
			emit(p.DeepCopy(), "v1", KindPod)
		}
		for _, p := range o.Policies {
			check(KindNetworkPolicy, p.Namespace, p.Name, true)
			emit(p.DeepCopy(), "networking.k8s.io/v1", KindNetworkPolicy)
		}
		snap, _ := o.Snapshot()
		if len(snap.Pods) != len(o.Pods) || len(snap.Policies) != len(o.Policies) {
			t.Fatalf("snapshot has %d pods, %d policies; want %d, %d", len(snap.Pods), len(snap.Policies), len(o.Pods), len(o.Policies))
		}

		again, err := Decode("again", out.Bytes())
		if err != nil {
			t.Fatalf("decoding re-encoded objects: %v\n%s", err, out.Bytes())
		}
		if a, b := summarize(o), summarize(again); !slices.Equal(a.Namespaces, b.Namespaces) || !slices.Equal(a.Pods, b.Pods) || !slices.Equal(a.Policies, b.Policies) {
			t.Fatalf("round trip changed objects: %+v -> %+v", a, b)
		}
	})
}

func gvkFor(apiVersion, kind string) schema.GroupVersionKind {
	for _, ws := range wanted {
		for _, w := range ws {
			if w.Kind == kind && w.GroupVersion().String() == apiVersion {
				return w
			}
		}
	}
	panic("unknown kind " + kind)
}
