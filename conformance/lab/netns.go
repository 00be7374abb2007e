package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/vishvananda/netns"

	"github.com/policyd/policyd/internal/netnsutil"
)

// listNetNS returns the names of the named network namespaces that start
// with prefix.
func listNetNS(prefix string) ([]string, error) {
	ents, err := os.ReadDir(netnsutil.NamedDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix) {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// sysctl is one /proc/sys setting, with the key in slash form
// ("net/ipv4/ip_forward").
type sysctl struct{ key, value string }

// setSysctls writes the settings inside ns, in order. Network sysctls are
// resolved against the writing thread's namespace.
func setSysctls(ns netns.NsHandle, settings ...sysctl) error {
	return netnsutil.Do(ns, func() error {
		for _, s := range settings {
			if err := os.WriteFile(filepath.Join("/proc/sys", s.key), []byte(s.value), 0o644); err != nil {
				return fmt.Errorf("sysctl %s=%s: %w", s.key, s.value, err)
			}
		}
		return nil
	})
}

// readSysctl reads one setting inside ns.
func readSysctl(ns netns.NsHandle, key string) (string, error) {
	var v []byte
	err := netnsutil.Do(ns, func() error {
		var err error
		v, err = os.ReadFile(filepath.Join("/proc/sys", key))
		return err
	})
	return strings.TrimSpace(string(v)), err
}

// execInNetNS runs a command inside ns and returns its standard output. The
// child is forked from a thread inside ns and inherits it; the mount
// namespace is the caller's. stdin may be nil.
func execInNetNS(ctx context.Context, ns netns.NsHandle, stdin []byte, name string, args ...string) ([]byte, error) {
	var stdout, stderr bytes.Buffer
	err := netnsutil.Do(ns, func() error {
		cmd := exec.CommandContext(ctx, name, args...)
		if stdin != nil {
			cmd.Stdin = bytes.NewReader(stdin)
		}
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		return cmd.Run()
	})
	if err != nil {
		return stdout.Bytes(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}
