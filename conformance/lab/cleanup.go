package lab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/policyd/policyd/internal/netnsutil"
)

// Prefix starts the name of every namespace, link and table a lab creates.
const Prefix = "pdlab-"

// lockDir holds one lock file per live run.
const lockDir = "/run/pdlab"

var runIDPattern = regexp.MustCompile(`^[a-z0-9]{1,12}$`)

// newRunID returns a random run id.
func newRunID() string {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return hex.EncodeToString(b[:])
}

// runOf returns the run id in a pdlab- name ("pdlab-<id>-..." or
// "pdlab-<id>"), or "" when name is not a lab name.
func runOf(name string) string {
	rest, ok := strings.CutPrefix(name, Prefix)
	if !ok {
		return ""
	}
	id, _, _ := strings.Cut(rest, "-")
	return id
}

func lockPath(run string) string { return filepath.Join(lockDir, run+".lock") }

// runLock is the flock a live lab holds on its run's lock file. The kernel
// drops it when the process dies, which is how CleanupLeftovers tells a
// crashed run from a live one.
type runLock struct {
	run string
	f   *os.File
}

// acquireRunLock creates and locks the run's lock file. The file is locked
// before it gets its name, so no one can ever see it unlocked while the run
// lives. It fails if the run id is in use.
func acquireRunLock(run string) (*runLock, error) {
	if err := os.MkdirAll(lockDir, 0o755); err != nil {
		return nil, err
	}
	tmp, err := os.CreateTemp(lockDir, ".tmp-"+run+"-*")
	if err != nil {
		return nil, err
	}
	defer func() { _ = os.Remove(tmp.Name()) }() // the temporary name only; the lock lives on under lockPath
	if err := unix.Flock(int(tmp.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		_ = tmp.Close()
		return nil, fmt.Errorf("locking %s: %w", tmp.Name(), err)
	}
	if err := os.Link(tmp.Name(), lockPath(run)); err != nil {
		_ = tmp.Close()
		if errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("run id %q is in use (%s exists)", run, lockPath(run))
		}
		return nil, err
	}
	return &runLock{run: run, f: tmp}, nil
}

// release removes the lock file and drops the lock; call it after the run's
// namespaces are gone.
func (r *runLock) release() error {
	if r == nil || r.f == nil {
		return nil
	}
	err := os.Remove(lockPath(r.run))
	if errors.Is(err, os.ErrNotExist) {
		err = nil
	}
	_ = r.f.Close() // closing drops the lock; the file was never written
	r.f = nil
	return err
}

// claimDeadRun reports whether run has no live lab. When it has none, the
// returned file (possibly nil when there is no lock file) holds the run's lock
// so that no one revives the id while the caller cleans up; close it after.
func claimDeadRun(run string) (dead bool, held *os.File) {
	f, err := os.OpenFile(lockPath(run), os.O_RDWR, 0)
	if err != nil {
		return true, nil
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		_ = f.Close()
		return false, nil
	}
	return true, f
}

// CleanupLeftovers removes what crashed labs left behind: every named network
// namespace, root-namespace link and root-namespace nftables table whose name
// starts with "pdlab-" and whose run has no live lab (no process holds its
// lock), and the stale lock files. Labs that are alive, in this process or
// another, are not touched. New calls it first.
func CleanupLeftovers() error {
	var errs []error
	dead := map[string]bool{}
	var held []*os.File
	defer func() {
		for _, f := range held {
			_ = f.Close()
		}
	}()
	isDead := func(run string) bool {
		d, ok := dead[run]
		if !ok {
			var f *os.File
			d, f = claimDeadRun(run)
			dead[run] = d
			if f != nil {
				held = append(held, f)
			}
		}
		return d
	}

	names, err := listNetNS(Prefix)
	if err != nil {
		errs = append(errs, err)
	}
	for _, name := range names {
		if isDead(runOf(name)) {
			if err := netnsutil.DeleteNamed(name); err != nil {
				errs = append(errs, err)
			}
		}
	}

	links, err := netlink.LinkList()
	if err != nil {
		errs = append(errs, fmt.Errorf("listing links: %w", err))
	}
	for _, l := range links {
		if name := l.Attrs().Name; strings.HasPrefix(name, Prefix) && isDead(runOf(name)) {
			if err := netlink.LinkDel(l); err != nil {
				errs = append(errs, fmt.Errorf("deleting link %s: %w", name, err))
			}
		}
	}

	if tables, err := rootTables(); err != nil {
		errs = append(errs, err)
	} else {
		for _, t := range tables {
			if isDead(runOf(t[1])) {
				if out, err := exec.Command("nft", "delete", "table", t[0], t[1]).CombinedOutput(); err != nil {
					errs = append(errs, fmt.Errorf("nft delete table %s %s: %w: %s", t[0], t[1], err, out))
				}
			}
		}
	}

	// Lock files whose run is dead and has nothing left.
	ents, _ := os.ReadDir(lockDir)
	for _, e := range ents {
		name := e.Name()
		switch {
		case strings.HasSuffix(name, ".lock"):
			if run := strings.TrimSuffix(name, ".lock"); isDead(run) {
				_ = os.Remove(filepath.Join(lockDir, name))
			}
		case strings.HasPrefix(name, ".tmp-"):
			// A temp file of a run that crashed while acquiring its lock.
			if info, err := e.Info(); err == nil && time.Since(info.ModTime()) > time.Minute {
				_ = os.Remove(filepath.Join(lockDir, name))
			}
		}
	}
	return errors.Join(errs...)
}

// rootTables lists the root namespace's nftables tables named pdlab-*, as
// (family, name) pairs. Without an nft binary there is nothing to list: the
// lab itself needs nft only in DNAT mode, inside node namespaces.
func rootTables() ([][2]string, error) {
	if _, err := exec.LookPath("nft"); err != nil {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "nft", "list", "tables").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("nft list tables: %w: %s", err, out)
	}
	return parseTables(string(out), Prefix), nil
}

// parseTables picks the (family, name) pairs with the name prefix out of
// `nft list tables` output.
func parseTables(out, prefix string) [][2]string {
	var res [][2]string
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 3 && f[0] == "table" && strings.HasPrefix(f[2], prefix) {
			res = append(res, [2]string{f[1], f[2]})
		}
	}
	return res
}

// Leftovers lists what of run remains on the machine: named network
// namespaces, root-namespace links and root-namespace nftables tables whose
// names start with "pdlab-<run>", and the run's lock file. An empty run lists
// what any run left, live runs included. After Close it is empty for the
// closed lab's run; a check for one's own run stays correct while other labs
// (other test packages run in parallel by go test) are alive.
func Leftovers(run string) ([]string, error) {
	mine := func(name string) bool {
		if run == "" {
			return strings.HasPrefix(name, Prefix)
		}
		return runOf(name) == run
	}
	var left []string
	names, err := listNetNS(Prefix)
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		if mine(n) {
			left = append(left, "netns "+n)
		}
	}
	links, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("listing links: %w", err)
	}
	for _, l := range links {
		if mine(l.Attrs().Name) {
			left = append(left, "link "+l.Attrs().Name)
		}
	}
	tables, err := rootTables()
	if err != nil {
		return nil, err
	}
	for _, t := range tables {
		if mine(t[1]) {
			left = append(left, "table "+t[0]+" "+t[1])
		}
	}
	if run != "" {
		if _, err := os.Stat(lockPath(run)); err == nil {
			left = append(left, "lock "+lockPath(run))
		}
	}
	return left, nil
}
