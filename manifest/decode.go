package manifest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"golang.org/x/text/encoding/unicode"
	"golang.org/x/text/transform"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
	npav1alpha2 "sigs.k8s.io/network-policy-api/apis/v1alpha2"
	npav1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
	sigsyaml "sigs.k8s.io/yaml"
)

// DefaultNamespace is the namespace of Pods and NetworkPolicies that name none.
const DefaultNamespace = metav1.NamespaceDefault

// maxListDepth bounds the nesting of List documents (kubectl flattens nested
// lists too; nothing real nests deeper than one or two levels).
const maxListDepth = 8

// jsonSniffSize is how far NewYAMLOrJSONDecoder looks for a leading "{" to
// decide that a stream is JSON; kubectl uses the same value.
const jsonSniffSize = 4096

// strictDecoder is the client-go scheme's universal deserializer with strict
// decoding: it decodes any built-in kind, without conversion or defaulting,
// and reports unknown and duplicated fields as a runtime strict decoding
// error alongside the decoded object.
//
// Its scheme is client-go's plus the ClusterNetworkPolicy types of
// sigs.k8s.io/network-policy-api (v1beta1 and v1alpha2).
var strictDecoder = serializer.NewCodecFactory(decodeScheme(), serializer.EnableStrict).UniversalDeserializer()

func decodeScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{scheme.AddToScheme, npav1beta1.Install, npav1alpha2.Install} {
		if err := add(s); err != nil {
			panic(fmt.Sprintf("manifest: building the decoding scheme: %v", err))
		}
	}
	return s
}

var (
	gvkNamespace      = corev1.SchemeGroupVersion.WithKind(KindNamespace)
	gvkPod            = corev1.SchemeGroupVersion.WithKind(KindPod)
	gvkNode           = corev1.SchemeGroupVersion.WithKind(KindNode)
	gvkNetworkPolicy  = networkingv1.SchemeGroupVersion.WithKind(KindNetworkPolicy)
	gvkService        = corev1.SchemeGroupVersion.WithKind(KindService)
	gvkEndpointSlice  = discoveryv1.SchemeGroupVersion.WithKind(KindEndpointSlice)
	gvkCNPv1beta1     = schema.GroupVersion(npav1beta1.GroupVersion).WithKind(KindClusterNetworkPolicy)
	gvkCNPv1alpha2    = schema.GroupVersion(npav1alpha2.GroupVersion).WithKind(KindClusterNetworkPolicy)
	clusterScopedGVKs = []schema.GroupVersionKind{gvkNamespace, gvkNode, gvkCNPv1beta1, gvkCNPv1alpha2}
)

// wanted maps each handled kind to the GroupVersionKinds accepted for it.
var wanted = map[string][]schema.GroupVersionKind{
	KindNamespace:            {gvkNamespace},
	KindPod:                  {gvkPod},
	KindNode:                 {gvkNode},
	KindNetworkPolicy:        {gvkNetworkPolicy},
	KindClusterNetworkPolicy: {gvkCNPv1beta1, gvkCNPv1alpha2},
	KindService:              {gvkService},
	KindEndpointSlice:        {gvkEndpointSlice},
	KindDeployment:           {gvkDeployment},
	KindStatefulSet:          {gvkStatefulSet},
	KindDaemonSet:            {gvkDaemonSet},
	KindReplicaSet:           {gvkReplicaSet},
	KindJob:                  {gvkJob},
	KindCronJob:              {gvkCronJob},
}

// loader accumulates objects, notes and errors over one or more streams.
type loader struct {
	out  *Objects
	errs []error
	// workloadSources is where each of out.Workloads was read.
	workloadSources []string
}

func newLoader() *loader {
	return &loader{out: &Objects{sources: map[objectKey]string{}}}
}

// stream decodes every document of one source. A syntax error ends the
// stream (the decoder cannot resynchronise reliably); any other problem with
// a document is recorded and decoding goes on with the next one.
//
// YAML documents are converted to JSON strictly: a key repeated in one
// mapping is an error naming the line and the key, as kubectl and the API
// server make it. The lenient conversion keeps the last value silently, so
// `from: [podSelector…]` followed by `from: []` would become a rule that
// admits every source. JSON streams keep their raw bytes, in which the
// strict deserializer finds repeated fields itself.
func (l *loader) stream(source string, data []byte) {
	// kubectl's FileVisitor: honour a UTF-16 BOM, drop a UTF-8 one.
	text, err := io.ReadAll(transform.NewReader(bytes.NewReader(data), unicode.BOMOverride(unicode.UTF8.NewDecoder())))
	if err != nil {
		l.errs = append(l.errs, &Error{Source: source, Document: 1, Err: fmt.Errorf("reading: %w", err)})
		return
	}
	next := yamlDocuments(bytes.NewReader(text))
	if yaml.IsJSONBuffer(text[:min(len(text), jsonSniffSize)]) {
		next = jsonDocuments(bytes.NewReader(text))
	}
	doc := 0
	for {
		raw, err := next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return
			}
			var dup *duplicateKeyError
			if errors.As(err, &dup) {
				doc++
				l.errs = append(l.errs, &Error{Source: source, Document: doc, Err: dup})
				continue
			}
			l.errs = append(l.errs, &Error{Source: source, Document: doc + 1, Err: fmt.Errorf("syntax error: %w", err)})
			return
		}
		raw = bytes.TrimSpace(raw)
		if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
			continue
		}
		doc++
		l.object(location{source: source, doc: doc}, raw, schema.GroupVersionKind{}, 0)
	}
}

// jsonDocuments returns a function yielding each JSON value of a stream.
func jsonDocuments(r io.Reader) func() ([]byte, error) {
	dec := yaml.NewYAMLOrJSONDecoder(r, jsonSniffSize)
	return func() ([]byte, error) {
		var ext runtime.RawExtension
		err := dec.Decode(&ext)
		return ext.Raw, err
	}
}

// yamlDocuments returns a function yielding each YAML document of a stream
// as JSON, converted strictly.
func yamlDocuments(r io.Reader) func() ([]byte, error) {
	yr := yaml.NewYAMLReader(bufio.NewReader(r))
	return func() ([]byte, error) {
		doc, err := yr.Read()
		if err != nil {
			return nil, err
		}
		out, err := sigsyaml.YAMLToJSONStrict(doc)
		if err != nil {
			if strings.Contains(err.Error(), "already set in map") {
				return nil, &duplicateKeyError{err: err}
			}
			return nil, err
		}
		return out, nil
	}
}

// duplicateKeyError is a YAML mapping that repeats a key. It spoils only its
// own document.
type duplicateKeyError struct{ err error }

func (e *duplicateKeyError) Error() string {
	msg := e.err.Error()
	if i := strings.LastIndex(msg, "line "); i >= 0 {
		msg = msg[i:]
	}
	return "duplicate key: " + strings.TrimSpace(msg) + " (YAML keeps only the last value; kubectl and the API server reject the document)"
}

func (e *duplicateKeyError) Unwrap() error { return e.err }

// header is the part of any object needed to dispatch it.
type header struct {
	APIVersion string          `json:"apiVersion"`
	Kind       string          `json:"kind"`
	Metadata   json.RawMessage `json:"metadata"`
}

// nameOf reads metadata.namespace and metadata.name leniently, for notes and
// error messages only.
//
// A namespace that is not a string (YAML 1.1 reads an unquoted `no` as
// false) is rendered as its JSON text: read as absent, it would name another
// object ("default/p" for a pod whose namespace is `no`). A name that is not
// a string is left out.
func (h *header) nameOf() (namespace, name string) {
	var m struct {
		Namespace json.RawMessage
		Name      json.RawMessage
	}
	_ = json.Unmarshal(h.Metadata, &m)
	if err := json.Unmarshal(m.Namespace, &namespace); err != nil {
		namespace = string(bytes.TrimSpace(m.Namespace))
	}
	_ = json.Unmarshal(m.Name, &name)
	return namespace, name
}

// describe renders "Kind ns/name" or "Kind name" for messages.
func describe(kind, namespace, name string) string {
	switch {
	case kind == "":
		return ""
	case name == "":
		return kind
	case namespace == "":
		return kind + " " + name
	}
	return kind + " " + namespace + "/" + name
}

// object handles one JSON object: a list, a handled kind or a skipped one.
// defaults fills in apiVersion and kind for items of typed lists (PodList
// items usually carry neither).
func (l *loader) object(loc location, raw []byte, defaults schema.GroupVersionKind, depth int) {
	fail := func(object string, err error) {
		l.errs = append(l.errs, &Error{Source: loc.source, Document: loc.doc, Item: loc.item, Object: object, Err: err})
	}
	if len(raw) == 0 || raw[0] != '{' {
		fail("", errors.New("not an object (a Kubernetes object is a mapping with apiVersion and kind)"))
		return
	}
	var h header
	if err := json.Unmarshal(raw, &h); err != nil {
		fail("", fmt.Errorf("reading apiVersion and kind: %w", err))
		return
	}
	if h.APIVersion == "" {
		h.APIVersion = defaults.GroupVersion().String()
		if defaults.Empty() {
			h.APIVersion = ""
		}
	}
	if h.Kind == "" {
		h.Kind = defaults.Kind
	}
	ns, name := h.nameOf()
	what := describe(h.Kind, ns, name)
	if h.Kind == "" {
		fail(what, field.Required(field.NewPath("kind"), "every object must say its kind"))
		return
	}
	if h.APIVersion == "" {
		fail(what, field.Required(field.NewPath("apiVersion"), "every object must say its apiVersion"))
		return
	}
	gv, err := schema.ParseGroupVersion(h.APIVersion)
	if err != nil {
		fail(what, field.Invalid(field.NewPath("apiVersion"), h.APIVersion, err.Error()))
		return
	}
	gvk := gv.WithKind(h.Kind)

	if itemGVK, ok := listKind(gvk); ok {
		l.list(loc, raw, what, itemGVK, depth)
		return
	}
	for kind, wants := range wanted {
		if !strings.EqualFold(h.Kind, kind) {
			continue
		}
		if !slices.Contains(wants, gvk) {
			var gvs []string
			for _, w := range wants {
				gvs = append(gvs, w.GroupVersion().String())
			}
			fail(what, fmt.Errorf("%s %s is not supported: policyd reads %s %s only", h.APIVersion, h.Kind, strings.Join(gvs, " or "), kind))
			return
		}
		l.typed(loc, raw, gvk)
		return
	}
	l.out.Notes = append(l.out.Notes, fmt.Sprintf("%s: skipped %s %s", loc, h.APIVersion, describe(h.Kind, ns, name)))
}

// listKind reports whether gvk is a list this package flattens, and the
// default GroupVersionKind of its items (empty for a generic List, whose
// items carry their own).
func listKind(gvk schema.GroupVersionKind) (schema.GroupVersionKind, bool) {
	if gvk.Kind == "List" {
		return schema.GroupVersionKind{}, true
	}
	item, ok := strings.CutSuffix(gvk.Kind, "List")
	if !ok {
		return schema.GroupVersionKind{}, false
	}
	for _, want := range wanted[item] {
		if want.GroupVersion() == gvk.GroupVersion() {
			return want, true
		}
	}
	return schema.GroupVersionKind{}, false
}

// list flattens a List document into its items.
func (l *loader) list(loc location, raw []byte, what string, itemGVK schema.GroupVersionKind, depth int) {
	fail := func(err error) {
		l.errs = append(l.errs, &Error{Source: loc.source, Document: loc.doc, Item: loc.item, Object: what, Err: err})
	}
	if depth >= maxListDepth {
		fail(fmt.Errorf("lists nested more than %d deep", maxListDepth))
		return
	}
	var body struct {
		Items []json.RawMessage `json:"items"`
	}
	if err := json.Unmarshal(raw, &body); err != nil {
		fail(fmt.Errorf("items: %w", err))
		return
	}
	prefix := loc.item
	if prefix != "" {
		prefix += "."
	}
	for i, item := range body.Items {
		item = bytes.TrimSpace(item)
		if len(item) == 0 || bytes.Equal(item, []byte("null")) {
			continue
		}
		l.object(location{source: loc.source, doc: loc.doc, item: fmt.Sprintf("%sitems[%d]", prefix, i)}, item, itemGVK, depth+1)
	}
}

// typed decodes a Namespace, Pod or NetworkPolicy with the scheme's strict
// deserializer, validates its metadata and records it.
func (l *loader) typed(loc location, raw []byte, gvk schema.GroupVersionKind) {
	var h header
	_ = json.Unmarshal(raw, &h) // already parsed once by object
	ns, name := h.nameOf()
	clusterScoped := slices.Contains(clusterScopedGVKs, gvk)
	if ns == "" && !clusterScoped {
		ns = DefaultNamespace
	}
	if clusterScoped {
		ns = ""
	}
	what := describe(gvk.Kind, ns, name)
	fail := func(err error) {
		l.errs = append(l.errs, &Error{Source: loc.source, Document: loc.doc, Item: loc.item, Object: what, Err: err})
	}

	obj, _, err := strictDecoder.Decode(raw, &gvk, nil)
	var ignored []string
	if err != nil {
		strict, ok := runtime.AsStrictDecodingError(err)
		if !ok || obj == nil {
			fail(withYAMLHint(err))
			return
		}
		var hard []string
		for _, e := range strict.Errors() {
			msg := e.Error()
			lenient := gvk == gvkNamespace || gvk == gvkPod || gvk == gvkNode || gvk == gvkService || gvk == gvkEndpointSlice || slices.Contains(workloadGVKs, gvk) // policies: unknown fields are errors
			if lenient && strings.HasPrefix(msg, "unknown field ") {
				ignored = append(ignored, msg)
				continue
			}
			hard = append(hard, msg)
		}
		if len(hard) > 0 {
			fail(fmt.Errorf("strict decoding: %s", strings.Join(hard, ", ")))
			return
		}
	}

	var meta *metav1.ObjectMeta
	var nameFn apivalidation.ValidateNameFunc
	namespaced := true
	switch o := obj.(type) {
	case *corev1.Namespace:
		// Namespaces are cluster-scoped; kubectl drops a namespace set on one.
		o.Namespace = ""
		meta, nameFn, namespaced = &o.ObjectMeta, apivalidation.ValidateNamespaceName, false
	case *corev1.Pod:
		meta, nameFn = &o.ObjectMeta, apivalidation.NameIsDNSSubdomain
	case *networkingv1.NetworkPolicy:
		meta, nameFn = &o.ObjectMeta, apivalidation.NameIsDNSSubdomain
	case *corev1.Node:
		o.Namespace = ""
		meta, nameFn, namespaced = &o.ObjectMeta, apivalidation.NameIsDNSSubdomain, false
	case *corev1.Service:
		meta, nameFn = &o.ObjectMeta, apivalidation.NameIsDNS1035Label
	case *discoveryv1.EndpointSlice:
		meta, nameFn = &o.ObjectMeta, apivalidation.NameIsDNSSubdomain
	case *npav1beta1.ClusterNetworkPolicy:
		o.Namespace = ""
		meta, nameFn, namespaced = &o.ObjectMeta, apivalidation.NameIsDNSSubdomain, false
	case *appsv1.Deployment:
		meta, nameFn = &o.ObjectMeta, apivalidation.NameIsDNSSubdomain
	case *appsv1.StatefulSet:
		meta, nameFn = &o.ObjectMeta, apivalidation.NameIsDNSSubdomain
	case *appsv1.DaemonSet:
		meta, nameFn = &o.ObjectMeta, apivalidation.NameIsDNSSubdomain
	case *appsv1.ReplicaSet:
		meta, nameFn = &o.ObjectMeta, apivalidation.NameIsDNSSubdomain
	case *batchv1.Job:
		meta, nameFn = &o.ObjectMeta, apivalidation.NameIsDNSSubdomain
	case *batchv1.CronJob:
		meta, nameFn = &o.ObjectMeta, apivalidation.NameIsDNSSubdomain
	case *npav1alpha2.ClusterNetworkPolicy:
		// v1alpha2 has v1beta1's schema: one type downstream.
		conv, err := alpha2ToBeta1(o)
		if err != nil {
			fail(err)
			return
		}
		obj = conv
		conv.Namespace = ""
		meta, nameFn, namespaced = &conv.ObjectMeta, apivalidation.NameIsDNSSubdomain, false
	default:
		fail(fmt.Errorf("decoded as unexpected type %T", obj))
		return
	}
	if namespaced && meta.Namespace == "" {
		meta.Namespace = DefaultNamespace
	}
	what = describe(gvk.Kind, meta.Namespace, meta.Name)
	if meta.Name == "" {
		if meta.GenerateName != "" {
			fail(field.Required(field.NewPath("metadata", "name"), "generateName is not supported: policyd needs the object's actual name"))
		} else {
			fail(field.Required(field.NewPath("metadata", "name"), ""))
		}
		return
	}
	if errs := apivalidation.ValidateObjectMeta(meta, namespaced, nameFn, field.NewPath("metadata")); len(errs) > 0 {
		fail(errs.ToAggregate())
		return
	}

	key := objectKey{kind: gvk.Kind, namespace: meta.Namespace, name: meta.Name}
	if first, dup := l.out.sources[key]; dup {
		fail(fmt.Errorf("duplicate %s, first defined at %s", what, first))
		return
	}
	l.out.sources[key] = loc.String()
	for _, msg := range ignored {
		l.out.Notes = append(l.out.Notes, fmt.Sprintf("%s (%s): ignored %s", loc, what, msg))
	}

	switch o := obj.(type) {
	case *corev1.Namespace:
		l.out.Namespaces = append(l.out.Namespaces, o)
	case *corev1.Pod:
		l.out.Pods = append(l.out.Pods, o)
	case *networkingv1.NetworkPolicy:
		l.out.Policies = append(l.out.Policies, o)
	case *corev1.Node:
		l.out.Nodes = append(l.out.Nodes, o)
	case *corev1.Service:
		l.out.Services = append(l.out.Services, o)
	case *discoveryv1.EndpointSlice:
		l.out.EndpointSlices = append(l.out.EndpointSlices, o)
	case *npav1beta1.ClusterNetworkPolicy:
		l.out.ClusterPolicies = append(l.out.ClusterPolicies, o)
	default:
		if w, ok := workloadOf(obj); ok {
			w.Namespace = meta.Namespace
			l.out.Workloads = append(l.out.Workloads, w)
			l.workloadSources = append(l.workloadSources, loc.String())
		}
	}
}

// alpha2ToBeta1 converts a v1alpha2 ClusterNetworkPolicy to v1beta1: the two
// versions share one schema, so a JSON round trip is exact.
func alpha2ToBeta1(in *npav1alpha2.ClusterNetworkPolicy) (*npav1beta1.ClusterNetworkPolicy, error) {
	b, err := json.Marshal(in)
	if err != nil {
		return nil, err
	}
	out := &npav1beta1.ClusterNetworkPolicy{}
	if err := json.Unmarshal(b, out); err != nil {
		return nil, fmt.Errorf("converting v1alpha2 to v1beta1: %w", err)
	}
	out.APIVersion, out.Kind = npav1beta1.GroupVersion.String(), KindClusterNetworkPolicy
	return out, nil
}

// withYAMLHint explains the usual cause of a non-string where a string is
// expected: YAML 1.1 reads unquoted y/yes/on/true, n/no/off/false and
// numbers as booleans and numbers.
func withYAMLHint(err error) error {
	msg := err.Error()
	if strings.Contains(msg, "cannot unmarshal bool into") || strings.Contains(msg, "cannot unmarshal number into") {
		if strings.HasSuffix(msg, "of type string") {
			return fmt.Errorf("%w (YAML 1.1 reads unquoted y, yes, on, true, n, no, off, false as booleans and 1, 1.0 as numbers: quote the value)", err)
		}
	}
	return err
}
