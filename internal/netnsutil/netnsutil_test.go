package netnsutil_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netns"

	"github.com/policyd/policyd/internal/netnstest"
	"github.com/policyd/policyd/internal/netnsutil"
)

// current reports whether the calling thread is in namespace h.
func current(t *testing.T, h netns.NsHandle) bool {
	t.Helper()
	cur, err := netns.Get()
	require.NoError(t, err)
	defer cur.Close()
	return cur.Equal(h)
}

// TestDoNamed runs code in a test namespace and checks that neither the
// caller nor the next fresh thread ends up there.
func TestDoNamed(t *testing.T) {
	netnstest.RequireRoot(t)
	name, target := netnstest.New(t, "pdutil")
	inside := false
	require.NoError(t, netnsutil.DoNamed(name, func() error { inside = current(t, target); return nil }))
	assert.True(t, inside, "fn must run in the target namespace")
	assert.False(t, current(t, target), "the caller's namespace must not change")
	require.NoError(t, netnsutil.OnFreshThread(func() error {
		assert.False(t, current(t, target), "a later fresh thread must not inherit the namespace")
		return nil
	}))
	assert.Error(t, netnsutil.DoNamed("pdutil-no-such-namespace", func() error { return nil }))
}

// TestCreateNamed creates a named namespace, refuses to create it twice
// without touching the first, and deletes it; deleting a missing name is not
// an error.
func TestCreateNamed(t *testing.T) {
	netnstest.RequireRoot(t)
	name := fmt.Sprintf("pdutil-create-%d", os.Getpid())
	path := filepath.Join(netnsutil.NamedDir, name)
	h, err := netnsutil.CreateNamed(name)
	require.NoError(t, err)
	t.Cleanup(func() { h.Close(); _ = netnsutil.DeleteNamed(name) })
	named, err := netns.GetFromName(name)
	require.NoError(t, err)
	assert.True(t, named.Equal(h), "the handle must be the namespace mounted at %s", path)
	named.Close()
	assert.False(t, current(t, h), "the caller must not enter the new namespace")

	_, err = netnsutil.CreateNamed(name)
	require.ErrorIs(t, err, os.ErrExist)
	again, err := netns.GetFromName(name)
	require.NoError(t, err, "a failed second create must leave the first in place")
	assert.True(t, again.Equal(h))
	again.Close()

	require.NoError(t, netnsutil.DeleteNamed(name))
	assert.NoFileExists(t, path)
	require.NoError(t, netnsutil.DeleteNamed(name), "deleting a missing name is not an error")
}
