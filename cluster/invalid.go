package cluster

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ObjectError is a validation error of one object other than a policy (a
// Pod, Node, Service, EndpointSlice), naming the object and the field. Its
// text is "pod shop/web: spec.containers[0].ports[0].protocol: ...".
type ObjectError struct {
	// Kind is the object's kind ("Pod", "Node", "Service",
	// "EndpointSlice"); Name is "namespace/name", or the name of a
	// cluster-scoped object.
	Kind, Name string
	// Field is the field path, "" when the error is about the whole object.
	Field string
	Err   error
}

func (e *ObjectError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("%s %s: %v", strings.ToLower(e.Kind), e.Name, e.Err)
	}
	return fmt.Sprintf("%s %s: %s: %v", strings.ToLower(e.Kind), e.Name, e.Field, e.Err)
}

// Unwrap returns the underlying error.
func (e *ObjectError) Unwrap() error { return e.Err }

func objectError(kind, name, field string, format string, args ...any) error {
	return &ObjectError{Kind: kind, Name: name, Field: field, Err: fmt.Errorf(format, args...)}
}

// Invalid is one invalid object or field of the input, as a converter
// reported it: the object is enforced (or judged) in its fail-closed form,
// which may deny more than its author meant and never allows more. Its JSON
// form is part of `policyd explain -o json` (docs/explain-json.md).
type Invalid struct {
	// Kind is the object's kind: "NetworkPolicy", "ClusterNetworkPolicy",
	// "Pod", "Node", "Service", "EndpointSlice"; "" when the error names no
	// single object (two Nodes claiming one address).
	Kind string `json:"kind,omitempty"`
	// Name is "namespace/name", or the name of a cluster-scoped object.
	Name string `json:"name,omitempty"`
	// Field is the field path ("spec.ingress[0].ports[0].port"), "" when
	// the error is about the whole object.
	Field string `json:"field,omitempty"`
	// Value is the value refused, when the converter names one ("80800",
	// "Drop").
	Value string `json:"value,omitempty"`
	// Message says what is wrong, and, where the converter says so, what
	// is judged instead.
	Message string `json:"message"`
}

// Object is "Kind name" ("NetworkPolicy shop/web"), or "input" when the
// error names no single object.
func (v Invalid) Object() string {
	if v.Kind == "" {
		return "input"
	}
	return v.Kind + " " + v.Name
}

func (v Invalid) String() string {
	s := v.Object()
	if v.Field != "" {
		s += " " + v.Field
	}
	return s + ": " + v.Message
}

// Under reports whether v is about field path (a field of it or the field
// itself), e.g. Under("spec.ingress[0]") for "spec.ingress[0].ports[1]".
func (v Invalid) Under(path string) bool {
	return v.Field == path || strings.HasPrefix(v.Field, path+".") || strings.HasPrefix(v.Field, path+"[")
}

// InvalidOf describes a conversion error (a *PolicyError,
// *ClusterPolicyError or *ObjectError; any other error becomes its message
// alone).
func InvalidOf(err error) Invalid {
	var pe *PolicyError
	var ce *ClusterPolicyError
	var oe *ObjectError
	switch {
	case errors.As(err, &pe):
		return fieldInvalid("NetworkPolicy", pe.Policy, pe.Err.Field, pe.Err.BadValue, pe.Err.ErrorBody())
	case errors.As(err, &ce):
		return fieldInvalid("ClusterNetworkPolicy", ce.Policy, ce.Err.Field, ce.Err.BadValue, ce.Err.ErrorBody())
	case errors.As(err, &oe):
		return Invalid{Kind: oe.Kind, Name: oe.Name, Field: oe.Field, Message: oe.Err.Error()}
	}
	return Invalid{Message: err.Error()}
}

func fieldInvalid(kind, name, path string, bad any, body string) Invalid {
	v := Invalid{Kind: kind, Name: name, Field: path, Message: body}
	switch b := bad.(type) {
	case nil:
	case string:
		v.Value = b
	default:
		v.Value = fmt.Sprint(b)
	}
	return v
}

// Invalid returns every invalid object and field of s, once each, sorted by
// object and field: the conversion errors s was built with (Errors) and
// those its policies carry.
func (s *Snapshot) Invalid() []Invalid {
	var errs []error
	errs = append(errs, s.Errors...)
	for _, p := range s.Policies {
		errs = append(errs, p.Errors...)
	}
	for _, p := range s.ClusterPolicies {
		errs = append(errs, p.Errors...)
	}
	out := make([]Invalid, 0, len(errs))
	for _, e := range errs {
		out = append(out, InvalidOf(e))
	}
	slices.SortStableFunc(out, func(a, b Invalid) int {
		if c := strings.Compare(a.Object(), b.Object()); c != 0 {
			return c
		}
		if c := strings.Compare(a.Field, b.Field); c != 0 {
			return c
		}
		return strings.Compare(a.Message, b.Message)
	})
	return slices.Compact(out)
}
