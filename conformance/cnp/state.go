package cnp

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/manifest"
)

// State is a test's cluster as its stages change it: the base cluster's
// namespaces, pods and nodes, and the policy objects applied so far.
type State struct {
	c       *Cluster
	objects map[string][]byte // by Meta.Key, placeholders resolved
}

// NewState starts test t on base cluster c (which it changes: pass a fresh
// Base per test).
func NewState(c *Cluster, t Test) (*State, error) {
	s := &State{c: c, objects: map[string][]byte{}}
	if err := s.apply(t.Objects); err != nil {
		return nil, fmt.Errorf("%s: objects: %w", t.Name, err)
	}
	return s, nil
}

// Cluster returns the base cluster the state started from.
func (s *State) Cluster() *Cluster { return s.c }

func (s *State) apply(objs []Object) error {
	for _, o := range objs {
		m, err := o.Meta()
		if err != nil {
			return err
		}
		raw, err := s.c.Resolve(o.Raw)
		if err != nil {
			return fmt.Errorf("%s: %w", m.Key(), err)
		}
		s.objects[m.Key()] = raw
	}
	return nil
}

// Apply runs one stage's changes, in the documented order: delete, apply,
// namespace labels, pod labels.
func (s *State) Apply(st Stage) error {
	for _, k := range st.Delete {
		if _, ok := s.objects[k]; !ok {
			return fmt.Errorf("delete %s: no such object", k)
		}
		delete(s.objects, k)
	}
	if err := s.apply(st.Apply); err != nil {
		return err
	}
	for name, l := range st.NamespaceLabels {
		ns := s.namespace(name)
		if ns == nil {
			return fmt.Errorf("relabel namespace %s: no such namespace", name)
		}
		ns.Labels = maps.Clone(l)
	}
	for key, l := range st.PodLabels {
		p := s.c.Pod(key)
		if p == nil {
			return fmt.Errorf("relabel pod %s: no such pod", key)
		}
		p.Labels = maps.Clone(l)
	}
	return nil
}

func (s *State) namespace(name string) *corev1.Namespace {
	for _, ns := range s.c.Namespaces {
		if ns.Name == name {
			return ns
		}
	}
	return nil
}

// Manifest returns the state as one multi-document YAML stream (the
// objects as JSON documents): namespaces, nodes, pods, then the policies in
// key order. policyd's manifest reader reads it as it reads any file.
func (s *State) Manifest() ([]byte, error) {
	var b bytes.Buffer
	write := func(v any) error {
		raw, err := jsonOf(v)
		if err != nil {
			return err
		}
		b.WriteString("---\n")
		b.Write(raw)
		b.WriteString("\n")
		return nil
	}
	for _, ns := range s.c.Namespaces {
		if err := write(withKind(ns.DeepCopy(), "v1", "Namespace")); err != nil {
			return nil, err
		}
	}
	for _, n := range s.c.Nodes {
		if err := write(withKind(n.DeepCopy(), "v1", "Node")); err != nil {
			return nil, err
		}
	}
	for _, p := range s.c.Pods {
		if err := write(withKind(p.DeepCopy(), "v1", "Pod")); err != nil {
			return nil, err
		}
	}
	for _, k := range slices.Sorted(maps.Keys(s.objects)) {
		b.WriteString("---\n")
		b.Write(s.objects[k])
		b.WriteString("\n")
	}
	return b.Bytes(), nil
}

// Snapshot returns the state as policyd sees it, read through its manifest
// reader. Conversion errors are returned: the suite's objects are valid.
func (s *State) Snapshot() (*cluster.Snapshot, error) {
	raw, err := s.Manifest()
	if err != nil {
		return nil, err
	}
	objs, err := manifest.Decode("state", raw)
	if err != nil {
		return nil, err
	}
	snap, errs := objs.Snapshot()
	if len(errs) > 0 {
		return nil, fmt.Errorf("converting: %v", errs)
	}
	return snap, nil
}

type kinded interface {
	GetObjectKind() schema.ObjectKind
}

func withKind[T kinded](o T, apiVersion, kind string) T {
	o.GetObjectKind().SetGroupVersionKind(schema.FromAPIVersionAndKind(apiVersion, kind))
	return o
}

func jsonOf(v any) ([]byte, error) { return json.Marshal(v) }
