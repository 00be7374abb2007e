package lab

import (
	"context"
	"errors"
	"fmt"
	"github.com/policyd/policyd/internal/netnsutil"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/vishvananda/netns"

	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/policy/model"
)

// token is what the server of pod key answers on proto/port. Probes compare
// it with what they expect, so reaching the wrong pod (a bad DNAT, a stale
// route) is a lab fault, never an "allowed".
func token(key string, proto cluster.Protocol, port int32) string {
	return fmt.Sprintf("pdlab %s %s/%d\n", key, proto.Lower(), port)
}

// servers are one pod's TCP and UDP servers.
type servers struct {
	closers []interface{ Close() error }
	wg      sync.WaitGroup
}

// startServers binds, inside ns, a TCP listener or a UDP socket on every
// address for every entry of listen (TCP and UDP only), and serves them until
// close. Binding to the pod's own
// addresses (not the wildcard) makes UDP replies leave from the address the
// probe targeted, even in a node namespace with several addresses.
func startServers(ns netns.NsHandle, key string, addrs []netip.Addr, listen []model.PortProto) (*servers, error) {
	s := &servers{}
	var tcp []net.Listener
	var udp []net.PacketConn
	err := netnsutil.Do(ns, func() error {
		var lc net.ListenConfig
		for _, a := range addrs {
			for _, l := range listen {
				ap := netip.AddrPortFrom(a, uint16(l.Port)).String()
				switch l.Protocol {
				case cluster.ProtocolTCP:
					ln, err := lc.Listen(context.Background(), "tcp", ap)
					if err != nil {
						return fmt.Errorf("pod %s: listening on tcp %s: %w", key, ap, err)
					}
					tcp = append(tcp, ln)
					s.closers = append(s.closers, ln)
				case cluster.ProtocolUDP:
					pc, err := lc.ListenPacket(context.Background(), "udp", ap)
					if err != nil {
						return fmt.Errorf("pod %s: listening on udp %s: %w", key, ap, err)
					}
					udp = append(udp, pc)
					s.closers = append(s.closers, pc)
				default:
					return fmt.Errorf("pod %s: cannot serve %s", key, l)
				}
			}
		}
		return nil
	})
	if err != nil {
		s.close()
		return nil, err
	}
	for _, ln := range tcp {
		port, _ := strconv.Atoi(portOf(ln.Addr()))
		s.wg.Add(1)
		go s.serveTCP(ln, token(key, cluster.ProtocolTCP, int32(port)))
	}
	for _, pc := range udp {
		port, _ := strconv.Atoi(portOf(pc.LocalAddr()))
		s.wg.Add(1)
		go s.serveUDP(pc, token(key, cluster.ProtocolUDP, int32(port)))
	}
	return s, nil
}

func portOf(a net.Addr) string {
	_, port, _ := net.SplitHostPort(a.String())
	return port
}

func (s *servers) serveTCP(ln net.Listener, tok string) {
	defer s.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond) // e.g. EMFILE; keep serving
			continue
		}
		_ = c.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = c.Write([]byte(tok))
		c.Close()
	}
}

func (s *servers) serveUDP(pc net.PacketConn, tok string) {
	defer s.wg.Done()
	buf := make([]byte, 512)
	for {
		_, from, err := pc.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		_, _ = pc.WriteTo([]byte(tok), from)
	}
}

// close stops the servers and waits for them; their sockets no longer hold
// the namespace afterwards. Safe on nil and twice.
func (s *servers) close() {
	if s == nil {
		return
	}
	for _, c := range s.closers {
		_ = c.Close() // listeners and packet sockets: nothing to flush
	}
	s.closers = nil
	s.wg.Wait()
}
