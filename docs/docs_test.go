// Package docs holds policyd's user documentation. Its test keeps the
// README short enough to read and the pages reachable from it.
package docs

import (
	"bytes"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// maxReadmeLines is issue 29's bound on README.md (`wc -l`).
const maxReadmeLines = 250

// mdLink matches the target of a Markdown link or image: ](target).
var mdLink = regexp.MustCompile(`\]\(([^)\s]+)\)`)

// readmeProblems returns what is wrong with readme: more than maxReadmeLines
// lines, a relative link to a file that does not exist (exists is asked with
// the path relative to the repository root), or a page of pages (names of
// the docs/*.md files) that no link reaches.
func readmeProblems(readme []byte, pages []string, exists func(string) bool) []string {
	var out []string
	if n := bytes.Count(readme, []byte("\n")); n > maxReadmeLines {
		out = append(out, fmt.Sprintf("README.md has %d lines, more than %d: move the detail to a page in docs/", n, maxReadmeLines))
	}
	linked := map[string]bool{}
	for _, m := range mdLink.FindAllSubmatch(readme, -1) {
		target := string(m[1])
		if strings.Contains(target, "://") || strings.HasPrefix(target, "#") || strings.HasPrefix(target, "mailto:") {
			continue
		}
		target, _, _ = strings.Cut(target, "#")
		target = path.Clean(target)
		if !linked[target] && !exists(target) {
			out = append(out, fmt.Sprintf("README.md links %s, which does not exist", target))
		}
		linked[target] = true
	}
	for _, p := range pages {
		if !linked[path.Join("docs", p)] {
			out = append(out, fmt.Sprintf("docs/%s is not linked from README.md", p))
		}
	}
	return out
}

// TestREADME_ShortAndLinked checks the repository's README.md and docs/.
func TestREADME_ShortAndLinked(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	matches, err := filepath.Glob("*.md")
	if err != nil {
		t.Fatal(err)
	}
	if len(matches) == 0 {
		t.Fatal("no docs/*.md page found: the test runs in the wrong directory")
	}
	exists := func(p string) bool {
		_, err := os.Stat(filepath.Join("..", filepath.FromSlash(p)))
		return err == nil
	}
	for _, p := range readmeProblems(readme, matches, exists) {
		t.Error(p)
	}
}

// TestReadmeProblems shows that each rule fails on input that breaks it.
func TestReadmeProblems(t *testing.T) {
	t.Parallel()
	files := []string{"docs/a.md", "docs/b.md", "deploy/x.yaml"}
	exists := func(p string) bool { return slices.Contains(files, p) }
	ok := "# t\n[a](docs/a.md) [b](docs/b.md#part) ![x](deploy/x.yaml) [w](https://example.com/c.md) [s](#install)\n"
	tests := []struct {
		name   string
		readme string
		pages  []string
		want   []string
	}{
		{"fine", ok, []string{"a.md", "b.md"}, nil},
		{"too long", ok + strings.Repeat("line\n", maxReadmeLines), []string{"a.md", "b.md"},
			[]string{"README.md has 252 lines, more than 250: move the detail to a page in docs/"}},
		{"exactly the bound", "[a](docs/a.md)\n" + strings.Repeat("\n", maxReadmeLines-1), []string{"a.md"}, nil},
		{"link to a missing page, reported once", ok + "[c](docs/c.md) [c again](docs/c.md#x)\n", []string{"a.md", "b.md"},
			[]string{"README.md links docs/c.md, which does not exist"}},
		{"page not linked", ok, []string{"a.md", "b.md", "z.md"},
			[]string{"docs/z.md is not linked from README.md"}},
		{"a page named only in text is not linked", "docs/a.md\n", []string{"a.md"},
			[]string{"docs/a.md is not linked from README.md"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := readmeProblems([]byte(tt.readme), tt.pages, exists)
			if !slices.Equal(got, tt.want) {
				t.Errorf("readmeProblems:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}
