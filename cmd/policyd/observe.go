package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/policyd/policyd/policy/decider"
	"github.com/policyd/policyd/verdicts"
)

// defaultAgentAddr is policyd run's default --metrics-addr.
const defaultAgentAddr = "127.0.0.1:9743"

// agentTokenFile is where the DaemonSet mounts the agent's token (its
// --metrics-token-file): observe run in the agent's container (kubectl exec
// ds/policyd -- policyd observe) reads it without being told.
var agentTokenFile = "/var/run/secrets/policyd/metrics-token/token"

type observeOptions struct {
	agentAddr string
	tokenFile string
	filter    verdicts.Filter
	output    string
}

func newObserveCommand() *cobra.Command {
	o := &observeOptions{}
	cmd := &cobra.Command{
		Use:   "observe [-n NAMESPACE] [--pod POD] [--verdict allow|deny] [--policy NAME]",
		Short: "Stream this node's live verdicts: which policy and rule dropped (or allowed) which packet",
		Long: `Stream the verdicts the kernel logs on this node, as the agent (policyd run)
resolves them: time, source and destination (pods, or addresses), protocol
and port, direction, verdict, and the deciding policy and rule. It reads the
agent's /verdicts stream on --agent-addr (the agent's --metrics-addr,
loopback by default: run it on the node, e.g. in 'kubectl debug node/NODE'
or 'kubectl -n policyd-system exec ds/policyd -- policyd observe', where the
agent's token is found without --token-file).

What is there to see depends on the agent's flags: drops are logged by
default (--log-drops), allowed new connections only with --log-allowed, and
the kernel logs at most --log-rate packets a second per node; one record is
shown per flow and second. Counters of every packet are
policyd_policy_packets_total on /metrics.

Filters are applied by the agent; each one given must match:
-n/--namespace  either end is a pod in NAMESPACE
--pod           either end is POD: NAMESPACE/NAME, or NAME (in -n, else any namespace)
--verdict       allow or deny
--policy        a deciding policy: NAMESPACE/NAME of a NetworkPolicy, or NAME
                (a ClusterNetworkPolicy, or NetworkPolicies so named, in -n if given)
--since         first the records of that recent past the agent kept (up to 1024)

-o json prints one record a line, the fields documented in docs/verdicts.md.
Ctrl-C ends it (exit 0). No agent listening is an error (exit 3); so is the
agent ending the stream.`,
		Example: `  policyd observe
  policyd observe -n shop --verdict deny
  policyd observe --pod shop/db --since 5m
  policyd observe --policy default-deny -n shop -o json | jq .src
  kubectl -n policyd-system exec ds/policyd -- policyd observe --verdict deny`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runObserve(cmd, o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.agentAddr, "agent-addr", defaultAgentAddr, "the agent's --metrics-addr (HOST:PORT) on this node")
	f.StringVar(&o.tokenFile, "token-file", "", "file holding the bearer token the agent requires when it runs with --metrics-token-file (default: "+agentTokenFile+" when it exists, as in the agent's container)")
	f.StringVarP(&o.filter.Namespace, "namespace", "n", "", "only records with a pod of this namespace at either end")
	f.StringVar(&o.filter.Pod, "pod", "", "only records with this pod at either end: NAMESPACE/NAME, or NAME (in -n, else any namespace)")
	f.StringVar(&o.filter.Verdict, "verdict", "", "only this verdict: allow or deny")
	f.StringVar(&o.filter.Policy, "policy", "", "only records this policy decided: NAMESPACE/NAME (NetworkPolicy) or NAME (ClusterNetworkPolicy, or NetworkPolicies of that name)")
	f.DurationVar(&o.filter.Since, "since", 0, "first print the records the agent kept from this recent past (e.g. 5m), then follow")
	f.StringVarP(&o.output, "output", "o", "text", "output format: text or json (one record a line)")
	return cmd
}

func runObserve(cmd *cobra.Command, o *observeOptions) error {
	if o.output != "text" && o.output != "json" {
		return usagef("-o %s: want text or json", o.output)
	}
	if err := o.filter.Validate(); err != nil {
		return usagef("--%w", err)
	}
	if _, _, err := net.SplitHostPort(o.agentAddr); err != nil {
		return usagef("--agent-addr %s: want HOST:PORT (the agent's --metrics-addr): %w", o.agentAddr, err)
	}
	token := ""
	if o.tokenFile == "" && !cmd.Flags().Changed("token-file") {
		if _, err := os.Stat(agentTokenFile); err == nil {
			o.tokenFile = agentTokenFile
		}
	}
	if o.tokenFile != "" {
		var err error
		if token, err = readToken(o.tokenFile); err != nil {
			return usagef("--token-file: %w", err)
		}
	}
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	out, errOut := cmd.OutOrStdout(), cmd.ErrOrStderr()
	enc := json.NewEncoder(out)
	url := "http://" + o.agentAddr + verdicts.Path
	err := verdicts.Follow(ctx, http.DefaultClient, url, token, o.filter, func(m verdicts.Message) error {
		if m.Lost > 0 {
			fmt.Fprintf(errOut, "policyd observe: %d records not shown: this observer read too slowly\n", m.Lost)
			return nil
		}
		if o.output == "json" {
			return enc.Encode(&m.Record)
		}
		_, err := io.WriteString(out, formatRecord(&m.Record)+"\n")
		return err
	})
	return observeError(err, o.agentAddr)
}

// observeError says what a failed stream means for the person running
// observe, with the exit status the contract gives it.
func observeError(err error, addr string) error {
	if err == nil {
		return nil
	}
	var se *verdicts.StatusError
	if errors.As(err, &se) {
		switch se.Code {
		case http.StatusUnauthorized:
			return usagef("the agent on %s requires its bearer token: --token-file FILE (the agent's --metrics-token-file)", addr)
		case http.StatusForbidden:
			return &exitError{exitFailed, fmt.Errorf("the agent on %s has no token loaded yet (its --metrics-token-file is missing or empty) and refuses every stream: %s", addr, se.Message)}
		case http.StatusTooManyRequests:
			return &exitError{exitFailed, fmt.Errorf("the agent on %s is serving as many verdict streams as it may: %s; try again later", addr, se.Message)}
		case http.StatusBadRequest:
			return usagef("the agent refused the filter: %s", se.Message)
		case http.StatusNotFound:
			return &exitError{exitFailed, fmt.Errorf("the agent on %s serves no verdicts: %s", addr, se.Message)}
		}
		return &exitError{exitFailed, err}
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return &exitError{exitFailed, fmt.Errorf("no policyd agent is listening on %s: is 'policyd run' running on this node, and is that its --metrics-addr? (set --agent-addr)", addr)}
	}
	return &exitError{exitFailed, fmt.Errorf("reading verdicts from the agent on %s: %w", addr, err)}
}

// formatRecord renders a record on one line, as hubble observe does:
//
//	Dec  1 11:27:15.666: shop/frontend-1:43413 -> shop/db:5432 TCP ingress DENIED by NetworkPolicy shop/db,shop/default-deny (default deny)
func formatRecord(r *verdicts.Record) string {
	var b strings.Builder
	b.WriteString(r.Time.Local().Format("Jan _2 15:04:05.000"))
	b.WriteString(": ")
	b.WriteString(endpoint(r.Src, r.SrcPort))
	b.WriteString(" -> ")
	b.WriteString(endpoint(r.Dst, r.Port))
	b.WriteString(" " + r.Protocol + " " + r.Direction + " ")
	if r.Verdict == decider.VerdictAllow {
		b.WriteString("ALLOWED by ")
	} else {
		b.WriteString("DENIED by ")
	}
	switch r.Kind {
	case decider.KindNetworkPolicy:
		b.WriteString("NetworkPolicy " + strings.Join(r.Policies, ","))
		if r.Verdict == decider.VerdictDeny {
			b.WriteString(" (default deny: none of their rules allows it)")
		}
	case decider.KindClusterNetworkPolicy:
		fmt.Fprintf(&b, "%s ClusterNetworkPolicy %s", r.Tier, strings.Join(r.Policies, ","))
		if r.Rule != nil {
			fmt.Fprintf(&b, " %s[%d]", r.Direction, *r.Rule)
		}
		if r.RuleName != "" {
			fmt.Fprintf(&b, " %q", r.RuleName)
		}
		if r.Action != "" {
			b.WriteString(" " + r.Action)
		}
	case decider.KindCtInvalid:
		b.WriteString("conntrack: invalid packet")
	case decider.KindInvalid:
		b.WriteString(r.DeciderText)
	}
	return b.String()
}

// endpoint renders ns/pod:port, or address:port ([v6]:port).
func endpoint(e verdicts.Endpoint, port uint16) string {
	host := e.String()
	if e.Pod == "" && e.IP.Is6() {
		host = "[" + host + "]"
	}
	if port == 0 {
		return host
	}
	return host + ":" + strconv.Itoa(int(port))
}
