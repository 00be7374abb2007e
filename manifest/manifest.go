// Package manifest reads Kubernetes manifests — the YAML and JSON that kubectl
// reads and writes — into the API objects policyd cares about: Namespaces,
// Pods and networking.k8s.io/v1 NetworkPolicies.
//
// It owns the boundary between files on disk and typed k8s.io/api objects; the
// cluster package then validates those objects into its own model (see
// Objects.Snapshot).
//
// # Decoding
//
// The stream is read the way kubectl's resource builder reads a file (the
// StreamVisitor of k8s.io/cli-runtime): a UTF-16 or UTF-8 byte-order mark is
// honoured, k8s.io/apimachinery/pkg/util/yaml.NewYAMLOrJSONDecoder splits it
// into documents (YAML documents separated by "---", or a stream of JSON
// objects) and converts each to JSON with sigs.k8s.io/yaml, which follows YAML
// 1.1. Each document is then decoded by the client-go scheme's codecs
// (k8s.io/client-go/kubernetes/scheme) in strict mode.
//
// Because the YAML step follows YAML 1.1, an unquoted y, yes, on, true (and
// their n/no/off/false counterparts) is a boolean and an unquoted 1.0 is a
// number. A label value such as `foo: y` therefore becomes JSON true and does
// not decode into metadata.labels (map[string]string). kubectl rejects it in
// the same way (client-side with the typed decoder, or the API server with
// "cannot unmarshal bool into Go struct field ObjectMeta.metadata.labels of
// type string"); so does this package, with a hint to quote the value. Other
// decoders differ, which is why this package goes through the same steps as
// kubectl: sigs.k8s.io/yaml.Unmarshal straight into a typed object silently
// yields the label value "true", and a YAML 1.2 decoder (yaml.v3) yields "y".
//
// Strictness: the codecs run with strict decoding. For NetworkPolicies every
// strict violation (an unknown or duplicated field) is an error, as with
// `kubectl apply --validate=strict`, because a misspelt field changes what a
// policy allows. For Pods and Namespaces a duplicated field is an error but
// an unknown field is only a note: these objects are usually dumps of a live
// cluster (`kubectl get -o yaml`), and a cluster newer than the k8s.io/api
// version policyd is built with writes fields this package does not know,
// none of which policyd reads.
//
// Object metadata is validated as the API server validates it on create
// (name, namespace, labels, annotations; k8s.io/apimachinery/pkg/api/validation),
// since an object with invalid metadata cannot exist in a cluster.
//
// # Documents, lists, kinds
//
// A document is a non-empty document of the stream; empty and comment-only
// documents are not counted. Documents are numbered from 1 in errors and notes.
// A document of kind List (any apiVersion, as `kubectl get -o yaml` writes) or
// of kind PodList, NamespaceList or NetworkPolicyList is flattened into its
// items, which are named by their 0-based field path ("document 2 items[0]").
//
// Objects of other kinds (Services, Deployments, custom resources) are skipped
// with a note. A Pod, Namespace or NetworkPolicy in an apiVersion other than
// v1 / networking.k8s.io/v1 is an error, not a skip: silently dropping a
// policy would allow more than the manifests say.
//
// Pods and NetworkPolicies without metadata.namespace are put in "default",
// as kubectl does without --namespace. An object that appears twice (same
// kind, namespace and name) is an error naming both places.
package manifest

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"

	npav1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"

	"github.com/policyd/policyd/cluster"
)

// Kinds handled by this package.
const (
	KindNamespace     = "Namespace"
	KindPod           = "Pod"
	KindNetworkPolicy = "NetworkPolicy"
	KindNode          = "Node"
	// KindClusterNetworkPolicy is read in policy.networking.k8s.io v1beta1
	// and v1alpha2 (same schema; decoded as v1beta1).
	KindClusterNetworkPolicy = "ClusterNetworkPolicy"
	// KindService and KindEndpointSlice (discovery.k8s.io/v1) serve explain
	// only: they say which pods a service address leads to.
	KindService       = "Service"
	KindEndpointSlice = "EndpointSlice"
)

// Objects is the result of reading one or more manifests: the objects policyd
// uses, in the order they were read, and notes about what was left out.
type Objects struct {
	Namespaces []*corev1.Namespace
	Pods       []*corev1.Pod
	Policies   []*networkingv1.NetworkPolicy
	// ClusterPolicies are the ClusterNetworkPolicies, either apiVersion,
	// as v1beta1; Nodes the Nodes (for nodes peers).
	ClusterPolicies []*npav1beta1.ClusterNetworkPolicy
	Nodes           []*corev1.Node
	// Services and EndpointSlices, for explain through Services.
	Services       []*corev1.Service
	EndpointSlices []*discoveryv1.EndpointSlice
	// Workloads are the Deployments, StatefulSets, DaemonSets, ReplicaSets,
	// Jobs and CronJobs read. Their pod templates are in Pods already
	// (AllPods), so every verb sees them as pods.
	Workloads []*Workload
	// Notes are human-readable remarks that are not errors: skipped objects
	// ("examples/a.yaml: document 3: skipped apps/v1 Deployment shop/web") and
	// unknown fields ignored on Pods and Namespaces.
	Notes []string

	// sources maps an object to the place it was read from.
	sources map[objectKey]string
	// addressed is set once Snapshot noted the addresses it assigned.
	addressed bool
}

type objectKey struct {
	kind, namespace, name string
}

// Source reports where an object was read from, as "file: document N" (with
// " items[i]" for list items), or "" if the object is not in o. Namespace is
// ignored for Namespaces.
func (o *Objects) Source(kind, namespace, name string) string {
	if kind == KindNamespace || kind == KindNode || kind == KindClusterNetworkPolicy {
		namespace = ""
	}
	return o.sources[objectKey{kind, namespace, name}]
}

// Snapshot converts the objects into a validated cluster snapshot with
// cluster.NewSnapshot. The errors are the conversion errors (for example an
// invalid policy field), also kept in the snapshot's Errors; the snapshot is
// usable even when there are some, as the conversion is fail-closed.
//
// Pods that have no address yet (a workload's template, a Pod written by
// hand) are judged at the address policyd lab would give them
// (AssignAddresses); a note says so, once.
func (o *Objects) Snapshot() (*cluster.Snapshot, []error) {
	pods, notes := AssignAddresses(o.Pods, o.Nodes)
	if !o.addressed {
		o.addressed = true
		o.Notes = append(o.Notes, notes...)
	}
	s, errs := cluster.NewSnapshot(o.Namespaces, pods, o.Policies)
	errs = append(errs, s.AddClusterPolicies(o.ClusterPolicies, o.Nodes)...)
	return s, append(errs, s.AddServices(o.Services, o.EndpointSlices)...)
}

// Error is a problem with one document of a manifest, or with a whole file
// when Document is 0.
type Error struct {
	// Source is the file name, or the source name given to Decode.
	Source string
	// Document is the 1-based index of the non-empty document in Source, or 0
	// when the error is about the source as a whole.
	Document int
	// Item is the field path of a list item inside the document, such as
	// "items[3]", or "" when the document is not a list.
	Item string
	// Object describes the object when it is known: "Kind namespace/name" or
	// "Kind name".
	Object string
	// Err is the underlying error; decoder errors name the field when the
	// decoder can tell.
	Err error
}

// Error renders "source: document N items[i] (Kind ns/name): err".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.location())
	if e.Object != "" {
		b.WriteString(" (" + e.Object + ")")
	}
	b.WriteString(": ")
	if e.Err != nil {
		b.WriteString(e.Err.Error())
	} else {
		b.WriteString("invalid")
	}
	return b.String()
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

func (e *Error) location() string {
	return location{source: e.Source, doc: e.Document, item: e.Item}.String()
}

// location is a place in a stream: a document and, inside a list, an item.
type location struct {
	source string
	doc    int
	item   string
}

func (l location) String() string {
	s := l.source
	if l.doc > 0 {
		s += fmt.Sprintf(": document %d", l.doc)
	}
	if l.item != "" {
		s += " " + l.item
	}
	return s
}

// Decode reads one stream of YAML or JSON documents. source names the stream
// in errors and notes (usually its file name). On any error Decode returns a
// nil *Objects and an error that joins one *Error per bad document.
func Decode(source string, data []byte) (*Objects, error) {
	l := newLoader()
	l.stream(source, data)
	return l.result()
}

// Extensions are the file name extensions LoadPath reads in a directory, as
// kubectl does with -f DIR.
var Extensions = []string{".yaml", ".yml", ".json"}

// LoadPath reads a manifest file, or every manifest file under a directory:
// Load of the one path, without stdin.
func LoadPath(path string) (*Objects, error) {
	return Load([]string{path}, nil)
}

// Load reads the union of paths, as kubectl reads repeated -f flags: each
// path is a file, a directory, or "-" for stdin. A file named explicitly is
// read whatever its extension. A directory is walked recursively in lexical
// order, reading files whose names end in one of Extensions and skipping
// files and directories whose names start with a dot; symlinks to files and
// to directories are followed, each directory once (no cycles); a directory
// holding no such file is an error. A file reached twice (named twice, or
// named and inside a named directory) is read once. Objects duplicated
// across files are errors like duplicates within a file. On any error Load
// returns a nil *Objects and an error that joins every problem found.
func Load(paths []string, stdin io.Reader) (*Objects, error) {
	return LoadWith(paths, stdin, Options{})
}

// Options change what Load makes of what it reads.
type Options struct {
	// AllReplicas makes each workload's replicas pods (at most 20 per
	// workload) instead of one representative pod.
	AllReplicas bool
}

// LoadWith is Load with options.
func LoadWith(paths []string, stdin io.Reader, opts Options) (*Objects, error) {
	if len(paths) == 0 {
		return nil, errors.New("no manifest path given")
	}
	l := newLoader()
	read := map[string]bool{} // files by their resolved path
	readFile := func(name string) {
		key := name
		if real, err := filepath.EvalSymlinks(name); err == nil {
			key = real
		}
		if read[key] {
			return
		}
		read[key] = true
		data, err := os.ReadFile(name)
		if err != nil {
			l.errs = append(l.errs, &Error{Source: name, Err: err})
			return
		}
		l.stream(name, data)
	}
	stdinRead := false
	for _, path := range paths {
		if path == "-" {
			if stdin == nil {
				return nil, errors.New("-: no standard input here")
			}
			if stdinRead {
				continue
			}
			stdinRead = true
			data, err := io.ReadAll(stdin)
			if err != nil {
				return nil, fmt.Errorf("stdin: %w", err)
			}
			l.stream("stdin", data)
			continue
		}
		info, err := os.Stat(path)
		if err != nil {
			return nil, err
		}
		if !info.IsDir() {
			readFile(path)
			continue
		}
		files, err := manifestFiles(path)
		if err != nil {
			return nil, err
		}
		if len(files) == 0 {
			return nil, fmt.Errorf("%s: no manifest files (%s) in directory", path, strings.Join(Extensions, ", "))
		}
		for _, f := range files {
			readFile(f)
		}
	}
	return l.resultWith(opts)
}

// manifestFiles lists the manifest files under dir, sorted, following
// symlinks to files and to directories; a directory already walked (by its
// resolved path) is not walked again, so a symlink cycle ends.
func manifestFiles(dir string) ([]string, error) {
	var files []string
	seen := map[string]bool{}
	var walk func(dir string) error
	walk = func(dir string) error {
		real, err := filepath.EvalSymlinks(dir)
		if err != nil {
			return err
		}
		if seen[real] {
			return nil
		}
		seen[real] = true
		entries, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		// Entries that are not symlinks first, so that a file reached both
		// directly and through a link is named by its own path.
		sort.SliceStable(entries, func(i, j int) bool {
			return entries[i].Type()&fs.ModeSymlink == 0 && entries[j].Type()&fs.ModeSymlink != 0
		})
		for _, d := range entries {
			if strings.HasPrefix(d.Name(), ".") {
				continue
			}
			p := filepath.Join(dir, d.Name())
			mode := d.Type()
			if mode&fs.ModeSymlink != 0 {
				fi, err := os.Stat(p)
				if err != nil {
					continue // a dangling link is no manifest
				}
				mode = fi.Mode().Type()
			}
			switch {
			case mode.IsDir():
				if err := walk(p); err != nil {
					return err
				}
			case mode.IsRegular() && slices.ContainsFunc(Extensions, func(ext string) bool { return strings.HasSuffix(d.Name(), ext) }):
				files = append(files, p)
			}
		}
		return nil
	}
	if err := walk(dir); err != nil {
		return nil, err
	}
	sort.Strings(files)
	return files, nil
}

func (l *loader) result() (*Objects, error) {
	return l.resultWith(Options{})
}

// resultWith returns what was read, the pods the workloads make included.
func (l *loader) resultWith(opts Options) (*Objects, error) {
	if len(l.errs) > 0 {
		return nil, errors.Join(l.errs...)
	}
	if len(l.out.Workloads) > 0 {
		from := map[string]string{}
		for i, w := range l.out.Workloads {
			from[w.Key()] = l.workloadSources[i]
		}
		pods, notes := l.out.AllPods(opts.AllReplicas)
		for _, p := range pods[len(l.out.Pods):] {
			w := p.Annotations[TemplateOfAnnotation]
			l.out.sources[objectKey{kind: KindPod, namespace: p.Namespace, name: p.Name}] = from[w] + " (the pod template of " + w + ")"
		}
		l.out.Pods = pods
		l.out.Notes = append(l.out.Notes, notes...)
	}
	return l.out, nil
}
