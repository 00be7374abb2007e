package verdicts_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/policyd/policyd/nflog"
	"github.com/policyd/policyd/policy/compile"
	"github.com/policyd/policyd/verdicts"
)

// streamServer serves r's stream on loopback with read and write timeouts
// far shorter than the test, as the agent's server has (there 10 s and 30 s).
func streamServer(t *testing.T, r *verdicts.Resolver) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(r.Handler())
	srv.Config.ReadTimeout = 300 * time.Millisecond
	srv.Config.WriteTimeout = 300 * time.Millisecond
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.URL + verdicts.Path
}

// TestHandler_StreamsFilteredRecordsPastServerTimeouts: Follow gets the
// backlog asked for, then live records, filtered by the agent, for longer
// than the server's read and write timeouts; cancelling the context ends
// it cleanly and the agent drops the subscription.
func TestHandler_StreamsFilteredRecordsPastServerTimeouts(t *testing.T) {
	t.Parallel()
	r := verdicts.NewResolver("n", pods)
	r.Learn(rs(cnpDeny, npAllow))
	deny, allow := compile.DeciderID(cnpDeny), compile.DeciderID(npAllow)
	now := time.Now()
	r.Handle(nflog.Packet{Time: now.Add(-time.Hour), Prefix: deny, Flow: flow(1)})         // older than since
	r.Handle(nflog.Packet{Time: now.Add(-10 * time.Second), Prefix: deny, Flow: flow(2)})  // backlog
	r.Handle(nflog.Packet{Time: now.Add(-10 * time.Second), Prefix: allow, Flow: flow(3)}) // filtered out
	url := streamServer(t, r)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan verdicts.Message, 10)
	done := make(chan error, 1)
	go func() {
		done <- verdicts.Follow(ctx, http.DefaultClient, url, "", verdicts.Filter{Verdict: "deny", Since: time.Minute}, func(m verdicts.Message) error {
			got <- m
			return nil
		})
	}()
	first := <-got
	assert.Equal(t, uint16(2), first.SrcPort, "the backlog within since")
	require.Eventually(t, func() bool { return subscribers(r) == 1 }, 5*time.Second, 10*time.Millisecond)
	time.Sleep(700 * time.Millisecond) // past both server timeouts
	r.Handle(nflog.Packet{Time: time.Now(), Prefix: allow, Flow: flow(4)})
	r.Handle(nflog.Packet{Time: time.Now(), Prefix: deny, Flow: flow(5)})
	select {
	case m := <-got:
		assert.Equal(t, uint16(5), m.SrcPort)
		assert.Equal(t, "x/a", m.Src.Key())
		assert.Equal(t, "ClusterNetworkPolicy", m.Kind.String())
	case <-time.After(5 * time.Second):
		t.Fatal("no live record after the server's timeouts passed")
	}
	cancel()
	require.NoError(t, <-done, "a cancelled Follow ends without error")
	require.Eventually(t, func() bool { return subscribers(r) == 0 }, 5*time.Second, 10*time.Millisecond, "the agent drops the subscription")
}

func subscribers(r *verdicts.Resolver) int { return r.Subscribers() }

// gatedWriter is a ResponseWriter whose writes after the first wait for
// gate: a client that stopped reading.
type gatedWriter struct {
	header http.Header
	gate   chan struct{}
	mu     sync.Mutex
	body   bytes.Buffer
	writes int
}

func (w *gatedWriter) Header() http.Header { return w.header }
func (w *gatedWriter) WriteHeader(int)     {}
func (w *gatedWriter) Flush()              {}
func (w *gatedWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	w.writes++
	n := w.writes
	w.mu.Unlock()
	if n == 1 {
		<-w.gate
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.body.Write(b)
}

// TestHandler_ReportsLostRecords: a client that falls behind is told, in
// the stream and before the next record, how many records it missed; the
// reader is never held up by it.
func TestHandler_ReportsLostRecords(t *testing.T) {
	t.Parallel()
	r := verdicts.NewResolver("n", nil)
	r.Learn(rs(cnpDeny))
	id := compile.DeciderID(cnpDeny)
	w := &gatedWriter{header: http.Header{}, gate: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Handler().ServeHTTP(w, httptest.NewRequestWithContext(ctx, "GET", verdicts.Path, nil))
	}()
	require.Eventually(t, func() bool { return subscribers(r) == 1 }, 5*time.Second, time.Millisecond)
	r.Handle(nflog.Packet{Time: time.Now(), Prefix: id, Flow: flow(1)})
	require.Eventually(t, func() bool { w.mu.Lock(); defer w.mu.Unlock(); return w.writes == 1 }, 5*time.Second, time.Millisecond)
	for i := range 1000 { // the handler is stuck writing record 1
		r.Handle(nflog.Packet{Time: time.Now(), Prefix: id, Flow: flow(uint16(100 + i))})
	}
	close(w.gate)
	require.Eventually(t, func() bool { return verdicts.Queued(r) == 0 }, 5*time.Second, time.Millisecond)
	r.Handle(nflog.Packet{Time: time.Now(), Prefix: id, Flow: flow(9999)})
	require.Eventually(t, func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return bytes.Contains(w.body.Bytes(), []byte(`"srcPort":9999`))
	}, 5*time.Second, time.Millisecond)
	cancel()
	<-done
	var lost []uint64
	var ports []uint16
	for _, line := range bytes.Split(bytes.TrimSpace(w.body.Bytes()), []byte("\n")) {
		var m verdicts.Message
		require.NoError(t, json.Unmarshal(line, &m))
		if m.Lost > 0 {
			assert.Empty(t, m.ID, "a lost notice carries no record")
			lost = append(lost, m.Lost)
			ports = append(ports, 0)
			continue
		}
		ports = append(ports, m.SrcPort)
	}
	assert.Equal(t, []uint64{1000 - 256}, lost)
	require.Len(t, ports, 1+256+2)
	assert.Equal(t, []uint16{0, 9999}, ports[len(ports)-2:], "the notice comes before the next record")
	assert.Equal(t, uint64(1000-256), r.Stats().Dropped)
}

// TestFollow_Errors: a refused filter, a missing token and no agent at
// all are errors the CLI can tell apart.
func TestFollow_Errors(t *testing.T) {
	t.Parallel()
	r := verdicts.NewResolver("n", nil)
	url := streamServer(t, r)
	err := verdicts.Follow(context.Background(), http.DefaultClient, url+"?verdict=maybe", "", verdicts.Filter{}, nil)
	var se *verdicts.StatusError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, 400, se.Code)
	err = verdicts.Follow(context.Background(), http.DefaultClient, url, "", verdicts.Filter{Verdict: "maybe"}, nil)
	assert.ErrorContains(t, err, `verdict "maybe"`, "validated before asking")

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	err = verdicts.Follow(context.Background(), http.DefaultClient, "http://"+addr+verdicts.Path, "", verdicts.Filter{}, nil)
	var oe *net.OpError
	assert.True(t, errors.As(err, &oe), "no agent: %v", err)
}

// TestStreams_CapRefusesBeyondMaxAndFreesSlots: with a cap of 3, three
// streams are served, the fourth is answered 429 and counted, Open counts
// the three; closing one frees its slot for the next client.
func TestStreams_CapRefusesBeyondMaxAndFreesSlots(t *testing.T) {
	t.Parallel()
	r := verdicts.NewResolver("n", nil)
	s := r.Streams(3)
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	url := srv.URL + verdicts.Path
	open := func() (context.CancelFunc, <-chan error) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			done <- verdicts.Follow(ctx, http.DefaultClient, url, "", verdicts.Filter{}, func(verdicts.Message) error { return nil })
		}()
		return cancel, done
	}
	var cancels []context.CancelFunc
	for range 3 {
		c, _ := open()
		cancels = append(cancels, c)
	}
	t.Cleanup(func() {
		for _, c := range cancels {
			c()
		}
	})
	require.Eventually(t, func() bool { return s.Open() == 3 && r.Subscribers() == 3 }, 5*time.Second, 5*time.Millisecond)

	c4, done := open()
	t.Cleanup(c4)
	var err error
	select {
	case err = <-done:
	case <-time.After(5 * time.Second):
		t.Fatalf("a fourth stream was served: %d open", s.Open())
	}
	var se *verdicts.StatusError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, http.StatusTooManyRequests, se.Code)
	assert.Contains(t, se.Message, "--max-verdict-streams")
	assert.Equal(t, uint64(1), s.Refused())
	assert.Equal(t, 3, s.Open(), "a refused request holds no slot")
	assert.Equal(t, 3, r.Subscribers(), "nor a subscription")

	cancels[0]()
	require.Eventually(t, func() bool { return s.Open() == 2 }, 5*time.Second, 5*time.Millisecond, "a closed stream frees its slot")
	c, done := open()
	cancels = append(cancels, c)
	require.Eventually(t, func() bool { return s.Open() == 3 }, 5*time.Second, 5*time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("the stream opened in the freed slot ended: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	assert.Equal(t, uint64(1), s.Refused())
}
