package krew

import (
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// manifest is the part of krew's Plugin (v1alpha2) that policyd fills.
type manifest struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec struct {
		Version          string     `json:"version"`
		Homepage         string     `json:"homepage"`
		ShortDescription string     `json:"shortDescription"`
		Description      string     `json:"description"`
		Caveats          string     `json:"caveats"`
		Platforms        []platform `json:"platforms"`
	} `json:"spec"`
}

type platform struct {
	Selector struct {
		MatchLabels map[string]string `json:"matchLabels"`
	} `json:"selector"`
	URI    string `json:"uri"`
	SHA256 string `json:"sha256"`
	Files  []struct {
		From string `json:"from"`
		To   string `json:"to"`
	} `json:"files"`
	Bin string `json:"bin"`
}

// versionPlaceholder is what a release replaces with its tag.
const versionPlaceholder = "@VERSION@"

var (
	semver    = regexp.MustCompile(`^v\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$`)
	sha256Hex = regexp.MustCompile(`^[0-9a-f]{64}$`)
	// crossLine and crossOut are how the Makefile's cross target names the
	// platforms and the binary it writes for each.
	crossLine = regexp.MustCompile(`(?m)^CROSS_PLATFORMS\s*:=\s*(.+)$`)
	crossOut  = regexp.MustCompile(`out=bin/cross/\$\$\{os\}_\$\$\{arch\}/(\w+)\$\$ext`)
)

// TestManifest checks policyd.yaml: krew's required fields, one platform
// per OS/arch that `make cross` builds and no other, selectors, archive
// URIs and checksums (or the placeholders the release fills), and that
// files and bin name the binary make cross writes (policyd, policyd.exe on
// Windows) so that krew links it as kubectl-policyd.
func TestManifest(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("policyd.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var m manifest
	// Strict: a misspelt field (plaforms, matchLabel) is an error here
	// rather than a field krew silently goes without.
	if err := yaml.UnmarshalStrict(raw, &m); err != nil {
		t.Fatalf("policyd.yaml: %v", err)
	}
	check := func(ok bool, format string, args ...any) {
		t.Helper()
		if !ok {
			t.Errorf("policyd.yaml: "+format, args...)
		}
	}
	check(m.APIVersion == "krew.googlecontainertools.github.com/v1alpha2", "apiVersion %q", m.APIVersion)
	check(m.Kind == "Plugin", "kind %q, want Plugin", m.Kind)
	check(m.Metadata.Name == "policyd", "metadata.name %q, want policyd (kubectl policyd)", m.Metadata.Name)
	v := m.Spec.Version
	check(v == versionPlaceholder || semver.MatchString(v), "spec.version %q: want vMAJOR.MINOR.PATCH or %s", v, versionPlaceholder)
	check(strings.HasPrefix(m.Spec.Homepage, "https://"), "spec.homepage %q", m.Spec.Homepage)
	check(m.Spec.ShortDescription != "" && len(m.Spec.ShortDescription) <= 80, "spec.shortDescription %q: want 1 to 80 characters", m.Spec.ShortDescription)
	check(m.Spec.Description != "", "spec.description is empty")

	mk, err := os.ReadFile("../../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	line := crossLine.FindSubmatch(mk)
	out := crossOut.FindSubmatch(mk)
	if line == nil || out == nil {
		t.Fatal("Makefile: no CROSS_PLATFORMS line or cross output path to compare with")
	}
	binName := string(out[1])
	want := strings.Fields(string(line[1]))
	var got []string
	for i, p := range m.Spec.Platforms {
		at := fmt.Sprintf("spec.platforms[%d]", i)
		labels := p.Selector.MatchLabels
		goos, arch := labels["os"], labels["arch"]
		check(len(labels) == 2 && goos != "" && arch != "", "%s.selector.matchLabels %v: want exactly os and arch", at, labels)
		got = append(got, goos+"/"+arch)
		exe := binName
		archive := ".tar.gz"
		if goos == "windows" {
			exe += ".exe"
			archive = ".zip"
		}
		check(p.Bin == exe, "%s.bin %q: make cross writes %s for %s/%s", at, p.Bin, exe, goos, arch)
		check(len(p.Files) > 0 && p.Files[0].From == exe && p.Files[0].To == ".", "%s.files: the first must copy %s to .", at, exe)
		name := fmt.Sprintf("policyd_%s_%s_%s%s", versionPlaceholder, goos, arch, archive)
		if v != versionPlaceholder {
			name = fmt.Sprintf("policyd_%s_%s_%s%s", v, goos, arch, archive)
		}
		check(strings.HasPrefix(p.URI, "https://") && strings.HasSuffix(p.URI, "/"+name), "%s.uri %q: want https://…/%s", at, p.URI, name)
		placeholder := fmt.Sprintf("@SHA256_%s_%s@", strings.ToUpper(goos), strings.ToUpper(arch))
		check(p.SHA256 == placeholder || sha256Hex.MatchString(p.SHA256), "%s.sha256 %q: want 64 hex digits or %s", at, p.SHA256, placeholder)
	}
	sort.Strings(got)
	sort.Strings(want)
	check(strings.Join(got, " ") == strings.Join(want, " "), "platforms %v, but make cross builds %v", got, want)
}
