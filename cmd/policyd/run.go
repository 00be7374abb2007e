//go:build linux

package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/vishvananda/netns"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"
	npaclient "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned"

	"github.com/policyd/policyd/agent"
	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/policy/compile"
	"github.com/policyd/policyd/policy/ctcut"
	"github.com/policyd/policyd/policy/nft"
	"github.com/policyd/policyd/verdicts"
)

type runOptions struct {
	kube        kubeFlags
	nodeName    string
	metricsAddr string
	// metricsTokenFile, when set, holds the bearer token /metrics requires.
	metricsTokenFile  string
	maxVerdictStreams int
	profilingAddr     string
	unreadyAfter      time.Duration
	minSync           time.Duration
	maxSync           time.Duration
	logFormat         string
	logLevel          string
	events            bool
	netns             string
	podNetwork        []string
	podNetworkExempt  []string
	cutEstablished    bool
	detectBypass      bool
	datapathInterval  time.Duration
	profiling         bool
	watchList         bool
	// Live verdicts.
	logDrops, logAllowed bool
	logGroup             uint16
	logRate, logBurst    uint32
	verdictLogLevel      string
	budget               budgetFlags
}

func newRunCommand() *cobra.Command {
	o := &runOptions{}
	cmd := &cobra.Command{
		Use:   "run --node-name NAME",
		Short: "Run the node agent: keep this node's nftables table equal to the cluster's policies",
		Long: `Run policyd's node agent, normally as a DaemonSet (see deploy/). It watches
Pods, Namespaces and NetworkPolicies, compiles the policies that concern this
node's pods into nftables sets and verdict maps, and applies every change as
one atomic, incremental netlink batch. Packets are judged in the kernel.

Fail-closed lifecycle: on start, the table a previous run left stays in force
until the informers have synced, then it is adopted with a diff (no flush, no
gap). The agent is ready (/readyz) only after that first sync. On SIGTERM the
rules stay in place, so enforcement continues across restarts and upgrades;
run 'policyd cleanup' to remove them. There is no fail-open switch.

Serves /metrics (Prometheus), /healthz and /readyz on --metrics-addr,
127.0.0.1:9743 by default: with hostNetwork any other address is a port on
the node that every pod and the network can reach, hostNetwork pods
included. With --metrics-token-file (the DaemonSet sets it), /metrics and
/verdicts answer only requests carrying that bearer token. /healthz is the
sync loop being alive; /readyz turns unready until the first sync commits
and when every sync has failed for --unready-after (default 30s). Both say
only "ok" or "not ok": the failure is in the log and the metrics
(policyd_sync_failing_seconds). Profiles (--profiling) are served on a
separate loopback listener only.
Invalid policies are enforced fail-closed (the invalid part matches nothing)
and reported as Warning Events on the policy. When the kernel refuses a
sync's batch, the agent finds the policies that produced it by bisection
(every attempt an atomic, fail-closed commit), quarantines them with an
error naming each, and commits the rest.

` + budgetHelp + `

Live verdicts: the packets policies drop (--log-drops, on by default) and,
opt-in, the new connections they allow (--log-allowed) are counted per
policy in the kernel and logged to nfnetlink_log group --log-group behind a
per-node rate limit (--log-rate, --log-burst). The agent reads them, names
the policy, rule and pods of each, and streams the records on /verdicts of
--metrics-addr (behind --metrics-token-file when it is set), which
'policyd observe' reads; policyd_policy_packets_total and _bytes_total are
the kernel's counters. Each record is also written to the agent's log at
--verdict-log-level (debug by default: hidden at the default --log-level).`,
		Example: `  policyd run --node-name "$NODE_NAME"
  policyd run --node-name kind-worker --kubeconfig ~/.kube/config --context kind-kind`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runAgent(cmd, o) },
	}
	o.kube.add(cmd)
	f := cmd.Flags()
	f.StringVar(&o.nodeName, "node-name", os.Getenv("NODE_NAME"), "this node's name (default $NODE_NAME; the DaemonSet sets it from spec.nodeName)")
	f.StringVar(&o.metricsAddr, "metrics-addr", "127.0.0.1:9743", "address for /metrics, /healthz, /readyz and /verdicts (policyd observe); empty disables. The default is reachable from the node only; to let Prometheus scrape, bind the node's address and set --metrics-token-file")
	f.StringVar(&o.metricsTokenFile, "metrics-token-file", "", "file holding a bearer token that /metrics and /verdicts require (Prometheus: authorization.credentials_file; policyd observe: --token-file), read again every 10s; while it is missing or empty both refuse every request. /healthz and /readyz stay open for kubelet probes and answer only ok or not ok")
	f.IntVar(&o.maxVerdictStreams, "max-verdict-streams", verdicts.DefaultMaxStreams, "most /verdicts streams (policyd observe) served at once; more are answered 429")
	f.DurationVar(&o.unreadyAfter, "unready-after", agent.DefaultUnreadyAfter, "report unready (/readyz) when every sync has failed for this long; the last committed table stays in force")
	f.DurationVar(&o.minSync, "min-sync-interval", agent.DefaultMinSyncInterval, "coalescing delay: events within it become one sync")
	f.DurationVar(&o.maxSync, "max-sync-interval", agent.DefaultMaxSyncInterval, "sync at least this often; each sync also repairs a table changed by someone else")
	f.StringVar(&o.logFormat, "log-format", "text", "log format: text or json")
	f.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	f.BoolVar(&o.events, "events", true, "report invalid policies as Kubernetes Events")
	f.BoolVar(&o.detectBypass, "detect-bypass", true, "watch whether this node's pod traffic passes through netfilter at all (veth counters against the connections conntrack tracks); when pods send and nothing is tracked, report NotEnforcing (a Warning Event on the Node, policyd_datapath_bypassed, an error log): an eBPF or OVS datapath bypasses policyd's table")
	f.DurationVar(&o.datapathInterval, "datapath-interval", 30*time.Second, "with --detect-bypass: how often to sample (three windows in a row with traffic and nothing tracked report NotEnforcing)")
	f.BoolVar(&o.cutEstablished, "cut-established", false, "strict mode: after a commit, end the conntrack flows of this node's pods that the new table would not admit as new connections (and refuse mid-stream TCP pickups to or from them); off by default, when a policy change never cuts an established connection")
	f.StringSliceVar(&o.podNetworkExempt, "pod-network-exempt", nil, "CIDRs inside the pod network that are never a pod's (repeatable), left alone by its closing: a CNI's gateway or tunnel addresses that the Nodes do not publish (policyd already exempts every Node's status.addresses, the network and first address of each pod CIDR, and the tunnel and router addresses in Calico's and Cilium's Node annotations)")
	f.StringSliceVar(&o.podNetwork, "pod-network", nil, "CIDRs to add to the pod network (repeatable), which is otherwise the union of the Nodes' spec.podCIDRs; for CNIs that publish none. Addresses inside the pod network that no known pod holds are dropped, so a new pod gets no traffic until policyd knows its policies")
	f.BoolVar(&o.watchList, "watch-list", true, "stream the informers' initial state from the API server (WatchList, on by default in Kubernetes 1.34 API servers) instead of one LIST per resource, so start-up memory stays near the converted state; client-go falls back to LIST when the server lacks it. KUBE_FEATURE_WatchListClient overrides")
	f.BoolVar(&o.profiling, "profiling", false, "serve Go's runtime profiles (net/http/pprof) under /debug/pprof/ on --profiling-addr; off by default because profiles expose internals")
	f.StringVar(&o.profilingAddr, "profiling-addr", "127.0.0.1:6060", "loopback address for /debug/pprof/ with --profiling (a non-loopback address is refused); captures are capped at 30 s")
	f.BoolVar(&o.logDrops, "log-drops", true, "count and log the packets policies drop (NetworkPolicy default denies, ClusterNetworkPolicy Deny rules, conntrack-invalid drops), for policyd observe and policyd_policy_packets_total")
	f.BoolVar(&o.logAllowed, "log-allowed", false, "also count and log the new connections a policy rule allows (first packet only; established traffic is never logged)")
	f.Uint16Var(&o.logGroup, "log-group", agent.DefaultLogGroup, "nfnetlink_log group the table logs verdicts to (0-65535); one reader per group and network namespace, so pick one no other logger (ulogd) binds")
	f.Uint32Var(&o.logRate, "log-rate", agent.DefaultLogRate, "most packets a second the kernel logs on this node; above it packets are still counted (policyd_policy_packets_total), not logged (policyd_verdict_rate_limited_total). 0 logs every packet: not for busy nodes")
	f.Uint32Var(&o.logBurst, "log-burst", agent.DefaultLogBurst, "packets logged at once above --log-rate before the limit applies")
	f.StringVar(&o.verdictLogLevel, "verdict-log-level", "debug", "level at which each verdict record is written to the agent's log: debug (hidden at the default --log-level info), info, warn, error, or off")
	f.StringVar(&o.netns, "netns", "", "program the table in this named network namespace (/run/netns/NAME) instead of the agent's own; for labs and benchmarks")
	o.budget.add(cmd)
	return cmd
}

func newLogger(format, level string, w *os.File) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, &exitError{2, fmt.Errorf("--log-level: %w", err)}
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, &exitError{2, fmt.Errorf("--log-format %s: want text or json", format)}
}

// verdictLevel parses --verdict-log-level: a slog level, or off (nil).
func verdictLevel(s string) (slog.Leveler, error) {
	if s == "off" {
		return nil, nil
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(s)); err != nil {
		return nil, usagef("--verdict-log-level %s: want debug, info, warn, error or off", s)
	}
	return lv, nil
}

func runAgent(cmd *cobra.Command, o *runOptions) error {
	if o.nodeName == "" {
		return &exitError{2, errors.New("--node-name is required (or set NODE_NAME)")}
	}
	log, err := newLogger(o.logFormat, o.logLevel, os.Stderr)
	if err != nil {
		return err
	}
	recordLevel, err := verdictLevel(o.verdictLogLevel)
	if err != nil {
		return err
	}
	budget, err := o.budget.budget()
	if err != nil {
		return err
	}
	if o.maxVerdictStreams < 1 {
		return usagef("--max-verdict-streams %d: want 1 or more", o.maxVerdictStreams)
	}
	if o.profiling && !isLoopback(o.profilingAddr) {
		return &exitError{2, fmt.Errorf("--profiling-addr %s: profiles are served on loopback only (e.g. 127.0.0.1:6060; reach them from the node or with kubectl port-forward)", o.profilingAddr)}
	}
	if err := agent.UseWatchList(o.watchList); err != nil { // before any client exists
		return fmt.Errorf("--watch-list: %w", err)
	}
	cfg, err := o.kube.restConfig()
	if err != nil {
		return err
	}
	cfg.UserAgent = "policyd/" + version
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	cnpClient, err := npaclient.NewForConfig(cfg)
	if err != nil {
		return err
	}
	nopts := nft.Options{}
	if o.netns != "" {
		h, err := netns.GetFromName(o.netns)
		if err != nil {
			return fmt.Errorf("--netns %s: %w", o.netns, err)
		}
		defer h.Close()
		nopts.NetNS = int(h)
	}
	backend, err := nft.New(nopts)
	if err != nil {
		return fmt.Errorf("opening netlink: %w", err)
	}
	var podNet []netip.Prefix
	for _, c := range o.podNetwork {
		p, err := cluster.ParseCIDR(c) // as an ipBlock: never a prefix the kernel refuses
		if err != nil {
			return &exitError{2, fmt.Errorf("--pod-network %q: %w", c, err)}
		}
		podNet = append(podNet, p)
	}
	var podNetExempt []netip.Prefix
	for _, c := range o.podNetworkExempt {
		p, err := cluster.ParseCIDR(c) // as --pod-network: never a prefix the kernel refuses
		if err != nil {
			return &exitError{2, fmt.Errorf("--pod-network-exempt %q: %w", c, err)}
		}
		podNetExempt = append(podNetExempt, p)
	}
	var cut ctcut.Table
	if o.cutEstablished {
		k, err := ctcut.NewKernel(nopts.NetNS)
		if err != nil {
			return fmt.Errorf("--cut-established: opening ctnetlink: %w", err)
		}
		defer func() { _ = k.Close() }() // a netlink socket: nothing to flush
		cut = k
	}
	acfg := agent.Config{
		Verdicts: agent.VerdictConfig{
			Log:   compile.LogOptions{Drops: o.logDrops, Allowed: o.logAllowed, Group: o.logGroup, Rate: o.logRate, Burst: o.logBurst},
			NetNS: nopts.NetNS, RecordLevel: recordLevel, MaxStreams: o.maxVerdictStreams,
		},
		CutEstablished:   cut,
		DatapathInterval: o.datapathInterval,
		PodNetwork:       podNet,
		PodNetworkExempt: podNetExempt,
		NodeName:         o.nodeName, Client: client, CNPClient: cnpClient, Backend: backend,
		MinSyncInterval: o.minSync, MaxSyncInterval: o.maxSync, UnreadyAfter: o.unreadyAfter, Logger: log,
		Budget: budget,
	}
	if o.detectBypass {
		acfg.Datapath = agent.NewKernelDatapath(nopts.NetNS)
	}
	if o.events {
		b := record.NewBroadcaster()
		b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
		defer b.Shutdown()
		acfg.Recorder = b.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "policyd", Host: o.nodeName})
	}
	a, err := agent.New(acfg)
	if err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if o.metricsAddr != "" {
		var tok *bearerToken
		if o.metricsTokenFile != "" {
			// Unreadable now (a Secret not filled in yet) is not fatal:
			// the agent enforces regardless, and /metrics and /verdicts
			// refuse every request until the file holds a token.
			tok = newBearerToken(o.metricsTokenFile, log)
			go tok.run(ctx, tokenReread)
		}
		l, err := serveMetrics(log, o.metricsAddr, a.Handler(), tok)
		if err != nil {
			return err
		}
		defer l.shutdown()
	}
	if o.profiling {
		l, err := listen("--profiling-addr", o.profilingAddr, newServer(pprofHandler(), (maxProfileSeconds+10)*time.Second))
		if err != nil {
			return err
		}
		l.serve(log)
		defer l.shutdown()
		log.Info("serving profiles", "addr", l.ln.Addr().String())
	}
	if (o.logDrops || o.logAllowed) && o.logRate == 0 {
		log.Warn("--log-rate 0: the kernel logs every packet it drops (and with --log-allowed every new connection); on a busy node that is a flood of netlink messages", "group", o.logGroup)
	}
	log.Info("policyd agent starting", "version", version, "node", o.nodeName, "apiserver", cfg.Host)
	return a.Run(ctx)
}

func newCleanupCommand() *cobra.Command {
	var wait bool
	cmd := &cobra.Command{
		Use:   "cleanup [--wait]",
		Short: "Remove policyd's nftables table from this node (stops enforcement)",
		Long: `Delete the inet table "policyd" and nothing else. Run it after removing the
DaemonSet if you want NetworkPolicies to stop being enforced on this node:
the agent deliberately leaves its rules in place when it stops.

With --wait it then keeps running until it is terminated (SIGTERM or
SIGINT, exit 0), so that a DaemonSet running it stays Running on every node
it has cleaned: deploy/uninstall.yaml.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b, err := nft.New(nft.Options{})
			if err != nil {
				return err
			}
			if err := b.Cleanup(cmd.Context()); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "removed table inet policyd")
			if wait {
				ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
				defer stop()
				<-ctx.Done()
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&wait, "wait", false, "after removing the table, keep running until terminated (for a DaemonSet)")
	return cmd
}
