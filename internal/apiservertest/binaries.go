package apiservertest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
)

// ToolsDirEnv names the environment variable that points at a directory
// holding kube-apiserver and etcd (hack/apiserver.sh also builds into it).
const ToolsDirEnv = "POLICYD_TOOLS_DIR"

// buildScript is hack/apiserver.sh relative to the repository root.
const buildScript = "hack/apiserver.sh"

// toolsDir returns a directory holding executable kube-apiserver and etcd:
// explicit if non-empty, else $POLICYD_TOOLS_DIR when it already holds both,
// else the directory hack/apiserver.sh prints after building them.
func toolsDir(ctx context.Context, explicit string) (string, error) {
	if explicit != "" {
		if err := hasBinaries(explicit); err != nil {
			return "", fmt.Errorf("%w: %w", ErrBinariesUnavailable, err)
		}
		return explicit, nil
	}
	if env := os.Getenv(ToolsDirEnv); env != "" && hasBinaries(env) == nil {
		return env, nil
	}
	root, err := repoRoot()
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrBinariesUnavailable, err)
	}
	dir, err := runBuildScript(ctx, root)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrBinariesUnavailable, err)
	}
	if err := hasBinaries(dir); err != nil {
		return "", fmt.Errorf("%w: %s printed %q: %w", ErrBinariesUnavailable, buildScript, dir, err)
	}
	return dir, nil
}

// hasBinaries returns an error naming the first of kube-apiserver and etcd
// that is not an executable file in dir.
func hasBinaries(dir string) error {
	for _, name := range []string{"kube-apiserver", "etcd"} {
		path := filepath.Join(dir, name)
		fi, err := os.Stat(path)
		if err != nil {
			return err
		}
		if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
			return fmt.Errorf("%s is not an executable file", path)
		}
	}
	return nil
}

// repoRoot returns the repository root: the directory holding
// hack/apiserver.sh, found from this source file's compiled-in path, else by
// walking up from the working directory (a test's is its package directory).
func repoRoot() (string, error) {
	var starts []string
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		starts = append(starts, filepath.Dir(file))
	}
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	for _, dir := range starts {
		if root, ok := findUp(dir, buildScript); ok {
			return root, nil
		}
	}
	return "", fmt.Errorf("no %s above %v", buildScript, starts)
}

// findUp returns the first of dir and its ancestors that contains rel.
func findUp(dir, rel string) (string, bool) {
	for {
		if _, err := os.Stat(filepath.Join(dir, rel)); err == nil {
			return dir, true
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", false
		}
		dir = parent
	}
}

// runBuildScript runs hack/apiserver.sh and returns the directory it
// prints. `go test` runs packages in parallel and each may start a server,
// so the script runs under an exclusive file lock: the first caller builds,
// the others wait and then find the binaries cached.
func runBuildScript(ctx context.Context, root string) (string, error) {
	unlock, err := lockFile(buildLockPath())
	if err != nil {
		return "", err
	}
	defer unlock()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, filepath.Join(root, buildScript))
	cmd.Dir = root
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s: %w\n%s", buildScript, err, lastLines(stderr.String(), 30))
	}
	dir := strings.TrimSpace(stdout.String())
	if dir == "" {
		return "", fmt.Errorf("%s printed no directory", buildScript)
	}
	return dir, nil
}

// buildLockPath is the lock file serialising hack/apiserver.sh runs of all
// test processes of this user.
func buildLockPath() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		dir = os.TempDir()
	}
	return filepath.Join(dir, "policyd", "apiserver-build.lock")
}

// lockFile takes an exclusive flock on path, creating it, and returns the
// function that releases it.
func lockFile(path string) (func(), error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("create lock directory: %w", err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { _ = f.Close() }, nil // closing releases the lock
}
