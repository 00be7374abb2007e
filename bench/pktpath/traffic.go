package pktpath

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/policyd/policyd/internal/netnsutil"
)

// PayloadSize is the UDP payload of every benchmark datagram.
const PayloadSize = 64

// UDPResult is one UDP measurement.
type UDPResult struct {
	// Sent and Received count datagrams written by pod A and read by pod B.
	Sent, Received uint64
	// Elapsed is how long pod A was sending; CPU is the CPU time the sending
	// thread used meanwhile, the softirq work of the whole path included.
	Elapsed, CPU time.Duration
}

// PPS returns received datagrams per second.
func (r UDPResult) PPS() float64 { return perSecond(r.Received, r.Elapsed) }

// PerCPU returns received datagrams per second of the sending thread's CPU
// time: the rate one CPU would reach with nothing else to do. It is much less
// disturbed by other work on a shared machine than PPS.
func (r UDPResult) PerCPU() float64 { return perSecond(r.Received, r.CPU) }

// TCPResult is one TCP measurement.
type TCPResult struct {
	// Connected counts connections pod A established (and reset); Failed
	// counts connect attempts that failed or timed out.
	Connected, Failed uint64
	// Elapsed is how long pod A was connecting; CPU is the CPU time the
	// connecting thread used meanwhile, the softirq work of the whole path
	// included.
	Elapsed, CPU time.Duration
}

// CPS returns established connections per second.
func (r TCPResult) CPS() float64 { return perSecond(r.Connected, r.Elapsed) }

// PerCPU returns established connections per second of the connecting
// thread's CPU time (see UDPResult.PerCPU).
func (r TCPResult) PerCPU() float64 { return perSecond(r.Connected, r.CPU) }

func perSecond(n uint64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// recvTimeout bounds every blocking receive and accept, so that the receiving
// loops notice the end of a measurement.
const recvTimeout = 50 * time.Millisecond

// connectTimeout bounds one TCP connect (a dropped SYN would otherwise block
// for minutes of retransmissions).
const connectTimeout = 500 * time.Millisecond

// UDP sends PayloadSize-byte datagrams from pod A to pod B's Port for d, as
// fast as one connected socket writes them, and counts what pod B receives.
// Nothing answers, so conntrack never sees a reply: every datagram is in
// state new and is judged through the whole policy path, but all of them
// belong to one conntrack entry (see UDPFlows for one entry per datagram).
func (t *Topology) UDP(d time.Duration) (UDPResult, error) {
	var res UDPResult
	sink, err := t.startUDPSink()
	if err != nil {
		return res, err
	}
	sfd, err := socketIn(t.PodA, unix.SOCK_DGRAM)
	if err != nil {
		return res, errors.Join(err, sink.stop())
	}
	defer unix.Close(sfd)
	if err := unix.Connect(sfd, &unix.SockaddrInet4{Port: Port, Addr: t.Dst.As4()}); err != nil {
		return res, errors.Join(fmt.Errorf("udp sender in %s: connect %s:%d: %w", t.PodA, t.Dst, Port, err), sink.stop())
	}

	runtime.LockOSThread()
	unboost := boost()
	payload := make([]byte, PayloadSize)
	cpu0 := threadCPU()
	start := time.Now()
	end := start.Add(d)
	var sent uint64
	for i := 0; ; i++ {
		if i&63 == 0 && !time.Now().Before(end) {
			break
		}
		if _, err := unix.Write(sfd, payload); err == nil {
			sent++
		}
	}
	res.Elapsed = time.Since(start)
	res.CPU = threadCPU() - cpu0
	unboost()
	runtime.UnlockOSThread()
	err = sink.stop()
	res.Sent, res.Received = sent, sink.received
	return res, err
}

// UDPFlows sends PayloadSize-byte datagrams from pod A to pod B's Port for
// d, each from a source port of its own, so that each datagram is a new
// conntrack entry in the node and is judged as the first packet of a new
// flow. It writes one datagram to each of the topology's FlowSockets
// sockets in turn (connected UDP sockets bound to consecutive ports, kept
// for the topology's life), and before every such pass, the first
// included, it flushes the node's conntrack table, so no datagram finds the
// entry of an earlier one and the table never holds more than
// FlowSockets benchmark entries. Elapsed and CPU count the passes only,
// not the flushes between them.
func (t *Topology) UDPFlows(d time.Duration) (UDPResult, error) {
	var res UDPResult
	pool, err := t.flowSockets()
	if err != nil {
		return res, err
	}
	sink, err := t.startUDPSink()
	if err != nil {
		return res, err
	}

	runtime.LockOSThread()
	unboost := boost()
	unprofile := t.profile()
	payload := make([]byte, PayloadSize)
	var sent uint64
	for done := false; !done && err == nil; {
		if err = t.FlushConntrack(); err != nil {
			break
		}
		cpu0 := threadCPU()
		start := time.Now()
		for i, fd := range pool {
			if i&63 == 0 && res.Elapsed+time.Since(start) >= d {
				done = true
				break
			}
			if _, err := unix.Write(fd, payload); err == nil {
				sent++
			}
		}
		res.Elapsed += time.Since(start)
		res.CPU += threadCPU() - cpu0
		done = done || res.Elapsed >= d
	}
	err = errors.Join(err, unprofile())
	unboost()
	runtime.UnlockOSThread()
	err = errors.Join(err, sink.stop())
	res.Sent, res.Received = sent, sink.received
	return res, err
}

// udpSink counts the datagrams pod B receives on Port.
type udpSink struct {
	fd       int
	halt     atomic.Bool
	wg       sync.WaitGroup
	received uint64
	err      error
}

// startUDPSink binds pod B's receiving socket and starts counting on a
// thread of its own.
func (t *Topology) startUDPSink() (*udpSink, error) {
	rfd, err := socketIn(t.PodB, unix.SOCK_DGRAM)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*udpSink, error) {
		unix.Close(rfd)
		return nil, fmt.Errorf("udp receiver in %s: %w", t.PodB, err)
	}
	if err := unix.SetsockoptInt(rfd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20); err != nil {
		return fail(fmt.Errorf("SO_RCVBUFFORCE: %w", err))
	}
	if err := setTimeout(rfd, unix.SO_RCVTIMEO, recvTimeout); err != nil {
		return fail(err)
	}
	if err := unix.Bind(rfd, &unix.SockaddrInet4{Port: Port, Addr: t.Dst.As4()}); err != nil {
		return fail(fmt.Errorf("bind %s:%d: %w", t.Dst, Port, err))
	}
	s := &udpSink{fd: rfd}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		defer boost()()
		s.received, s.err = receiveAll(rfd, &s.halt)
	}()
	return s, nil
}

// stop lets the receiver drain its socket buffer, stops it and closes the
// socket; received is final afterwards.
func (s *udpSink) stop() error {
	time.Sleep(2 * recvTimeout)
	s.halt.Store(true)
	s.wg.Wait()
	unix.Close(s.fd)
	return s.err
}

// receiveAll counts datagrams on fd, in batches of recvmmsg, until stop is set
// and a receive has timed out.
func receiveAll(fd int, stop *atomic.Bool) (uint64, error) {
	const batch = 64
	bufs := make([][128]byte, batch)
	iovs := make([]unix.Iovec, batch)
	msgs := make([]unix.Mmsghdr, batch)
	for i := range msgs {
		iovs[i].Base = &bufs[i][0]
		iovs[i].SetLen(len(bufs[i]))
		msgs[i].Hdr.Iov = &iovs[i]
		msgs[i].Hdr.SetIovlen(1)
	}
	var n uint64
	for {
		r, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&msgs[0])), batch, unix.MSG_WAITFORONE, 0, 0)
		switch {
		case errno == 0:
			n += uint64(r)
		case errno == unix.EAGAIN || errno == unix.EINTR:
			if stop.Load() {
				return n, nil
			}
		default:
			return n, fmt.Errorf("udp receiver: recvmmsg: %w", errno)
		}
	}
}

// TCP opens connections from pod A to pod B's Port for d, one after another:
// connect, then close with SO_LINGER 0 (a reset, so neither side keeps
// TIME_WAIT state and ports never run out). Pod B accepts and closes. Only the
// SYN of each connection is in conntrack state new; the rest is established.
func (t *Topology) TCP(d time.Duration) (TCPResult, error) {
	var res TCPResult
	lfd, err := t.listenB()
	if err != nil {
		return res, err
	}
	defer unix.Close(lfd)

	var stop atomic.Bool
	var acceptErr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		defer boost()()
		acceptErr = acceptAll(lfd, &stop)
	}()

	dst := &unix.SockaddrInet4{Port: Port, Addr: t.Dst.As4()}
	linger := &unix.Linger{Onoff: 1, Linger: 0}
	err = netnsutil.DoNamed(t.PodA, func() (err error) {
		defer boost()()
		unprofile := t.profile()
		defer func() { err = errors.Join(err, unprofile()) }()
		cpu0 := threadCPU()
		start := time.Now()
		end := start.Add(d)
		for time.Now().Before(end) {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return fmt.Errorf("tcp client in %s: socket: %w", t.PodA, err)
			}
			if err := unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, linger); err != nil {
				unix.Close(fd)
				return fmt.Errorf("tcp client in %s: SO_LINGER: %w", t.PodA, err)
			}
			if err := setTimeout(fd, unix.SO_SNDTIMEO, connectTimeout); err != nil {
				unix.Close(fd)
				return fmt.Errorf("tcp client in %s: %w", t.PodA, err)
			}
			if err := connectTCP(fd, dst); err != nil {
				res.Failed++
			} else {
				res.Connected++
			}
			unix.Close(fd)
		}
		res.Elapsed = time.Since(start)
		res.CPU = threadCPU() - cpu0
		return nil
	})
	stop.Store(true)
	wg.Wait()
	return res, errors.Join(err, acceptErr)
}

// listenB returns a TCP socket listening on pod B's Port, whose accepts time
// out after recvTimeout.
func (t *Topology) listenB() (int, error) {
	lfd, err := socketIn(t.PodB, unix.SOCK_STREAM)
	if err != nil {
		return -1, err
	}
	fail := func(err error) (int, error) {
		unix.Close(lfd)
		return -1, fmt.Errorf("tcp server in %s: %w", t.PodB, err)
	}
	if err := unix.SetsockoptInt(lfd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		return fail(fmt.Errorf("SO_REUSEADDR: %w", err))
	}
	if err := setTimeout(lfd, unix.SO_RCVTIMEO, recvTimeout); err != nil {
		return fail(err)
	}
	if err := unix.Bind(lfd, &unix.SockaddrInet4{Port: Port, Addr: t.Dst.As4()}); err != nil {
		return fail(fmt.Errorf("bind %s:%d: %w", t.Dst, Port, err))
	}
	if err := unix.Listen(lfd, 4096); err != nil {
		return fail(fmt.Errorf("listen: %w", err))
	}
	return lfd, nil
}

// acceptAll accepts and closes connections on fd until stop is set and an
// accept has timed out.
func acceptAll(fd int, stop *atomic.Bool) error {
	for {
		nfd, _, err := unix.Accept4(fd, unix.SOCK_CLOEXEC)
		switch {
		case err == nil:
			unix.Close(nfd)
		case errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) || errors.Is(err, unix.ECONNABORTED):
			if stop.Load() {
				return nil
			}
		default:
			return fmt.Errorf("tcp server: accept: %w", err)
		}
	}
}

// socketIn creates an IPv4 socket of type typ in network namespace ns.
func socketIn(ns string, typ int) (int, error) {
	fd := -1
	err := netnsutil.DoNamed(ns, func() error {
		var err error
		fd, err = unix.Socket(unix.AF_INET, typ|unix.SOCK_CLOEXEC, 0)
		return err
	})
	if err != nil {
		return -1, fmt.Errorf("socket in %s: %w", ns, err)
	}
	return fd, nil
}

func setTimeout(fd, opt int, d time.Duration) error {
	tv := unix.NsecToTimeval(d.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, opt, &tv); err != nil {
		return fmt.Errorf("set socket timeout: %w", err)
	}
	return nil
}

// boostNice is the nice value of the threads that send and receive during a
// measurement. The machine the benchmark runs on is shared; a high CFS weight
// keeps other work from taking the measuring threads' time slices, which
// would otherwise dominate the figures. The packet path itself runs in
// softirq context on the sending thread's CPU, so it is covered too.
const boostNice = -20

// boost raises the calling thread's priority (the caller must have locked it
// to its goroutine) and returns a function that restores it. Without the
// privilege it does nothing.
func boost() (restore func()) {
	tid := unix.Gettid()
	old, err := unix.Getpriority(unix.PRIO_PROCESS, tid)
	if err != nil {
		return func() {}
	}
	// The raw getpriority syscall returns 20 - nice.
	oldNice := 20 - old
	if err := unix.Setpriority(unix.PRIO_PROCESS, tid, boostNice); err != nil {
		return func() {}
	}
	return func() { _ = unix.Setpriority(unix.PRIO_PROCESS, tid, oldNice) }
}

// connectTCP connects the blocking TCP socket fd to sa. A connect that a
// signal interrupts (the Go runtime preempts threads with SIGURG, and a
// socket with a send timeout does not restart) goes on in the kernel: wait
// for it to finish, within connectTimeout, and take its outcome.
func connectTCP(fd int, sa unix.Sockaddr) error {
	err := unix.Connect(fd, sa)
	if !errors.Is(err, unix.EINTR) {
		return err
	}
	deadline := time.Now().Add(connectTimeout)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return unix.ETIMEDOUT
		}
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
		n, err := unix.Poll(fds, int(left.Milliseconds())+1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return unix.ETIMEDOUT
		}
		soerr, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
		if err != nil {
			return err
		}
		if soerr != 0 {
			return unix.Errno(soerr)
		}
		return nil
	}
}

// profile starts t.Profile on the calling (locked, sending) thread, if
// set, and returns what stops it.
func (t *Topology) profile() (stop func() error) {
	if t.Profile == nil {
		return func() error { return nil }
	}
	return t.Profile(unix.Gettid())
}

// threadCPU returns the CPU time the calling thread has used. Softirq work
// done on the thread's behalf (the whole veth and forwarding path runs so) is
// included unless the kernel accounts IRQ time separately
// (CONFIG_IRQ_TIME_ACCOUNTING).
func threadCPU() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

// StreamResult is one TCP stream measurement.
type StreamResult struct {
	// Written counts the bytes pod A wrote, Received those pod B read.
	Written, Received uint64
	// Elapsed is how long pod A was writing; CPU is the CPU time the
	// writing thread used meanwhile, the softirq work of the whole path
	// included.
	Elapsed, CPU time.Duration
}

// BPS returns received bytes per second.
func (r StreamResult) BPS() float64 { return perSecond(r.Received, r.Elapsed) }

// PerCPU returns received bytes per second of the writing thread's CPU time
// (see UDPResult.PerCPU).
func (r StreamResult) PerCPU() float64 { return perSecond(r.Received, r.CPU) }

// streamChunk is the size of one write (and read) of the TCP stream.
const streamChunk = 256 << 10

// TCPStream opens one TCP connection from pod A to pod B's Port and writes
// to it as fast as it goes for d; pod B reads everything until the end of
// the stream. Only the SYN is in conntrack state new: every other packet of
// the measurement belongs to an established connection, which every
// configuration's first rule accepts, so the figure must not depend on the
// configuration (other than (a), which tracks no connection).
func (t *Topology) TCPStream(d time.Duration) (StreamResult, error) {
	var res StreamResult
	lfd, err := t.listenB()
	if err != nil {
		return res, err
	}
	defer unix.Close(lfd)

	var stop atomic.Bool
	var readErr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		defer boost()()
		res.Received, readErr = readStream(lfd, &stop)
	}()

	err = netnsutil.DoNamed(t.PodA, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("tcp stream client in %s: socket: %w", t.PodA, err)
		}
		defer unix.Close(fd)
		if err := setTimeout(fd, unix.SO_SNDTIMEO, connectTimeout); err != nil {
			return fmt.Errorf("tcp stream client in %s: %w", t.PodA, err)
		}
		if err := connectTCP(fd, &unix.SockaddrInet4{Port: Port, Addr: t.Dst.As4()}); err != nil {
			return fmt.Errorf("tcp stream client in %s: connect %s:%d: %w", t.PodA, t.Dst, Port, err)
		}
		defer boost()()
		buf := make([]byte, streamChunk)
		cpu0 := threadCPU()
		start := time.Now()
		for time.Since(start) < d {
			n, err := unix.Write(fd, buf)
			if err != nil {
				return fmt.Errorf("tcp stream client in %s: write after %d bytes: %w", t.PodA, res.Written, err)
			}
			res.Written += uint64(n)
		}
		res.Elapsed = time.Since(start)
		res.CPU = threadCPU() - cpu0
		return nil
	})
	stop.Store(true)
	wg.Wait()
	if err == nil && readErr == nil && res.Received != res.Written {
		readErr = fmt.Errorf("tcp stream: pod B read %d bytes of %d written", res.Received, res.Written)
	}
	return res, errors.Join(err, readErr)
}

// readStream accepts one connection on lfd and reads it to its end. It gives
// up when stop is set and no connection came, or the connection went quiet
// for a receive timeout.
func readStream(lfd int, stop *atomic.Bool) (uint64, error) {
	var fd int
	for {
		nfd, _, err := unix.Accept4(lfd, unix.SOCK_CLOEXEC)
		if err == nil {
			fd = nfd
			break
		}
		if !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EINTR) {
			return 0, fmt.Errorf("tcp stream server: accept: %w", err)
		}
		if stop.Load() {
			return 0, nil
		}
	}
	defer unix.Close(fd)
	if err := setTimeout(fd, unix.SO_RCVTIMEO, recvTimeout); err != nil {
		return 0, fmt.Errorf("tcp stream server: %w", err)
	}
	buf := make([]byte, streamChunk)
	var total uint64
	for {
		n, err := unix.Read(fd, buf)
		switch {
		case err == nil && n == 0:
			return total, nil
		case err == nil:
			total += uint64(n)
		case errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR):
			if stop.Load() {
				return total, nil
			}
		default:
			return total, fmt.Errorf("tcp stream server: read: %w", err)
		}
	}
}
