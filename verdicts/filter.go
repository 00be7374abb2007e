package verdicts

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/policyd/policyd/policy/decider"
)

// Filter selects records, as policyd observe's flags do; the zero Filter
// selects every record. Every field set must match.
type Filter struct {
	// Namespace: either end is a pod of this namespace.
	Namespace string
	// Pod: either end is this pod, "namespace/name", or "name" (in
	// Namespace when it is set, else in any namespace).
	Pod string
	// Verdict is "allow", "deny" (decider.Verdict's names) or "".
	Verdict string
	// Policy: a deciding policy is this one. "namespace/name" names a
	// NetworkPolicy; "name" a ClusterNetworkPolicy, or a NetworkPolicy of
	// that name (in Namespace when it is set, else in any namespace).
	Policy string
	// Since asks for the recent records the agent kept, made within this
	// long before the request, ahead of the live ones; 0 asks for none.
	Since time.Duration
}

// Query parameters of the HTTP stream, one per Filter field.
const (
	paramNamespace = "namespace"
	paramPod       = "pod"
	paramVerdict   = "verdict"
	paramPolicy    = "policy"
	paramSince     = "since"
)

// Validate reports the first field that cannot match anything as asked.
func (f Filter) Validate() error {
	switch f.Verdict {
	case "", decider.VerdictAllow.String(), decider.VerdictDeny.String():
	default:
		return fmt.Errorf("verdict %q: want %s or %s", f.Verdict, decider.VerdictAllow, decider.VerdictDeny)
	}
	for _, v := range []struct{ name, value string }{{"pod", f.Pod}, {"policy", f.Policy}} {
		if strings.Count(v.value, "/") > 1 || strings.HasPrefix(v.value, "/") || strings.HasSuffix(v.value, "/") {
			return fmt.Errorf("%s %q: want NAME or NAMESPACE/NAME", v.name, v.value)
		}
	}
	if strings.Contains(f.Namespace, "/") {
		return fmt.Errorf("namespace %q: a namespace has no /", f.Namespace)
	}
	if f.Since < 0 {
		return fmt.Errorf("since %s: want a positive duration", f.Since)
	}
	return nil
}

// Values encodes f as the query of the HTTP stream.
func (f Filter) Values() url.Values {
	v := url.Values{}
	for _, p := range []struct{ k, v string }{{paramNamespace, f.Namespace}, {paramPod, f.Pod}, {paramVerdict, f.Verdict}, {paramPolicy, f.Policy}} {
		if p.v != "" {
			v.Set(p.k, p.v)
		}
	}
	if f.Since > 0 {
		v.Set(paramSince, f.Since.String())
	}
	return v
}

// ParseFilter decodes the query of the HTTP stream and validates it.
func ParseFilter(v url.Values) (Filter, error) {
	for k := range v {
		switch k {
		case paramNamespace, paramPod, paramVerdict, paramPolicy, paramSince:
		default:
			return Filter{}, fmt.Errorf("unknown parameter %q (want namespace, pod, verdict, policy, since)", k)
		}
	}
	f := Filter{Namespace: v.Get(paramNamespace), Pod: v.Get(paramPod), Verdict: v.Get(paramVerdict), Policy: v.Get(paramPolicy)}
	if s := v.Get(paramSince); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			return Filter{}, fmt.Errorf("since %q: %w", s, err)
		}
		f.Since = d
	}
	return f, f.Validate()
}

// Match reports whether rec is selected.
func (f Filter) Match(rec *Record) bool {
	if f.Verdict != "" && rec.Verdict.String() != f.Verdict {
		return false
	}
	if f.Namespace != "" && rec.Src.Namespace != f.Namespace && rec.Dst.Namespace != f.Namespace {
		return false
	}
	if f.Pod != "" && !f.matchPod(rec.Src) && !f.matchPod(rec.Dst) {
		return false
	}
	return f.Policy == "" || f.matchPolicy(rec)
}

func (f Filter) matchPod(e Endpoint) bool {
	if e.Pod == "" {
		return false
	}
	if ns, name, ok := strings.Cut(f.Pod, "/"); ok {
		return e.Namespace == ns && e.Pod == name
	}
	return e.Pod == f.Pod && (f.Namespace == "" || e.Namespace == f.Namespace)
}

func (f Filter) matchPolicy(rec *Record) bool {
	for _, p := range rec.Policies {
		if rec.Kind == decider.KindClusterNetworkPolicy {
			if p == f.Policy {
				return true
			}
			continue
		}
		ns, name, _ := strings.Cut(p, "/")
		if p == f.Policy || (name == f.Policy && (f.Namespace == "" || ns == f.Namespace)) {
			return true
		}
	}
	return false
}
