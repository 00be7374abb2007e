package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// cli runs the real root command as main does, with stdin, and returns what
// it wrote and its exit status.
func cli(t *testing.T, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	root := newRootCommand()
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetIn(strings.NewReader(stdin))
	code = execute(root, args, &errOut)
	return out.String(), errOut.String(), code
}

const examples = "../../examples"

// TestExitCodes is the exit-status contract (README, "Exit status"): every
// failure through the real root command, its code, and that the message
// names the flag, file or object at fault.
func TestExitCodes(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	broken := filepath.Join(dir, "broken.yaml")
	require.NoError(t, os.WriteFile(broken, []byte("apiVersion: v1\nkind: Pod\nmetadata:\n  name: [unclosed\n"), 0o644))
	emptyKubeconfig := filepath.Join(dir, "kubeconfig")
	require.NoError(t, os.WriteFile(emptyKubeconfig, nil, 0o644))
	otherKubeconfig := filepath.Join(dir, "other")
	require.NoError(t, os.WriteFile(otherKubeconfig, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
contexts: [{name: ctx, context: {cluster: c}}]
current-context: ctx
`), 0o644))

	tests := []struct {
		name string
		args []string
		code int
		// names are what the message (stderr, or stdout for verdicts) must contain.
		names []string
		// absent must not appear on stderr.
		absent []string
	}{
		{"allowed", []string{"explain", "--manifests", examples, "shop/api", "shop/db", "--port", "5432"}, 0, []string{"ALLOWED"}, nil},
		{"denied", []string{"explain", "--manifests", examples, "shop/frontend-1", "shop/db", "--port", "5432"}, 1, []string{"DENIED"}, nil},
		{"matrix is not a verdict", []string{"explain", "--manifests", examples, "--matrix"}, 0, []string{"TCP/5432"}, nil},
		{"version", []string{"version"}, 0, []string{"commit"}, nil},
		{"unknown command", []string{"explian"}, 2, []string{`"explian"`, "--help"}, nil},
		{"unknown flag", []string{"explain", "--prot", "80"}, 2, []string{"--prot"}, nil},
		{"unknown shorthand", []string{"compile", "-x"}, 2, []string{"-x"}, nil},
		{"too few arguments", []string{"explain", "--manifests", examples, "shop/api"}, 2, []string{"SRC DST", "1 arguments"}, nil},
		{"too many arguments", []string{"explain", "--manifests", examples, "a", "b", "c"}, 2, []string{"SRC DST"}, nil},
		{"matrix with arguments", []string{"explain", "--manifests", examples, "--matrix", "a", "b"}, 2, []string{"--matrix"}, nil},
		{"compile takes no arguments", []string{"compile", "node-a"}, 2, []string{`"node-a"`}, nil},
		{"missing manifests path", []string{"explain", "--manifests", filepath.Join(dir, "nope"), "a/b", "c/d"}, 2, []string{"-f", "nope"}, nil},
		{"missing manifests path, compile", []string{"compile", "--manifests", filepath.Join(dir, "nope"), "--node", "n"}, 2, []string{"nope"}, nil},
		{"broken YAML", []string{"explain", "--manifests", broken, "a/b", "c/d"}, 2, []string{"broken.yaml"}, nil},
		{"broken YAML on stdin", []string{"compile", "--manifests", "-", "--node", "n"}, 2, []string{"stdin"}, nil},
		{"no cluster", []string{"explain", "--kubeconfig", emptyKubeconfig, "a/b", "c/d"}, 2, []string{"no cluster found", "-f PATH"}, []string{"KUBERNETES_MASTER"}},
		{"no cluster, compile", []string{"compile", "--kubeconfig", emptyKubeconfig, "--node", "n"}, 2, []string{"no cluster found", "-f PATH"}, []string{"KUBERNETES_MASTER"}},
		{"unknown context", []string{"explain", "--kubeconfig", otherKubeconfig, "--context", "nope", "a/b", "c/d"}, 2, []string{`"nope"`}, nil},
		{"no cluster, run", []string{"run", "--node-name", "n", "--kubeconfig", emptyKubeconfig}, 2, []string{"no cluster found", "--kubeconfig"}, []string{"KUBERNETES_MASTER"}},
		{"port too large", []string{"explain", "--manifests", examples, "shop/api", "shop/db", "--port", "99999"}, 2, []string{"--port 99999"}, nil},
		{"port negative", []string{"explain", "--manifests", examples, "shop/api", "shop/db", "--port", "-5"}, 2, []string{"--port -5"}, nil},
		{"port zero is not unset", []string{"explain", "--manifests", examples, "shop/api", "shop/db", "--port", "0"}, 2, []string{"--port 0"}, nil},
		{"port not a number", []string{"explain", "--manifests", examples, "shop/api", "shop/db", "--port", "http"}, 2, []string{"--port"}, nil},
		{"bad protocol", []string{"explain", "--manifests", examples, "shop/api", "shop/db", "--protocol", "icmp"}, 2, []string{"--protocol"}, nil},
		{"bad output", []string{"explain", "--manifests", examples, "shop/api", "shop/db", "-o", "xml"}, 2, []string{"-o xml"}, nil},
		{"bad matrix output", []string{"explain", "--manifests", examples, "--matrix", "-o", "wide"}, 2, []string{"-o wide"}, nil},
		{"bad selector", []string{"explain", "--manifests", examples, "--from", "app in (", "shop/db"}, 2, []string{"--from"}, nil},
		{"selector matches nothing", []string{"explain", "--manifests", examples, "--from", "app=nope", "shop/db"}, 2, []string{"--from", "app=nope"}, nil},
		{"unknown pod", []string{"explain", "--manifests", examples, "shop/nope", "shop/db"}, 2, []string{"shop/nope"}, nil},
		{"unknown bare pod in -n", []string{"explain", "--manifests", examples, "-n", "shop", "nope", "db"}, 2, []string{"shop/nope"}, nil},
		{"compile without --node", []string{"compile", "--manifests", examples}, 2, []string{"--node"}, nil},
		{"compile for an unknown node", []string{"compile", "--manifests", examples, "--node", "node-c"}, 2, []string{"--node node-c", "node-a, node-b"}, nil},
		{"compile bad --table", []string{"compile", "--manifests", examples, "--node", "node-a", "--table", "a b"}, 2, []string{"--table"}, nil},
		{"lab unknown --cni", []string{"lab", "--manifests", examples, "--cni", "foo"}, 2, []string{"--cni foo"}, []string{"config.CNI"}},
		{"lab neither input", []string{"lab"}, 2, []string{"-f/--filename", "--conformance"}, nil},
		{"lab --nodes 0", []string{"lab", "--conformance", "--nodes", "0"}, 2, []string{"--nodes"}, nil},
		{"lab --log-allowed alone", []string{"lab", "--conformance", "--log-allowed"}, 2, []string{"--log-allowed needs --verdicts"}, nil},
		{"run without --node-name", []string{"run", "--node-name", ""}, 2, []string{"--node-name"}, nil},
		{"run bad --log-format", []string{"run", "--node-name", "n", "--log-format", "xml"}, 2, []string{"--log-format"}, nil},
		{"run bad --max-verdict-streams", []string{"run", "--node-name", "n", "--max-verdict-streams", "0"}, 2, []string{"--max-verdict-streams 0"}, nil},
		{"completion needs a shell", []string{"completion", "tcsh"}, 2, []string{"tcsh"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			stdin := ""
			if tt.name == "broken YAML on stdin" {
				stdin = "kind: Pod\napiVersion: v1\nmetadata: {name: a, name: b}\n"
			}
			stdout, stderr, code := cli(t, stdin, tt.args...)
			assert.Equal(t, tt.code, code, "exit status of policyd %s\nstdout: %s\nstderr: %s", strings.Join(tt.args, " "), stdout, stderr)
			for _, n := range tt.names {
				assert.Contains(t, stdout+stderr, n, "policyd %s must name %q", strings.Join(tt.args, " "), n)
			}
			for _, n := range tt.absent {
				assert.NotContains(t, stderr, n)
			}
			if tt.code == 2 {
				assert.Contains(t, stderr, "error: ", "a usage error is reported on stderr")
				assert.Empty(t, stdout, "a usage error prints no result")
			}
		})
	}
}

func TestExplain_KubectlHabits(t *testing.T) {
	t.Parallel()
	var stdin strings.Builder
	for _, f := range []string{"namespaces.yaml", "pods.yaml", "services.yaml"} {
		b, err := os.ReadFile(filepath.Join(examples, f))
		require.NoError(t, err)
		stdin.WriteString(string(b) + "\n---\n")
	}
	pols, err := filepath.Glob(filepath.Join(examples, "policies", "*.yaml"))
	require.NoError(t, err)
	for _, f := range pols {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		stdin.WriteString(string(b) + "\n---\n")
	}

	t.Run("stdin, -n and bare names give what namespace/name gives", func(t *testing.T) {
		want, _, code := cli(t, "", "explain", "--manifests", examples, "shop/frontend-1", "shop/api", "--port", "9090")
		require.Equal(t, 0, code)
		for _, args := range [][]string{
			{"explain", "--manifests", "-", "-n", "shop", "frontend-1", "api", "--port", "9090"},
			{"explain", "--manifests", "-", "-n", "shop", "pod/frontend-1", "pods/api", "--port", "9090"},
			{"explain", "--manifests", "-", "-n", "monitoring", "shop/frontend-1", "po/shop/api", "--port", "9090"},
		} {
			got, _, code := cli(t, stdin.String(), args...)
			assert.Equal(t, 0, code, "%v", args)
			assert.Equal(t, want, got, "%v", args)
		}
	})
	t.Run("--from and --to select pods", func(t *testing.T) {
		out, _, code := cli(t, "", "explain", "--manifests", examples, "-n", "shop", "--from", "app=frontend", "--to", "app=api", "--port", "9090")
		assert.Equal(t, 0, code, out)
		assert.Contains(t, out, "ALLOWED  shop/frontend-1 -> shop/api  TCP/9090")
		assert.Contains(t, out, "ALLOWED  shop/frontend-2 -> shop/api  TCP/9090")
		out, _, code = cli(t, "", "explain", "--manifests", examples, "--from", "app=frontend", "shop/db", "--port", "5432")
		assert.Equal(t, 1, code, out)
		assert.Equal(t, 2, strings.Count(out, "DENIED"), out)
	})
	t.Run("matrix filters", func(t *testing.T) {
		out, _, code := cli(t, "", "explain", "--manifests", examples, "--matrix", "-n", "shop", "-o", "jsonl")
		require.Equal(t, 0, code)
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			assert.Contains(t, l, `"from":"shop/`)
			assert.Contains(t, l, `"to":"shop/`)
		}
		out, _, code = cli(t, "", "explain", "--manifests", examples, "--matrix", "--from", "app=frontend", "--to", "app=api", "-o", "jsonl")
		require.Equal(t, 0, code)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		assert.NotEmpty(t, lines)
		for _, l := range lines {
			assert.Contains(t, l, `"from":"shop/frontend-`)
			assert.Contains(t, l, `"to":"shop/api"`)
		}
		out, _, code = cli(t, "", "explain", "--manifests", examples, "--matrix", "-l", "app in (api,db)")
		require.Equal(t, 0, code)
		assert.NotContains(t, out, "frontend")
		assert.Contains(t, out, "shop/db")
	})
	t.Run("-o yaml has the JSON fields", func(t *testing.T) {
		out, _, code := cli(t, "", "explain", "--manifests", examples, "shop/api", "shop/db", "--port", "5432", "-o", "yaml")
		require.Equal(t, 0, code)
		for _, k := range []string{"from: shop/api", "to: shop/db", "port: 5432", "protocol: TCP", "allowed: true", "egress:", "ingress:"} {
			assert.Contains(t, out, k)
		}
	})
	t.Run("skipped objects are one line, listed with -v", func(t *testing.T) {
		// examples/ holds only kinds policyd reads (its Service included);
		// a ConfigMap on stdin is skipped.
		in, err := os.ReadFile(filepath.Join(examples, "pods.yaml"))
		require.NoError(t, err)
		stdin := string(in) + "\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: shop}\n"
		_, stderr, _ := cli(t, stdin, "explain", "--manifests", "-", "shop/api", "shop/db", "--port", "5432")
		assert.NotContains(t, stderr, "ConfigMap")
		assert.Contains(t, stderr, "note: skipped 1 object of kinds policyd does not use (-v lists them)")
		_, stderr, _ = cli(t, stdin, "explain", "-v", "--manifests", "-", "shop/api", "shop/db", "--port", "5432")
		assert.Contains(t, stderr, "skipped v1 ConfigMap")
	})
	t.Run("the text says allowed once and spells out a missed port list", func(t *testing.T) {
		out, _, _ := cli(t, "", "explain", "--manifests", examples, "monitoring/prometheus", "shop/db", "--port", "9100")
		assert.Contains(t, out, "monitoring/prometheus: allows: no policy in namespace monitoring")
		assert.NotContains(t, out, "allowed:")
		out, _, _ = cli(t, "", "explain", "--manifests", examples, "shop/frontend-1", "shop/api", "--port", "9100")
		assert.Contains(t, out, "peer 0, no port entry matched: peer matched but port TCP/9100")
	})
}

func TestCompile_PreviewTableUnlessAsked(t *testing.T) {
	t.Parallel()
	out, _, code := cli(t, "", "compile", "--manifests", examples, "--node", "node-a")
	require.Equal(t, 0, code)
	assert.Contains(t, out, "\ntable inet policyd-preview {\n")
	assert.NotContains(t, out, "table inet policyd {")
	out, _, code = cli(t, "", "compile", "--manifests", examples, "--node", "node-a", "--table", "policyd")
	require.Equal(t, 0, code)
	assert.Contains(t, out, "\ntable inet policyd {\n")
}

func TestRootHelp_ListsEachCommandOnce(t *testing.T) {
	t.Parallel()
	out, _, code := cli(t, "", "--help")
	require.Equal(t, 0, code)
	for _, c := range []string{"run", "explain", "compile", "lab", "cleanup", "version", "completion"} {
		assert.Equal(t, 1, strings.Count(out, "\n  "+c+" "), "command %s in:\n%s", c, out)
	}
	out, _, code = cli(t, "", "completion", "bash")
	require.Equal(t, 0, code)
	assert.Contains(t, out, "bash completion")
}

// TestBinary_KubectlPluginAndVersion builds the binary as the Makefile does
// and runs it through a symlink named kubectl-policyd, as kubectl runs
// plugins.
func TestBinary_KubectlPluginAndVersion(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	t.Parallel()
	dir := t.TempDir()
	bin := filepath.Join(dir, "policyd")
	build := exec.Command("go", "build", "-ldflags", "-X main.version=v9.8.7 -X main.commit=abc123", "-o", bin, ".")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "%s", out)
	plugin := filepath.Join(dir, "kubectl-policyd")
	require.NoError(t, os.Symlink(bin, plugin))

	got, err := exec.Command(bin, "version").Output()
	require.NoError(t, err)
	assert.Contains(t, string(got), "policyd v9.8.7\ncommit abc123\ngo1.")
	got, err = exec.Command(bin, "--version").Output()
	require.NoError(t, err)
	assert.Contains(t, string(got), "v9.8.7 (commit abc123")

	got, err = exec.Command(plugin, "--help").Output()
	require.NoError(t, err)
	assert.Contains(t, string(got), "Usage:\n  kubectl policyd [command]")
	got, err = exec.Command(plugin, "explain", "--help").Output()
	require.NoError(t, err)
	assert.Contains(t, string(got), "Usage:\n  kubectl policyd explain SRC DST")
	got, err = exec.Command(plugin, "explain", "--manifests", examples, "-n", "shop", "frontend-1", "api", "--port", "9090").Output()
	require.NoError(t, err)
	assert.Contains(t, string(got), "ALLOWED  shop/frontend-1 -> shop/api  TCP/9090")
	for _, c := range []struct {
		args []string
		code int
	}{
		{[]string{"explain", "--manifests", examples, "-n", "shop", "frontend-1", "db", "--port", "5432"}, 1},
		{[]string{"explain", "--manifests", examples, "-n", "shop", "frontend-1", "db", "--port", "99999"}, 2},
		{[]string{"nope"}, 2},
	} {
		err := exec.Command(plugin, c.args...).Run()
		var ee *exec.ExitError
		require.ErrorAs(t, err, &ee, "%v", c.args)
		assert.Equal(t, c.code, ee.ExitCode(), "%v", c.args)
	}
}

// TestManifests_RepeatedFlagsReadTheUnion: policies in one -f and the pods
// in another give the answer of the whole folder, with every verb that reads
// manifests. A plain string flag kept only the last -f, and explain said
// ALLOWED with every policy ignored.
func TestManifests_RepeatedFlagsReadTheUnion(t *testing.T) {
	t.Parallel()
	cluster := []string{"-f", filepath.Join(examples, "namespaces.yaml"), "-f", filepath.Join(examples, "pods.yaml"), "--filename", filepath.Join(examples, "services.yaml")}
	withPolicies := append([]string{"--manifests", filepath.Join(examples, "policies"), "-f", filepath.Join(examples, "cluster-policies")}, cluster...)

	want, _, code := cli(t, "", "explain", "-f", examples, "shop/frontend-1", "shop/db", "--port", "5432")
	require.Equal(t, 1, code, "the examples deny frontend-1 -> db")
	got, _, code := cli(t, "", append(append([]string{"explain"}, withPolicies...), "shop/frontend-1", "shop/db", "--port", "5432")...)
	assert.Equal(t, 1, code)
	assert.Equal(t, want, got)

	want, _, _ = cli(t, "", "explain", "-f", examples, "--matrix")
	got, _, _ = cli(t, "", append([]string{"explain", "--matrix"}, withPolicies...)...)
	assert.Equal(t, want, got, "matrix")

	want, _, wantCode := cli(t, "", "lint", "-f", examples, "-o", "json")
	got, _, code = cli(t, "", append([]string{"lint", "-o", "json"}, withPolicies...)...)
	assert.Equal(t, wantCode, code, "lint")
	assert.Equal(t, want, got, "lint")

	want, _, code = cli(t, "", "compile", "-f", examples, "--node", "node-a")
	require.Equal(t, 0, code, "compile")
	got, _, _ = cli(t, "", append([]string{"compile", "--node", "node-a"}, withPolicies...)...)
	assert.Equal(t, want, got, "compile")
}

// TestExplain_OperatorsSlips: a named --port means the destination's port of
// that name (a pod's container port, a Service's port), and a pod asked for
// in the wrong namespace gets the pod it was probably meant to be.
func TestExplain_OperatorsSlips(t *testing.T) {
	t.Parallel()
	byNumber, _, code := cli(t, "", "explain", "-f", examples, "shop/frontend-1", "shop/api", "--port", "9090")
	require.Equal(t, 0, code)
	byName, _, code := cli(t, "", "explain", "-f", examples, "shop/frontend-1", "shop/api", "--port", "api")
	assert.Equal(t, 0, code)
	assert.Equal(t, byNumber, byName, "--port api is shop/api's container port 9090")

	// metrics is 9100 on db, whose policies admit only monitoring there.
	want, _, wantCode := cli(t, "", "explain", "-f", examples, "shop/frontend-1", "shop/db", "--port", "9100")
	got, _, code := cli(t, "", "explain", "-f", examples, "shop/frontend-1", "shop/db", "--port", "metrics")
	assert.Equal(t, wantCode, code)
	assert.Equal(t, want, got)

	want, _, _ = cli(t, "", "explain", "-f", examples, "shop/api", "svc/shop/frontend", "--port", "80")
	got, _, _ = cli(t, "", "explain", "-f", examples, "shop/api", "svc/shop/frontend", "--port", "http")
	assert.Equal(t, want, got, "a Service's port by its name")

	_, stderr, code := cli(t, "", "explain", "-f", examples, "shop/frontend-1", "shop/db", "--port", "grpc")
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, "shop/db declares no container port of that name (named ports: metrics, postgres)")
	_, stderr, code = cli(t, "", "explain", "-f", examples, "shop/frontend-1", "shop/db", "--port", "Bad_Name")
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, `--port "Bad_Name": neither a number nor a port name`)

	_, stderr, code = cli(t, "", "explain", "-f", examples, "monitoring/frontend-1", "shop/api", "--port", "9090")
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, "pod monitoring/frontend-1 not found; did you mean shop/frontend-1?")
	_, stderr, code = cli(t, "", "explain", "-f", examples, "-n", "shop", "frontend", "api", "--port", "9090")
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, "pod shop/frontend not found; did you mean shop/frontend-1 or shop/frontend-2?")
}

// TestOffline_ARepoOfWorkloads: a folder of Deployments, a StatefulSet and
// a policy (no Pod objects, no addresses) is judged by explain, matrix and
// lint as the pods those workloads make; a matrix with nothing to judge
// says why and fails.
func TestOffline_ARepoOfWorkloads(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	workload := func(kind, name, port string, n int) string {
		extra := ""
		if kind == "StatefulSet" {
			extra = "  serviceName: " + name + "\n"
		}
		return fmt.Sprintf(`apiVersion: apps/v1
kind: %s
metadata: {name: %s, namespace: shop}
spec:
%s  replicas: %d
  selector: {matchLabels: {app: %s}}
  template:
    metadata: {labels: {app: %s}}
    spec: {containers: [{name: c, image: i, ports: [{name: %s, containerPort: %s}]}]}
`, kind, name, extra, n, name, name, strings.Split(port, ":")[0], strings.Split(port, ":")[1])
	}
	files := map[string]string{
		"ns.yaml":        "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n",
		"frontend.yaml":  workload("Deployment", "frontend", "http:8080", 3),
		"api.yaml":       workload("Deployment", "api", "api:9090", 2),
		"db.yaml":        workload("StatefulSet", "db", "pg:5432", 2),
		"policy/db.yaml": "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: db-from-api, namespace: shop}\nspec:\n  podSelector: {matchLabels: {app: db}}\n  ingress: [{from: [{podSelector: {matchLabels: {app: api}}}], ports: [{port: pg}]}]\n",
	}
	for name, body := range files {
		require.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644))
	}

	out, stderr, code := cli(t, "", "explain", "-f", dir, "shop/api", "shop/db-0", "--port", "pg")
	assert.Equal(t, 0, code, "%s%s", out, stderr)
	assert.Contains(t, out, "ALLOWED  shop/api -> shop/db-0  TCP/5432")
	assert.Contains(t, stderr, "judged where policyd lab would place them")
	out, _, code = cli(t, "", "explain", "-f", dir, "shop/frontend", "shop/db-0", "--port", "5432")
	assert.Equal(t, 1, code)
	assert.Contains(t, out, "DENIED  shop/frontend -> shop/db-0")

	// A workload as an end (issue 29 item 7): TYPE/NAME in -n stands for
	// its pods, as kubectl reads deploy/NAME.
	out, stderr, code = cli(t, "", "explain", "-f", dir, "-n", "shop", "deploy/api", "sts/db", "--port", "pg")
	assert.Equal(t, 0, code, "%s%s", out, stderr)
	assert.Contains(t, out, "ALLOWED  shop/api -> shop/db-0  TCP/5432")
	out, _, code = cli(t, "", "explain", "-f", dir, "-n", "shop", "deployment.apps/frontend", "statefulsets/db", "--port", "5432")
	assert.Equal(t, 1, code)
	assert.Contains(t, out, "DENIED  shop/frontend -> shop/db-0")
	out, stderr, code = cli(t, "", "explain", "-f", dir, "-n", "shop", "deploy/api", "sts/db", "--port", "pg", "--all-replicas")
	assert.Equal(t, 0, code, "%s%s", out, stderr)
	assert.Equal(t, 2*2, strings.Count(out, "ALLOWED  shop/api-"), "every replica of api to every replica of db:\n%s", out)
	_, stderr, code = cli(t, "", "explain", "-f", dir, "-n", "shop", "deploy/nope", "sts/db")
	assert.Equal(t, 2, code)
	assert.Contains(t, stderr, "deployment shop/nope not found in -f")
	_, stderr, code = cli(t, "", "explain", "-f", dir, "-n", "shop", "sts/api", "sts/db")
	assert.Equal(t, 2, code, "api is a Deployment, not a StatefulSet")
	assert.Contains(t, stderr, "statefulset shop/api not found")

	out, _, code = cli(t, "", "explain", "-f", dir, "--matrix", "-o", "jsonl")
	assert.Equal(t, 0, code)
	assert.Equal(t, 3*2, strings.Count(out, "\n"), "3 pods, 2 peers each, at the destination's one port:\n%s", out)
	out, _, code = cli(t, "", "explain", "-f", dir, "--matrix", "-o", "jsonl", "--all-replicas")
	assert.Equal(t, 0, code)
	assert.Equal(t, 7*6, strings.Count(out, "\n"), "7 replicas, 6 peers each")

	_, _, code = cli(t, "", "lint", "-f", dir)
	assert.NotEqual(t, 2, code, "lint reads the workloads as pods")

	_, stderr, code = cli(t, "", "explain", "-f", filepath.Join(dir, "ns.yaml"), "--matrix")
	assert.Equal(t, 2, code, "an empty matrix is not a success")
	assert.Contains(t, stderr, "no pair of pods to judge: the input has 0 pod(s)")
}
