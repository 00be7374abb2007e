package apiservertest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// This file lets fault tests take the API server away while etcd keeps the
// cluster's state, change that state meanwhile through a second API server,
// and compact etcd's history so that a client coming back with an old
// resourceVersion gets 410 Gone and must relist.

// StopAPIServer kills kube-apiserver and waits for it to exit; etcd keeps
// running with the cluster's state. Clients see connections refused until
// StartAPIServer. Stopping a stopped API server does nothing.
func (s *Server) StopAPIServer() {
	s.apiMu.Lock()
	p := s.apiserver
	s.apiMu.Unlock()
	if p != nil {
		p.kill()
	}
}

// StartAPIServer starts kube-apiserver again with the same flags, address,
// credentials and etcd, and waits for /readyz. Its watch cache starts empty
// from etcd's current revision, as after a real restart. It fails if the
// API server is running.
func (s *Server) StartAPIServer(ctx context.Context) error {
	s.apiMu.Lock()
	old := s.apiserver
	s.apiMu.Unlock()
	select {
	case <-old.done:
	default:
		return errors.New("apiservertest: StartAPIServer: kube-apiserver is running")
	}
	// The port is ours again once the old process is gone, but a client's
	// connection attempt may hold it for a moment: retry briefly.
	var lastErr error
	for attempt := 0; attempt < 20; attempt++ {
		s.apiMu.Lock()
		s.apiStarts++
		p, err := startProcess(s.dir, "kube-apiserver."+strconv.Itoa(s.apiStarts), s.apiBin, s.apiArgs...)
		if err == nil {
			s.apiserver = p
		}
		s.apiMu.Unlock()
		if err != nil {
			return err
		}
		lastErr = s.waitReady(ctx, DefaultReadyTimeout)
		if lastErr == nil || !p.logContains("address already in use") {
			return lastErr
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	return fmt.Errorf("apiservertest: restart kube-apiserver: %w", lastErr)
}

// StartPeer starts a second kube-apiserver on the same etcd, with the same
// flags and credentials (so the same tokens work) but a port of its own,
// and waits for it to be ready. The returned Server's URL, clients and
// configs point at the peer; its Stop kills only the peer, never etcd or
// the directory. A test uses it to change the cluster while the API server
// its clients use is stopped.
func (s *Server) StartPeer(ctx context.Context) (*Server, error) {
	ports, err := freePorts(1)
	if err != nil {
		return nil, err
	}
	peer := &Server{dir: s.dir, caPEM: s.caPEM, adminToken: s.adminToken, etcd: s.etcd, etcdURL: s.etcdURL, apiBin: s.apiBin, peer: true}
	peer.url = "https://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0]))
	for _, a := range s.apiArgs {
		if strings.HasPrefix(a, "--secure-port=") {
			a = "--secure-port=" + strconv.Itoa(ports[0])
		}
		peer.apiArgs = append(peer.apiArgs, a)
	}
	s.apiMu.Lock()
	s.apiStarts++
	name := "kube-apiserver-peer." + strconv.Itoa(s.apiStarts)
	s.apiMu.Unlock()
	if peer.apiserver, err = startProcess(s.dir, name, peer.apiBin, peer.apiArgs...); err != nil {
		return nil, err
	}
	if err := peer.waitReady(ctx, DefaultReadyTimeout); err != nil {
		peer.StopAPIServer()
		return nil, err
	}
	return peer, nil
}

// CompactEtcd compacts etcd's history up to its current revision and
// returns that revision. Every older resourceVersion is then gone: a list
// or watch from one gets 410 Gone (Expired) from etcd, and a client must
// relist.
func (s *Server) CompactEtcd(ctx context.Context) (int64, error) {
	var head struct {
		Header struct {
			Revision string `json:"revision"`
		} `json:"header"`
	}
	// The revision comes with any read; a range over one absent key is the
	// cheapest.
	if err := s.etcdPost(ctx, "/v3/kv/range", map[string]any{"key": "cG9saWN5ZC1yZXZpc2lvbg=="}, &head); err != nil {
		return 0, err
	}
	rev, err := strconv.ParseInt(head.Header.Revision, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("etcd revision %q: %w", head.Header.Revision, err)
	}
	if err := s.etcdPost(ctx, "/v3/kv/compaction", map[string]any{"revision": strconv.FormatInt(rev, 10), "physical": true}, nil); err != nil {
		return 0, err
	}
	return rev, nil
}

// etcdPost calls etcd's JSON gateway.
func (s *Server) etcdPost(ctx context.Context, path string, body any, out any) error {
	data, err := json.Marshal(body)
	if err != nil {
		return err
	}
	u, err := url.JoinPath(s.etcdURL, path)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(data))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("etcd %s: %w", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("etcd %s: %s: %s", path, resp.Status, bytes.TrimSpace(b))
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("etcd %s: decode %s: %w", path, b, err)
	}
	return nil
}
