package agent

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/policyd/policyd/policy/compile"
	"github.com/policyd/policyd/policy/nft"
	"github.com/policyd/policyd/verdicts"
)

// TestHandler_VerdictStreamsCappedAndCounted: the agent's /verdicts serves
// at most VerdictConfig.MaxStreams streams; the third of two is answered
// 429; policyd_verdict_observers counts the open ones and
// policyd_verdict_observers_refused_total the refusals; closing a stream
// frees its slot.
func TestHandler_VerdictStreamsCappedAndCounted(t *testing.T) {
	t.Parallel()
	a, err := New(Config{
		NodeName: "node-1", Client: fake.NewClientset(), Backend: nft.NewFake(),
		Verdicts: VerdictConfig{Log: compile.LogOptions{Drops: true, Group: 100, Rate: 10, Burst: 5}, MaxStreams: 2},
	})
	require.NoError(t, err)
	srv := httptest.NewServer(a.Handler())
	t.Cleanup(srv.Close)
	metric := func(name string) string {
		resp, err := http.Get(srv.URL + "/metrics")
		require.NoError(t, err)
		defer resp.Body.Close()
		var b strings.Builder
		_, _ = io.Copy(&b, resp.Body)
		for _, line := range strings.Split(b.String(), "\n") {
			if v, ok := strings.CutPrefix(line, name+" "); ok {
				return v
			}
		}
		return "absent"
	}
	open := func() (context.CancelFunc, <-chan error) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			done <- verdicts.Follow(ctx, http.DefaultClient, srv.URL+verdicts.Path, "", verdicts.Filter{}, func(verdicts.Message) error { return nil })
		}()
		return cancel, done
	}
	c1, _ := open()
	c2, _ := open()
	t.Cleanup(func() { c1(); c2() })
	require.Eventually(t, func() bool { return metric("policyd_verdict_observers") == "2" }, 5*time.Second, 5*time.Millisecond)
	assert.Equal(t, "0", metric("policyd_verdict_observers_refused_total"))
	c, done := open()
	t.Cleanup(c)
	select {
	case err = <-done:
	case <-time.After(5 * time.Second):
		t.Fatalf("a third stream was served: policyd_verdict_observers %s", metric("policyd_verdict_observers"))
	}
	var se *verdicts.StatusError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, http.StatusTooManyRequests, se.Code)
	assert.Equal(t, "1", metric("policyd_verdict_observers_refused_total"))
	assert.Equal(t, "2", metric("policyd_verdict_observers"))
	c1()
	require.Eventually(t, func() bool { return metric("policyd_verdict_observers") == "1" }, 5*time.Second, 5*time.Millisecond)
	c3, _ := open()
	t.Cleanup(c3)
	require.Eventually(t, func() bool { return metric("policyd_verdict_observers") == "2" }, 5*time.Second, 5*time.Millisecond)
	assert.Equal(t, "1", metric("policyd_verdict_observers_refused_total"))
}
