package manifest

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode/utf16"

	"github.com/google/go-cmp/cmp"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Small documents reused by the tables.
const (
	nsShop = `apiVersion: v1
kind: Namespace
metadata:
  name: shop
  labels: {team: shop}
`
	podWeb = `apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: shop
  labels: {app: web}
spec:
  nodeName: node-1
  containers:
  - name: c
    ports: [{name: http, containerPort: 8080}]
status:
  podIP: 10.0.0.1
`
	npDeny = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: deny
  namespace: shop
spec:
  podSelector: {}
`
	svc = `apiVersion: v1
kind: ConfigMap
metadata:
  name: web
  namespace: shop
data: {port: "80"}
`
)

// summary is what a table test compares: object keys in read order and notes.
type summary struct {
	Namespaces []string
	Pods       []string
	Policies   []string
	Notes      []string
}

func summarize(o *Objects) summary {
	var s summary
	for _, ns := range o.Namespaces {
		s.Namespaces = append(s.Namespaces, ns.Name)
	}
	for _, p := range o.Pods {
		s.Pods = append(s.Pods, p.Namespace+"/"+p.Name)
	}
	for _, p := range o.Policies {
		s.Policies = append(s.Policies, p.Namespace+"/"+p.Name)
	}
	s.Notes = o.Notes
	return s
}

func utf16LE(s string) []byte {
	out := []byte{0xff, 0xfe}
	for _, u := range utf16.Encode([]rune(s)) {
		out = append(out, byte(u), byte(u>>8))
	}
	return out
}

func TestDecode_Formats(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   []byte
		want summary
	}{
		{
			name: "single YAML document",
			in:   []byte(podWeb),
			want: summary{Pods: []string{"shop/web"}},
		},
		{
			name: "multi-document YAML with leading separator, empty and comment-only documents",
			in:   []byte("# header comment\n---\n" + nsShop + "---\n---\n# only a comment\n---\n" + podWeb + "---\n" + npDeny + "...\n"),
			want: summary{Namespaces: []string{"shop"}, Pods: []string{"shop/web"}, Policies: []string{"shop/deny"}},
		},
		{
			name: "CRLF line endings",
			in:   []byte(strings.ReplaceAll(nsShop+"---\n"+npDeny, "\n", "\r\n")),
			want: summary{Namespaces: []string{"shop"}, Policies: []string{"shop/deny"}},
		},
		{
			name: "kubectl get -o yaml List with mixed kinds",
			in: []byte(`apiVersion: v1
kind: List
metadata:
  resourceVersion: ""
items:
- apiVersion: v1
  kind: Pod
  metadata: {name: a, namespace: shop, labels: {app: a}}
- apiVersion: networking.k8s.io/v1
  kind: NetworkPolicy
  metadata: {name: p, namespace: shop}
  spec: {podSelector: {}}
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: s, namespace: shop}
`),
			want: summary{
				Pods:     []string{"shop/a"},
				Policies: []string{"shop/p"},
				Notes:    []string{"in.yaml: document 1 items[2]: skipped v1 ConfigMap shop/s"},
			},
		},
		{
			name: "typed PodList whose items carry no kind",
			in:   []byte(`{"apiVersion":"v1","kind":"PodList","items":[{"metadata":{"name":"a","namespace":"shop"}},{"metadata":{"name":"b"}}]}`),
			want: summary{Pods: []string{"shop/a", "default/b"}},
		},
		{
			name: "NetworkPolicyList",
			in:   []byte(`{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicyList","items":[{"metadata":{"name":"p","namespace":"shop"},"spec":{"podSelector":{}}}]}`),
			want: summary{Policies: []string{"shop/p"}},
		},
		{
			name: "nested List",
			in:   []byte(`{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"inner"}}]}]}`),
			want: summary{Namespaces: []string{"inner"}},
		},
		{
			name: "single JSON object",
			in:   []byte(`{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"shop"}}`),
			want: summary{Namespaces: []string{"shop"}},
		},
		{
			name: "YAML flow mapping that starts like JSON",
			in:   []byte("{apiVersion: v1, kind: Namespace, metadata: {name: shop}}\n"),
			want: summary{Namespaces: []string{"shop"}},
		},
		{
			name: "stream of JSON objects",
			in: []byte(`{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"a"}}
{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"b"}}
  {"apiVersion":"v1","kind":"Namespace","metadata":{"name":"c"}}`),
			want: summary{Namespaces: []string{"a", "b", "c"}},
		},
		{
			name: "UTF-8 byte-order mark",
			in:   append([]byte{0xef, 0xbb, 0xbf}, nsShop...),
			want: summary{Namespaces: []string{"shop"}},
		},
		{
			name: "UTF-16LE with byte-order mark",
			in:   utf16LE(nsShop + "---\n" + npDeny),
			want: summary{Namespaces: []string{"shop"}, Policies: []string{"shop/deny"}},
		},
		{
			name: "empty input",
			in:   nil,
			want: summary{},
		},
		{
			name: "only comments and separators",
			in:   []byte("# nothing\n---\n---\n"),
			want: summary{},
		},
		{
			name: "pods and policies without namespace go to default",
			in:   []byte("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: np}\nspec: {podSelector: {}}\n"),
			want: summary{Pods: []string{"default/p"}, Policies: []string{"default/np"}},
		},
		{
			name: "namespace field on a Namespace is dropped like kubectl does",
			in:   []byte("apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, namespace: other}\n"),
			want: summary{Namespaces: []string{"shop"}},
		},
		{
			name: "other kinds are skipped with a note naming document and object",
			in:   []byte(nsShop + "---\n" + svc + "---\napiVersion: v1\nkind: Secret\nmetadata: {name: web, namespace: shop}\n---\napiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: view}\n"),
			want: summary{
				Namespaces: []string{"shop"},
				Notes: []string{
					"in.yaml: document 2: skipped v1 ConfigMap shop/web",
					"in.yaml: document 3: skipped v1 Secret shop/web",
					"in.yaml: document 4: skipped example.com/v1 Widget w",
					"in.yaml: document 5: skipped rbac.authorization.k8s.io/v1 ClusterRole view",
				},
			},
		},
		{
			name: "unknown field on a Pod is a note",
			in:   []byte("apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: shop}\nspec:\n  futureField: 1\n  containers: []\n"),
			want: summary{
				Pods:  []string{"shop/p"},
				Notes: []string{`in.yaml: document 1 (Pod shop/p): ignored unknown field "spec.futureField"`},
			},
		},
		{
			name: "quoted y label value is a string",
			in:   []byte("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n  labels: {foo: \"y\", bar: 'yes'}\n"),
			want: summary{Namespaces: []string{"shop"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := Decode("in.yaml", tt.in)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if diff := cmp.Diff(tt.want, summarize(got)); diff != "" {
				t.Errorf("Decode (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDecode_Values(t *testing.T) {
	t.Parallel()
	got, err := Decode("in.yaml", []byte(nsShop+"---\n"+podWeb+"---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: q\n  labels: {foo: \"y\"}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if v := got.Namespaces[1].Labels["foo"]; v != "y" {
		t.Errorf(`label foo = %q, want "y"`, v)
	}
	p := got.Pods[0]
	if p.Labels["app"] != "web" || p.Status.PodIP != "10.0.0.1" || p.Spec.Containers[0].Ports[0].Name != "http" || p.Spec.Containers[0].Ports[0].ContainerPort != 8080 {
		t.Errorf("pod decoded wrongly: %+v", p)
	}
	if s := got.Source("Pod", "shop", "web"); s != "in.yaml: document 2" {
		t.Errorf("Source(Pod shop/web) = %q", s)
	}
	if s := got.Source("Namespace", "ignored", "q"); s != "in.yaml: document 3" {
		t.Errorf("Source(Namespace q) = %q", s)
	}
	if s := got.Source("Pod", "shop", "nope"); s != "" {
		t.Errorf("Source of a missing pod = %q, want empty", s)
	}
}

func TestDecode_Errors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		// want are the errors, each as document, item and substrings of
		// the message.
		want []wantErr
	}{
		{
			name: "unquoted y label value is a YAML 1.1 boolean, rejected as kubectl does",
			in:   "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n  labels: {foo: y}\n",
			want: []wantErr{{doc: 1, has: []string{"(Namespace shop)", "cannot unmarshal bool", "metadata.labels", "quote the value"}}},
		},
		{
			name: "unquoted yes on a pod label",
			in:   nsShop + "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  labels:\n    canary: yes\n",
			want: []wantErr{{doc: 2, has: []string{"in.yaml: document 2 (Pod default/p)", "metadata.labels", "quote the value"}}},
		},
		{
			name: "unquoted n as a name is a YAML 1.1 boolean too",
			in:   "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: n}\nspec: {podSelector: {}}\n",
			want: []wantErr{{doc: 1, has: []string{"in.yaml: document 1 (NetworkPolicy): ", "metadata.name of type string", "quote the value"}}},
		},
		{
			// Read as absent, the namespace would name another object
			// (default/p).
			name: "unquoted no as a namespace names the object as decoded",
			in:   "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: no}\n",
			want: []wantErr{{doc: 1, has: []string{"in.yaml: document 1 (Pod false/p): ", "metadata.namespace of type string", "quote the value"}}},
		},
		{
			name: "unquoted number label value",
			in:   "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  labels: {version: 1.0}\n",
			want: []wantErr{{doc: 1, has: []string{"cannot unmarshal number", "metadata.labels"}}},
		},
		{
			// Lenient YAML keeps the last of two equal keys: this rule would
			// admit every source. kubectl and the API server reject it.
			name: "duplicate key in a YAML mapping",
			in:   "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: x, namespace: a}\nspec:\n  podSelector: {}\n  ingress:\n  - from:\n    - podSelector: {matchLabels: {a: b}}\n    from: []\n",
			want: []wantErr{{doc: 1, has: []string{"in.yaml: document 1: duplicate key", `line 9: key "from" already set`}}},
		},
		{
			name: "duplicate key spoils only its own document",
			in:   nsShop + "---\napiVersion: v1\nkind: Pod\nmetadata: {name: p, name: q}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: r, name: r}\n",
			want: []wantErr{{doc: 2, has: []string{"document 2: duplicate key", `key "name"`}}, {doc: 3, has: []string{"document 3: duplicate key"}}},
		},
		{
			name: "duplicate field in JSON",
			in:   `{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"x"},"spec":{"podSelector":{},"ingress":[{"from":[{"podSelector":{}}],"from":[]}]}}`,
			want: []wantErr{{doc: 1, has: []string{"duplicate field", "from"}}},
		},
		{
			name: "YAML syntax error ends the stream",
			in:   nsShop + "---\napiVersion: v1\nkind: Pod\nmetadata: {name: [\n---\n" + npDeny,
			want: []wantErr{{doc: 2, has: []string{"syntax error", "yaml"}}},
		},
		{
			// The splitter fails while ending document 1, so that is the
			// document named.
			name: "text after a document separator",
			in:   nsShop + "--- foo\n" + podWeb,
			want: []wantErr{{doc: 1, has: []string{"invalid Yaml document separator"}}},
		},
		{
			name: "JSON syntax error",
			in:   `{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"a"}}` + "\n" + `{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"b"}}` + "\n" + `{"apiVersion": "v1",`,
			want: []wantErr{{doc: 3, has: []string{"syntax error"}}},
		},
		{
			name: "missing kind",
			in:   "apiVersion: v1\nmetadata: {name: x}\n",
			want: []wantErr{{doc: 1, has: []string{"kind: Required value"}}},
		},
		{
			name: "missing apiVersion",
			in:   "kind: Pod\nmetadata: {name: x}\n",
			want: []wantErr{{doc: 1, has: []string{"(Pod x)", "apiVersion: Required value"}}},
		},
		{
			name: "scalar document",
			in:   nsShop + "---\nhello\n",
			want: []wantErr{{doc: 2, has: []string{"not an object"}}},
		},
		{
			name: "kind is not a string",
			in:   "apiVersion: v1\nkind: [Pod]\n",
			want: []wantErr{{doc: 1, has: []string{"reading apiVersion and kind"}}},
		},
		{
			name: "misspelt NetworkPolicy field is an error",
			in:   "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: foo}\nspec:\n  podSelecter: {}\n",
			want: []wantErr{{doc: 1, has: []string{"(NetworkPolicy default/foo)", `unknown field "spec.podSelecter"`}}},
		},
		{
			name: "NetworkPolicy field of the wrong type",
			in:   nsShop + "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: foo}\nspec:\n  podSelector: app=web\n",
			want: []wantErr{{doc: 2, has: []string{"in.yaml: document 2 (NetworkPolicy default/foo)", "spec.podSelector"}}},
		},
		{
			name: "NetworkPolicy port of the wrong type",
			in:   "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: foo, namespace: shop}\nspec:\n  podSelector: {}\n  ingress:\n  - ports:\n    - port: {a: 1}\n",
			want: []wantErr{{doc: 1, has: []string{"(NetworkPolicy shop/foo)", "spec.ingress"}}},
		},
		{
			name: "NetworkPolicy in an old apiVersion is an error, not a skip",
			in:   "apiVersion: extensions/v1beta1\nkind: NetworkPolicy\nmetadata: {name: old}\nspec: {podSelector: {}}\n",
			want: []wantErr{{doc: 1, has: []string{"extensions/v1beta1 NetworkPolicy is not supported", "networking.k8s.io/v1 NetworkPolicy"}}},
		},
		{
			name: "kind in the wrong case",
			in:   "apiVersion: networking.k8s.io/v1\nkind: networkpolicy\nmetadata: {name: p}\n",
			want: []wantErr{{doc: 1, has: []string{"networkpolicy is not supported"}}},
		},
		{
			name: "duplicated JSON field on a Pod",
			in:   `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","labels":{"a":"1"},"labels":{"b":"2"}}}`,
			want: []wantErr{{doc: 1, has: []string{`duplicate field "metadata.labels"`}}},
		},
		{
			name: "duplicate object names both places",
			in:   podWeb + "---\n" + nsShop + "---\n" + podWeb,
			want: []wantErr{{doc: 3, has: []string{"in.yaml: document 3 (Pod shop/web): duplicate Pod shop/web, first defined at in.yaml: document 1"}}},
		},
		{
			name: "default namespace counts for duplicates",
			in:   "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: default}\n",
			want: []wantErr{{doc: 2, has: []string{"duplicate Pod default/p"}}},
		},
		{
			name: "missing name",
			in:   "apiVersion: v1\nkind: Pod\nmetadata: {namespace: shop}\n",
			want: []wantErr{{doc: 1, has: []string{"metadata.name: Required value"}}},
		},
		{
			name: "generateName only",
			in:   "apiVersion: v1\nkind: Pod\nmetadata: {generateName: web-}\n",
			want: []wantErr{{doc: 1, has: []string{"metadata.name: Required value", "generateName is not supported"}}},
		},
		{
			name: "invalid label key",
			in:   "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n  labels: {\"bad key\": x}\n",
			want: []wantErr{{doc: 1, has: []string{"metadata.labels: Invalid value: \"bad key\""}}},
		},
		{
			name: "invalid label value",
			in:   "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  labels: {a: \"-x-\"}\n",
			want: []wantErr{{doc: 1, has: []string{"metadata.labels: Invalid value: \"-x-\""}}},
		},
		{
			name: "invalid namespace name",
			in:   "apiVersion: v1\nkind: Namespace\nmetadata: {name: Shop}\n",
			want: []wantErr{{doc: 1, has: []string{"metadata.name: Invalid value: \"Shop\""}}},
		},
		{
			name: "invalid namespace of a pod",
			in:   "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: a.b}\n",
			want: []wantErr{{doc: 1, has: []string{"metadata.namespace: Invalid value: \"a.b\""}}},
		},
		{
			name: "bad list item is named by its field path",
			in:   "apiVersion: v1\nkind: List\nitems:\n- " + strings.ReplaceAll(nsShop, "\n", "\n  ") + "\n- apiVersion: v1\n  kind: Pod\n  metadata: {name: p}\n  spec: {containers: 3}\n",
			want: []wantErr{{doc: 1, item: "items[1]", has: []string{"in.yaml: document 1 items[1] (Pod default/p)", "spec.containers"}}},
		},
		{
			name: "list items not an array",
			in:   "apiVersion: v1\nkind: List\nitems: {a: 1}\n",
			want: []wantErr{{doc: 1, has: []string{"(List)", "items:"}}},
		},
		{
			name: "lists nested too deep",
			in:   strings.Repeat(`{"apiVersion":"v1","kind":"List","items":[`, 10) + strings.Repeat("]}", 10),
			want: []wantErr{{doc: 1, item: strings.TrimSuffix(strings.Repeat("items[0].", 8), "."), has: []string{"nested more than 8 deep"}}},
		},
		{
			name: "every bad document is reported",
			in:   "apiVersion: v1\nkind: Namespace\nmetadata: {name: A}\n---\n" + podWeb + "---\napiVersion: v1\nkind: Pod\nmetadata: {name: q, labels: {x: on}}\n",
			want: []wantErr{
				{doc: 1, has: []string{"(Namespace A)"}},
				{doc: 3, has: []string{"(Pod default/q)", "metadata.labels"}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := Decode("in.yaml", []byte(tt.in))
			if err == nil {
				t.Fatalf("Decode succeeded with %+v, want an error", summarize(got))
			}
			if got != nil {
				t.Errorf("Decode returned objects with an error")
			}
			checkErrors(t, err, "in.yaml", tt.want)
		})
	}
}

type wantErr struct {
	doc  int
	item string
	has  []string
}

// checkErrors checks that err joins exactly one *Error per want, in order.
func checkErrors(t *testing.T, err error, source string, want []wantErr) {
	t.Helper()
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	if len(errs) != len(want) {
		t.Fatalf("got %d errors, want %d:\n%v", len(errs), len(want), err)
	}
	for i, e := range errs {
		var me *Error
		if !errors.As(e, &me) {
			t.Errorf("error %d is %T, want *Error: %v", i, e, e)
			continue
		}
		if me.Source != source || me.Document != want[i].doc || me.Item != want[i].item {
			t.Errorf("error %d at %q document %d item %q, want %q document %d item %q: %v",
				i, me.Source, me.Document, me.Item, source, want[i].doc, want[i].item, me)
		}
		for _, s := range want[i].has {
			if !strings.Contains(me.Error(), s) {
				t.Errorf("error %d = %q, want it to contain %q", i, me.Error(), s)
			}
		}
	}
}

// writeFiles creates files (path -> content) under a new temporary directory.
func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for p, content := range files {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestLoadPath(t *testing.T) {
	t.Parallel()
	dir := writeFiles(t, map[string]string{
		"b.yaml":             podWeb,
		"a.yml":              nsShop,
		"sub/c.json":         `{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"deny","namespace":"shop"},"spec":{"podSelector":{}}}`,
		"sub/deeper/d.yaml":  svc,
		"README.md":          "not a manifest",
		"notes.txt":          "apiVersion: v1\nkind: Namespace\nmetadata: {name: txt}\n",
		".hidden.yaml":       "apiVersion: v1\nkind: Namespace\nmetadata: {name: hidden}\n",
		".git/x.yaml":        "apiVersion: v1\nkind: Namespace\nmetadata: {name: git}\n",
		"empty/nothing.yaml": "# empty\n",
	})
	// A symlink to a manifest file is read, and one to a directory is
	// followed: to a folder elsewhere (read), to a folder of the tree (read
	// once, under its own name), to an ancestor (a cycle, ended).
	other := writeFiles(t, map[string]string{"e.yaml": "apiVersion: v1\nkind: Namespace\nmetadata: {name: linked}\n"})
	if err := os.Symlink(filepath.Join(other, "e.yaml"), filepath.Join(dir, "link.yaml")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "sub"), filepath.Join(dir, "loop.yaml")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(dir, filepath.Join(dir, "sub", "up")); err != nil {
		t.Fatal(err)
	}
	elsewhere := writeFiles(t, map[string]string{"f.yaml": "apiVersion: v1\nkind: Namespace\nmetadata: {name: viadir}\n"})
	if err := os.Symlink(elsewhere, filepath.Join(dir, "zlinked")); err != nil {
		t.Fatal(err)
	}
	got, err := LoadPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := summary{
		Namespaces: []string{"shop", "linked", "viadir"},
		Pods:       []string{"shop/web"},
		Policies:   []string{"shop/deny"},
		Notes:      []string{filepath.Join(dir, "sub/deeper/d.yaml") + ": document 1: skipped v1 ConfigMap shop/web"},
	}
	if diff := cmp.Diff(want, summarize(got)); diff != "" {
		t.Errorf("LoadPath (-want +got):\n%s", diff)
	}
	if s := got.Source("NetworkPolicy", "shop", "deny"); s != filepath.Join(dir, "sub/c.json")+": document 1" {
		t.Errorf("Source(NetworkPolicy shop/deny) = %q", s)
	}

	// A file named explicitly is read whatever its extension.
	got, err = LoadPath(filepath.Join(dir, "notes.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(summary{Namespaces: []string{"txt"}}, summarize(got)); diff != "" {
		t.Errorf("LoadPath(notes.txt) (-want +got):\n%s", diff)
	}
}

func TestLoadPath_Errors(t *testing.T) {
	t.Parallel()
	t.Run("duplicate across files names both files", func(t *testing.T) {
		t.Parallel()
		dir := writeFiles(t, map[string]string{
			"a.yaml":     nsShop + "---\n" + podWeb,
			"sub/b.yaml": podWeb,
		})
		_, err := LoadPath(dir)
		checkErrors(t, err, filepath.Join(dir, "sub/b.yaml"), []wantErr{{doc: 1, has: []string{
			"duplicate Pod shop/web, first defined at " + filepath.Join(dir, "a.yaml") + ": document 2",
		}}})
	})
	t.Run("errors in several files are all reported", func(t *testing.T) {
		t.Parallel()
		dir := writeFiles(t, map[string]string{
			"a.yaml": "kind: Pod\n",
			"b.yaml": nsShop,
			"c.yaml": "apiVersion: v1\nkind: Pod\n",
		})
		_, err := LoadPath(dir)
		msg := err.Error()
		for _, s := range []string{filepath.Join(dir, "a.yaml") + ": document 1", filepath.Join(dir, "c.yaml") + ": document 1"} {
			if !strings.Contains(msg, s) {
				t.Errorf("error %q does not mention %q", msg, s)
			}
		}
	})
	t.Run("directory without manifests", func(t *testing.T) {
		t.Parallel()
		dir := writeFiles(t, map[string]string{"README.md": "x"})
		if _, err := LoadPath(dir); err == nil || !strings.Contains(err.Error(), "no manifest files") {
			t.Errorf("LoadPath = %v, want a no-manifest-files error", err)
		}
	})
	t.Run("missing path", func(t *testing.T) {
		t.Parallel()
		_, err := LoadPath(filepath.Join(t.TempDir(), "nope.yaml"))
		if !errors.Is(err, os.ErrNotExist) {
			t.Errorf("LoadPath = %v, want ErrNotExist", err)
		}
	})
}

func TestObjects_Snapshot(t *testing.T) {
	t.Parallel()
	o, err := Decode("in.yaml", []byte(nsShop+"---\n"+podWeb+"---\n"+npDeny+"---\n"+
		"apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: bad, namespace: shop}\nspec:\n  podSelector: {}\n  ingress:\n  - from:\n    - ipBlock: {cidr: nonsense}\n"))
	if err != nil {
		t.Fatal(err)
	}
	snap, errs := o.Snapshot()
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "shop/bad") {
		t.Errorf("Snapshot errors = %v, want one about shop/bad", errs)
	}
	if p := snap.Pod("shop/web"); p == nil || p.IPs[0].String() != "10.0.0.1" {
		t.Errorf("snapshot pod shop/web = %+v", p)
	}
	if got := snap.NamespaceLabels("shop")["team"]; got != "shop" {
		t.Errorf("namespace shop label team = %q", got)
	}
	var keys []string
	for _, p := range snap.Policies {
		keys = append(keys, p.Key())
	}
	if !slices.Equal(keys, []string{"shop/bad", "shop/deny"}) {
		t.Errorf("policies = %v", keys)
	}
}

// TestDecode_ClusterNetworkPolicies: both served apiVersions decode, as
// v1beta1; a Node too; unknown fields in a CNP are errors.
func TestDecode_ClusterNetworkPolicies(t *testing.T) {
	t.Parallel()
	in := `apiVersion: policy.networking.k8s.io/v1beta1
kind: ClusterNetworkPolicy
metadata: {name: a}
spec: {tier: Admin, priority: 1, subject: {namespaces: {}}, ingress: [{action: Deny, from: [{namespaces: {}}]}]}
---
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: b, namespace: ignored}
spec: {tier: Baseline, priority: 2, subject: {pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: x}}}}}
---
apiVersion: v1
kind: Node
metadata: {name: n1, labels: {zone: a}}
status: {addresses: [{type: InternalIP, address: 10.1.0.1}]}
`
	got, err := Decode("in.yaml", []byte(in))
	require.NoError(t, err)
	require.Len(t, got.ClusterPolicies, 2)
	assert.Equal(t, "policy.networking.k8s.io/v1beta1", got.ClusterPolicies[1].APIVersion)
	assert.Equal(t, "b", got.ClusterPolicies[1].Name)
	assert.Empty(t, got.ClusterPolicies[1].Namespace)
	assert.Equal(t, "x", got.ClusterPolicies[1].Spec.Subject.Pods.PodSelector.MatchLabels["app"])
	require.Len(t, got.Nodes, 1)
	snap, errs := got.Snapshot()
	require.Empty(t, errs)
	require.Len(t, snap.ClusterPolicies, 2)
	assert.Equal(t, "a", snap.ClusterPolicies[0].Name, "Admin first")
	require.Len(t, snap.Nodes, 1)

	_, err = Decode("bad.yaml", []byte("apiVersion: policy.networking.k8s.io/v1beta1\nkind: ClusterNetworkPolicy\nmetadata: {name: a}\nspec: {tier: Admin, priority: 1, subject: {namespaces: {}}, extra: 1}\n"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), `unknown field "spec.extra"`)
	_, err = Decode("old.yaml", []byte("apiVersion: policy.networking.k8s.io/v1alpha1\nkind: ClusterNetworkPolicy\nmetadata: {name: a}\n"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "policy.networking.k8s.io/v1beta1 or policy.networking.k8s.io/v1alpha2")
}

// TestLoad_UnionOfPaths: repeated paths read the union of their objects, as
// kubectl's repeated -f does; a file reached twice is read once; stdin is
// one more source; an object defined in two different files is an error
// naming both.
func TestLoad_UnionOfPaths(t *testing.T) {
	t.Parallel()
	dir := writeFiles(t, map[string]string{
		"policies/deny.yaml": npDeny,
		"cluster/ns.yaml":    nsShop,
		"cluster/pod.yaml":   podWeb,
		"again/ns.yaml":      nsShop,
	})
	got, err := Load([]string{filepath.Join(dir, "policies"), filepath.Join(dir, "cluster"), filepath.Join(dir, "cluster", "ns.yaml")}, nil)
	require.NoError(t, err)
	assert.Equal(t, summary{Namespaces: []string{"shop"}, Pods: []string{"shop/web"}, Policies: []string{"shop/deny"}}, summarize(got))

	got, err = Load([]string{filepath.Join(dir, "policies", "deny.yaml"), "-", "-"}, strings.NewReader(nsShop+"---\n"+podWeb))
	require.NoError(t, err)
	assert.Equal(t, summary{Namespaces: []string{"shop"}, Pods: []string{"shop/web"}, Policies: []string{"shop/deny"}}, summarize(got))

	_, err = Load([]string{filepath.Join(dir, "cluster"), filepath.Join(dir, "again")}, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), filepath.Join(dir, "again", "ns.yaml"))
	assert.Contains(t, err.Error(), filepath.Join(dir, "cluster", "ns.yaml"))

	_, err = Load([]string{"-"}, nil)
	assert.Error(t, err, "stdin where there is none")
	_, err = Load(nil, nil)
	assert.Error(t, err, "no path at all")
}
