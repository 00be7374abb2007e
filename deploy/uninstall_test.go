package deploy_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/policyd/policyd/deploy"
)

func readUninstall(t *testing.T) []document {
	t.Helper()
	docs, err := deploy.UninstallDocuments()
	if err != nil {
		t.Fatal(err)
	}
	return docs
}

// TestUninstall_CleansEveryNodeWithTheAgentsPrivileges: the uninstall
// DaemonSet runs `policyd cleanup` where the agent ran (host network, every
// taint tolerated), from the agent's image, with exactly the agent's
// security context (NET_ADMIN alone), no API credentials, and becomes Ready
// only after the cleanup succeeded (an init container).
func TestUninstall_CleansEveryNodeWithTheAgentsPrivileges(t *testing.T) {
	t.Parallel()
	docs := readUninstall(t)
	ns := find[*corev1.Namespace](t, docs)
	if ns.Labels["pod-security.kubernetes.io/enforce"] != "privileged" {
		t.Errorf("namespace %s must allow host network and NET_ADMIN (pod security level privileged), labels %v", ns.Name, ns.Labels)
	}
	ds := find[*appsv1.DaemonSet](t, docs)
	if ds.Namespace != ns.Name {
		t.Errorf("DaemonSet in namespace %q, want %q (the manifest's own, so deleting it removes everything)", ds.Namespace, ns.Name)
	}
	agent := find[*appsv1.DaemonSet](t, readManifest(t))
	spec, want := ds.Spec.Template.Spec, agent.Spec.Template.Spec
	if !spec.HostNetwork {
		t.Error("the table is in the node's network namespace: hostNetwork must be true")
	}
	if !cmp.Equal(spec.Tolerations, want.Tolerations) {
		t.Errorf("tolerations %v, want the agent's %v: every node the agent ran on", spec.Tolerations, want.Tolerations)
	}
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		t.Error("cleanup reads nothing from the API server: automountServiceAccountToken must be false")
	}
	if len(spec.InitContainers) != 1 || !slices.Equal(spec.InitContainers[0].Args, []string{"cleanup"}) {
		t.Fatalf("want one init container running cleanup, got %+v", spec.InitContainers)
	}
	if len(spec.Containers) != 1 || !slices.Equal(spec.Containers[0].Args, []string{"cleanup", "--wait"}) {
		t.Fatalf("want one container running cleanup --wait, got %+v", spec.Containers)
	}
	for _, c := range append(spec.InitContainers, spec.Containers...) {
		if c.Image != want.Containers[0].Image {
			t.Errorf("container %s runs %s, want the agent's image %s", c.Name, c.Image, want.Containers[0].Image)
		}
		if diff := cmp.Diff(want.Containers[0].SecurityContext, c.SecurityContext); diff != "" {
			t.Errorf("container %s: security context differs from the agent's (-agent +cleanup):\n%s", c.Name, diff)
		}
		if c.Resources.Limits.Memory().IsZero() {
			t.Errorf("container %s has no memory limit", c.Name)
		}
	}
}

// The uninstall kustomization sets the image as the install's does, so one
// `kustomize edit set image` recipe serves both.
func TestUninstall_KustomizationSetsTheAgentsImage(t *testing.T) {
	t.Parallel()
	type kust struct {
		Resources []string `json:"resources"`
		Images    []any    `json:"images"`
	}
	read := func(p string) kust {
		raw, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var k kust
		if err := yaml.Unmarshal(raw, &k); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		return k
	}
	install, uninstall := read("kustomization.yaml"), read(filepath.Join("uninstall", "kustomization.yaml"))
	if !slices.Equal(uninstall.Resources, []string{filepath.Base(deploy.UninstallName)}) {
		t.Errorf("uninstall/kustomization.yaml resources %v, want %s alone", uninstall.Resources, filepath.Base(deploy.UninstallName))
	}
	if diff := cmp.Diff(install.Images, uninstall.Images); diff != "" {
		t.Errorf("images differ (-install +uninstall):\n%s", diff)
	}
}

// The binary the image runs knows `cleanup --wait`.
func TestUninstall_BinaryTakesTheArgs(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("skipping in -short mode: builds cmd/policyd")
	}
	bin := filepath.Join(t.TempDir(), "policyd")
	if out, err := exec.CommandContext(t.Context(), "go", "build", "-o", bin, "../cmd/policyd").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	ds := find[*appsv1.DaemonSet](t, readUninstall(t))
	for _, c := range append(ds.Spec.Template.Spec.InitContainers, ds.Spec.Template.Spec.Containers...) {
		args := append(slices.Clone(c.Args), "--help")
		if out, err := exec.CommandContext(t.Context(), bin, args...).CombinedOutput(); err != nil {
			t.Errorf("policyd %q: %v\n%s", args, err, out)
		}
	}
}

// TestUninstall_OnRealAPIServer: every object passes a real API server's
// validation and admission (server-side dry run), without warnings.
func TestUninstall_OnRealAPIServer(t *testing.T) {
	sv := newServer(t)
	ctx := t.Context()
	docs := readUninstall(t)
	t.Cleanup(func() {
		ns := find[*corev1.Namespace](t, docs)
		if err := sv.s.DeleteNamespace(context.Background(), ns.Name); err != nil {
			t.Errorf("delete namespace %s: %v", ns.Name, err)
		}
	})
	for _, d := range docs {
		_, isNS := d.Object.(*corev1.Namespace)
		warnings, err := sv.create(ctx, d, !isNS)
		if err != nil {
			t.Fatalf("create (dry run: %v): %v", !isNS, err)
		}
		if len(warnings) != 0 {
			t.Errorf("%T drew API server warnings: %q", d.Object, warnings)
		}
	}
}
