// Command hostile writes the hostile inputs of policy/compile/hostile as
// manifests, or compiles one in process and prints what it cost:
//
//	go run ./hack/hostile -shape long-excepts -n 40000 -out /tmp/h   # writes /tmp/h/long-excepts.yaml
//	go run ./hack/hostile -shape long-excepts -n 40000 -measure      # rules, elements, chains, time, peak RSS
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"syscall"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/policyd/policyd/policy/compile"
	"github.com/policyd/policyd/policy/compile/hostile"
	"github.com/policyd/policyd/selectors"
)

func main() {
	shape := flag.String("shape", "", "shape name (see policy/compile/hostile)")
	n := flag.Int("n", 100, "size N")
	m := flag.Int("m", 10, "size M")
	pods := flag.Int("pods", 10, "tenant pods")
	ipv6 := flag.Bool("ipv6", false, "dual-stack tenant pods")
	out := flag.String("out", "", "directory to write the manifests to")
	measure := flag.Bool("measure", false, "compile node-1 in process and print the cost")
	budget := flag.Bool("budget", false, "with -measure: compile with the default budgets")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of -measure's compile")
	flag.Parse()
	var s hostile.Spec
	for _, sh := range hostile.Shapes {
		if sh.String() == *shape {
			s.Shape = sh
		}
	}
	if s.Shape == hostile.ShapeInvalid {
		fmt.Fprintf(os.Stderr, "unknown -shape %q; one of %v\n", *shape, hostile.Shapes)
		os.Exit(2)
	}
	s.N, s.M, s.Pods, s.IPv6 = *n, *m, *pods, *ipv6
	objs := hostile.Build(s)
	if *out != "" {
		var buf bytes.Buffer
		var docs []any
		for _, o := range objs.Namespaces {
			o.APIVersion, o.Kind = "v1", "Namespace"
			docs = append(docs, o)
		}
		for _, o := range objs.Pods {
			o.APIVersion, o.Kind = "v1", "Pod"
			docs = append(docs, o)
		}
		for _, o := range objs.Policies {
			docs = append(docs, o)
		}
		for _, o := range objs.ClusterPolicies {
			docs = append(docs, o)
		}
		for _, d := range docs {
			b, err := yaml.Marshal(d)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			buf.WriteString("---\n")
			buf.Write(b)
		}
		if err := os.MkdirAll(*out, 0o755); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		path := filepath.Join(*out, fmt.Sprintf("%s-%d-%d.yaml", s.Shape, s.N, s.M))
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		largest := 0
		for _, o := range objs.Policies {
			b, _ := json.Marshal(o)
			largest = max(largest, len(b))
		}
		for _, o := range objs.ClusterPolicies {
			b, _ := json.Marshal(o)
			largest = max(largest, len(b))
		}
		fmt.Printf("%s %d bytes; the largest policy object is %d bytes of JSON\n", path, buf.Len(), largest)
	}
	if *measure {
		start := time.Now()
		snap := objs.Snapshot()
		conv := time.Since(start)
		if *cpuprofile != "" {
			f, err := os.Create(*cpuprofile)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			_ = pprof.StartCPUProfile(f)
		}
		start = time.Now()
		cc := &compile.Compiler{}
		if *budget {
			cc.Options.Budget = compile.DefaultBudget(0)
		}
		rs, err := cc.Compile(selectors.FromSnapshot(snap), hostile.Node)
		d := time.Since(start)
		if *cpuprofile != "" {
			pprof.StopCPUProfile()
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		rules, elems := 0, 0
		for _, c := range rs.Chains {
			rules += len(c.Rules)
		}
		for _, st := range rs.Sets {
			elems += st.Len()
		}
		var ru syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		fmt.Printf("%s N=%d M=%d pods=%d: rules %d, elements %d, chains %d, convert %s, compile %s, peak RSS %d MiB\n",
			s.Shape, s.N, s.M, *pods, rules, elems, len(rs.Chains), conv.Round(time.Millisecond), d.Round(time.Millisecond), ru.Maxrss/1024)
		for _, q := range cc.Quarantined() {
			fmt.Println("  quarantined:", q.Message())
		}
	}
}
