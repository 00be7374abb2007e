package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/policyd/policyd/manifest"
)

// Exit codes, the same for every command (README, "Exit status"):
const (
	// exitOK: the command did what was asked; explain: every connection is allowed.
	exitOK = 0
	// exitFindings: explain found a connection denied, or a check found
	// disagreements (lab: packets vs policies; explain --trace: kernel vs model).
	exitFindings = 1
	// exitUsage: the command was asked something it cannot do: an unknown
	// command or flag, a bad flag value, a wrong number of arguments, a missing
	// or unreadable manifest path, a broken manifest, an unknown pod or node,
	// no cluster to talk to.
	exitUsage = 2
	// exitFailed: the command was asked properly but could not finish (the API
	// server, the kernel or netlink failed).
	exitFailed = 3
)

// exitError carries a specific exit code (e.g. 1 for "denied" or "lab
// disagreement", 2 for usage errors). A nil err means the output already
// said everything.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// usageError gives err exit status 2.
func usageError(err error) error { return &exitError{exitUsage, err} }

// usagef is usageError(fmt.Errorf(format, args...)).
func usagef(format string, args ...any) error { return usageError(fmt.Errorf(format, args...)) }

// exitCode classifies err by the contract above. Errors that carry no code
// are classified by what they are: bad input (a manifest that does not
// parse, a path that does not exist, no kubeconfig) is 2, cobra's own
// argument errors are 2, anything else is a failure, 3.
func exitCode(err error) int {
	if err == nil {
		return exitOK
	}
	var e *exitError
	if errors.As(err, &e) {
		return e.code
	}
	var me *manifest.Error
	var pe *fs.PathError
	switch {
	case errors.As(err, &me), errors.As(err, &pe), noCluster(err), isCobraUsage(err):
		return exitUsage
	}
	return exitFailed
}

// isCobraUsage recognises the errors cobra returns without a type: unknown
// commands (before any of our code runs) and missing required flags.
func isCobraUsage(err error) bool {
	msg := err.Error()
	return strings.HasPrefix(msg, "unknown command ") || strings.HasPrefix(msg, "required flag(s) ")
}

// noCluster reports whether err, or an error it wraps, is client-go's "no
// configuration has been provided" (no in-cluster config, no kubeconfig), or
// a kubeconfig that names a context or cluster it does not have.
func noCluster(err error) bool {
	for e := err; e != nil; e = errors.Unwrap(e) {
		if clientcmd.IsEmptyConfig(e) || clientcmd.IsConfigurationInvalid(e) {
			return true
		}
	}
	return false
}

// withUsageErrors makes every command's flag and argument errors usage
// errors (exit 2) that name the command, so that cobra's plain errors keep
// their text but get the contract's code.
func withUsageErrors(root *cobra.Command) {
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return usagef("%s: %w (see '%s --help')", c.CommandPath(), err, c.CommandPath())
	})
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if args := c.Args; args != nil {
			c.Args = func(c *cobra.Command, a []string) error {
				if err := args(c, a); err != nil {
					if exitCode(err) == exitUsage {
						return err
					}
					return usagef("%s: %w (see '%s --help')", c.CommandPath(), err, c.CommandPath())
				}
				return nil
			}
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

// execute runs root with args and returns the exit status, having written
// the error, if any, to stderr.
func execute(root *cobra.Command, args []string, stderr io.Writer) int {
	// Cobra's completion command (bash, zsh, fish, powershell), added here
	// rather than by Execute (after the output is set: it keeps the writer) so that an unknown shell is a usage error.
	root.InitDefaultCompletionCmd()
	for _, c := range root.Commands() {
		if c.Name() == "completion" {
			c.RunE = func(c *cobra.Command, args []string) error {
				if len(args) == 0 {
					return c.Help()
				}
				return usagef("completion %s: want bash, zsh, fish or powershell", args[0])
			}
		}
	}
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return exitOK
	}
	e, ok := err.(*exitError) //nolint:errorlint // only an unwrapped exitError means the output already said it; a wrapped one has a message to print
	switch {
	case ok && e.err == nil:
		// the output already said it (explain: DENIED)
	case clusterCause(err) == "":
		// run: client-go's message suggests KUBERNETES_MASTER; say what is missing.
		fmt.Fprintln(stderr, "error: no cluster found: not running in a pod, and no kubeconfig ($KUBECONFIG, ~/.kube/config or --kubeconfig)")
	default:
		fmt.Fprintln(stderr, "error:", err)
	}
	code := exitCode(err)
	if isCobraUsage(err) {
		fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", root.CommandPath())
	}
	return code
}
