package conformance

import (
	"fmt"
	"strings"

	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/policy/explain"
)

// CheckExternal asks explain, for every External expectation of s, about
// connections from ExternalClientIP to the Service port in snap (which must
// hold the case's Services, see ApplyServices), and returns one line per
// backend whose verdict differs from the expectation, and how many backend
// verdicts it checked. With trace, explain also walks the compiled
// rulesets, which must agree (explain.CheckTrace). A Service port with no
// backend to explain is a disagreement.
func CheckExternal(snap *cluster.Snapshot, s Step, trace bool) (bad []string, checked int, err error) {
	for _, x := range s.External {
		rs, err := explain.Explain(snap, explain.Query{Src: ExternalClientIP, Dst: "svc/" + x.Service, Port: x.Port, Protocol: x.Protocol, Trace: trace})
		if err != nil {
			return nil, checked, fmt.Errorf("external %s %s/%d: %w", x.Service, x.Protocol, x.Port, err)
		}
		for _, r := range rs {
			where := fmt.Sprintf("%s -> svc/%s %s/%d (backend %s)", ExternalClientIP, x.Service, x.Protocol, x.Port, r.To)
			switch {
			case strings.HasPrefix(r.To, "svc/"):
				bad = append(bad, where+": no backend: "+r.Ingress.Reason)
			case r.Allowed != x.Allowed:
				bad = append(bad, fmt.Sprintf("%s: explain says allowed=%v, the case %v: egress: %s; ingress: %s", where, r.Allowed, x.Allowed, r.Egress.Reason, r.Ingress.Reason))
			case trace && (r.Trace == nil || !r.Trace.Agrees || r.Trace.Allowed != x.Allowed):
				bad = append(bad, fmt.Sprintf("%s: the compiled rulesets disagree: %+v", where, r.Trace))
			}
			checked++
		}
	}
	return bad, checked, nil
}
