package deploy_test

import (
	"os"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/yaml"

	"github.com/policyd/policyd/deploy"
)

// TestKustomization_SetsTheDaemonSetImage: deploy/kustomization.yaml applies
// the shipped manifest, and its images entry names the image the DaemonSet
// runs, so `kustomize edit set image policyd=…` (or kubectl apply -k with an
// edited newName/newTag) replaces it.
func TestKustomization_SetsTheDaemonSetImage(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var k struct {
		APIVersion string   `json:"apiVersion"`
		Kind       string   `json:"kind"`
		Resources  []string `json:"resources"`
		Images     []struct {
			Name    string `json:"name"`
			NewName string `json:"newName"`
			NewTag  string `json:"newTag"`
		} `json:"images"`
	}
	if err := yaml.UnmarshalStrict(raw, &k); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	if k.Kind != "Kustomization" || len(k.Resources) != 1 || k.Resources[0] != deploy.ManifestName {
		t.Fatalf("kustomization.yaml must be a Kustomization of %s alone, got %+v", deploy.ManifestName, k)
	}
	ds := find[*appsv1.DaemonSet](t, readManifest(t))
	image := ds.Spec.Template.Spec.Containers[0].Image
	name, _, _ := strings.Cut(image, ":")
	if len(k.Images) != 1 || k.Images[0].Name != name {
		t.Fatalf("kustomization.yaml images must name the DaemonSet's image %q (%s), got %+v", name, image, k.Images)
	}
	if got := k.Images[0].NewName + ":" + k.Images[0].NewTag; got != image {
		t.Errorf("kustomization.yaml sets %s, the manifest runs %s: apply -f and apply -k should agree by default", got, image)
	}
}
