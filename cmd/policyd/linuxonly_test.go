package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestLinuxOnlyCommand_SaysWhatItNeeds: on darwin or windows, run, lab and
// cleanup are stand-ins that exit 2 saying the verb needs Linux and what
// the binary is for, whatever flags follow, and that --help leaves out.
func TestLinuxOnlyCommand_SaysWhatItNeeds(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ verb, needs, goos, goarch, want string }{
		{"run", "nftables", "darwin", "arm64", "policyd run needs Linux (nftables); this binary is for darwin/arm64"},
		{"lab", "network namespaces and nftables", "windows", "amd64", "policyd lab needs Linux (network namespaces and nftables); this binary is for windows/amd64"},
		{"cleanup", "nftables", "darwin", "amd64", "policyd cleanup needs Linux (nftables); this binary is for darwin/amd64"},
	} {
		root := newRootCommand()
		for _, sub := range root.Commands() {
			if sub.Name() == c.verb {
				root.RemoveCommand(sub)
			}
		}
		root.AddCommand(linuxOnlyCommand(c.verb, c.needs, "stand-in", c.goos, c.goarch))
		var out, errOut bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&errOut)
		code := execute(root, []string{c.verb, "--node-name", "n1", "--whatever"}, &errOut)
		assert.Equal(t, 2, code, c.verb)
		assert.Contains(t, errOut.String(), c.want, c.verb)

		out.Reset()
		assert.Equal(t, 0, execute(root, []string{"--help"}, &errOut))
		assert.NotContains(t, out.String(), "\n  "+c.verb+" ", "--help lists the stand-in %s", c.verb)
		assert.Contains(t, out.String(), "\n  explain ", "--help")
	}
}

// TestNameOf: run as a kubectl plugin, on Windows too, the name is
// "kubectl policyd".
func TestNameOf(t *testing.T) {
	t.Parallel()
	for arg0, want := range map[string]string{
		"/usr/local/bin/policyd":                   "policyd",
		"/home/u/.krew/bin/kubectl-policyd":        "kubectl policyd",
		`C:\Users\u\.krew\bin\kubectl-policyd.exe`: "kubectl policyd",
		"kubectl-policyd.EXE":                      "kubectl policyd",
		"policyd.exe":                              "policyd",
	} {
		got := nameOf(strings.ReplaceAll(arg0, `\`, "/"))
		assert.Equal(t, want, got, arg0)
	}
}
