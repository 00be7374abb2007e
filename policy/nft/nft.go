// Package nft owns policyd's only write path to the kernel: it makes the
// kernel's `inet policyd` nftables table equal to a ruleset.Ruleset, in one
// atomic netlink batch per sync, through github.com/google/nftables.
//
// Every rule shape of package ruleset is lowered to exactly the expressions
// nft generates for the shape's text (a kernel test proves that `nft list`
// prints the same table for both). A Backend remembers the last Ruleset it
// committed and the nftables generation id right after that commit; the next
// Sync sends only the difference (ruleset.Diff). When it has nothing to trust
// (first Sync, a failed Sync, or a generation id that moved because someone
// else committed to nftables) it reads the kernel's policyd table back and
// diffs against that instead: a table left by a previous run is adopted with
// a partial sync, never flushed, and a chain someone else edited is
// rewritten.
//
// Fake implements the same Interface in memory for the tests of callers.
package nft

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/policyd/policyd/policy/ruleset"
)

// Interface is what callers need of a backend. Backend and Fake implement it.
type Interface interface {
	// Sync makes the policyd table equal to want.
	Sync(ctx context.Context, want *ruleset.Ruleset) (SyncStats, error)
	// Cleanup deletes the policyd table and nothing else.
	Cleanup(ctx context.Context) error
}

// Options configures a Backend.
type Options struct {
	// NetNS is an open file descriptor of the network namespace to program;
	// 0 means the caller's current namespace. The Backend never closes it.
	NetNS int
}

// SyncStats describes one Sync.
type SyncStats struct {
	// Full is true when the kernel's table was read back and diffed against
	// (adopt), rather than the Ruleset committed last.
	Full bool
	// Ops is the number of operations written (ruleset.Plan.Ops): one per
	// set, chain, rule and element touched. 0 means nothing was sent.
	Ops int
	// Sets, Elements, Chains and Rules count what was touched, by kind
	// (ruleset.PlanCounts).
	Sets, Elements, Chains, Rules int
	// Duration is the wall time of the Sync.
	Duration time.Duration
}

// Backend programs the policyd table through netlink. It is safe for
// concurrent use; Syncs are serialised.
type Backend struct {
	opts Options

	mu sync.Mutex
	// last is the Ruleset committed by the last successful Sync, nil when the
	// kernel must be read back before the next diff.
	last *ruleset.Ruleset
	// lastGen is the generation id right after the commit of last.
	lastGen uint32
	// beforeFlush, when set, runs with the queued batch right before it is
	// sent. Only fault-injection tests set it: to append a message the
	// kernel refuses, or to note the moment a writer starts its flush.
	beforeFlush func(*nftables.Conn)
}

var _ Interface = (*Backend)(nil)

// New returns a Backend for opts. It does not touch the kernel; the first
// Sync reads the table.
func New(opts Options) (*Backend, error) {
	if opts.NetNS < 0 {
		return nil, fmt.Errorf("nft: invalid network namespace fd %d", opts.NetNS)
	}
	return &Backend{opts: opts}, nil
}

// maxReadAttempts bounds how often Sync re-reads the table while other
// writers keep changing nftables under it.
const maxReadAttempts = 5

// Sync makes the kernel's policyd table equal to want, in one atomic batch.
//
// The first call, any call after an error, and any call after the ruleset
// generation id moved since our last commit (someone else changed nftables,
// in any table: every commit moves it, so no edit of our table goes
// unnoticed) read the kernel's policyd table (set names, types and
// elements, chain names, and the userdata of every rule; never rule
// expressions) and diff want against it; SyncStats.Full reports this. Other
// calls diff against the Ruleset committed last, which the unchanged
// generation id proves is still the kernel's. On a read, every chain, base
// or regular, whose rules differ from the wanted ones (count, or the
// per-rule hash the lowering stores in userdata, position by position) is
// flushed and refilled in place, in the same batch as everything else.
//
// want must be sorted (Ruleset.Sort) and must not be modified after Sync
// returns: the Backend keeps it as the committed state. A want that breaks
// the contract its shapes state (ruleset.Check) is refused before the kernel
// is read; a reference to a missing object is refused with ENOENT, as the
// kernel would refuse it. On error nothing was committed (the kernel aborts
// the whole batch) and the next Sync reads the kernel again.
func (b *Backend) Sync(ctx context.Context, want *ruleset.Ruleset) (SyncStats, error) {
	start := time.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	if want == nil {
		want = &ruleset.Ruleset{}
	}
	if err := checkSorted(want); err != nil {
		return SyncStats{}, fmt.Errorf("nft sync: %w", err)
	}
	stats, err := b.sync(ctx, want)
	stats.Duration = time.Since(start)
	if err != nil {
		b.last = nil
		return stats, fmt.Errorf("nft sync: %w", err)
	}
	return stats, nil
}

func (b *Backend) sync(ctx context.Context, want *ruleset.Ruleset) (SyncStats, error) {
	var stats SyncStats
	if err := ctx.Err(); err != nil {
		return stats, err
	}
	if err := check(want); err != nil {
		return stats, err
	}
	rd := kernelReader{netns: b.opts.NetNS}
	c, err := rd.dial()
	if err != nil {
		return stats, err
	}
	defer c.Close()

	gen, err := genID(c)
	if err != nil {
		return stats, err
	}
	old := b.last
	if old == nil || gen != b.lastGen {
		stats.Full = true
		var kt *kTable
		kt, gen, err = readConsistent(c)
		if err != nil {
			return stats, err
		}
		old = adopt(kt, want)
	}

	// Sets whose kernel size still holds their elements keep it; want is
	// then a copy with those sizes, the state this sync commits.
	want = ruleset.KeepSizes(old, want)
	plan := ruleset.Diff(old, want)
	if plan.Empty() {
		b.last, b.lastGen = want, gen
		return stats, nil
	}
	counts := plan.Counts()
	stats.Ops = plan.Ops()
	stats.Sets, stats.Elements, stats.Chains, stats.Rules = counts.Sets, counts.Elements, counts.Chains, counts.Rules

	conn, err := nftables.New(nftables.WithNetNSFd(b.opts.NetNS), nftables.WithSockOptions(bufferSizes(stats.Ops, stats.Rules)))
	if err != nil {
		return stats, err
	}
	if err := emit(conn, plan.Steps(), want); err != nil {
		return stats, err
	}
	if err := ctx.Err(); err != nil {
		return stats, err
	}
	if b.beforeFlush != nil {
		b.beforeFlush(conn)
	}
	if err := conn.Flush(); err != nil {
		if errors.Is(err, unix.ENFILE) {
			// What the kernel says when a set is full; sizes are
			// chosen to fit, so this means the kernel's set is not
			// the one committed last.
			return stats, fmt.Errorf("commit batch of %d ops: a set is full (its kernel size is smaller than its elements): %w", stats.Ops, err)
		}
		return stats, fmt.Errorf("commit batch of %d ops: %w", stats.Ops, err)
	}
	// Committed. Trust want as the kernel's state only if ours was the one
	// commit since gen; otherwise another writer committed between our read
	// and our commit, or we cannot tell, and the next Sync reads the table.
	b.last = nil
	if after, err := genID(c); err == nil && after == nextGen(gen) {
		b.last, b.lastGen = want, after
	}
	return stats, nil
}

// checkSorted rejects a Ruleset whose sets or chains are not sorted by name
// (or have duplicate names): lookups by name would miss objects.
func checkSorted(r *ruleset.Ruleset) error {
	for i := 1; i < len(r.Sets); i++ {
		if r.Sets[i-1].Name >= r.Sets[i].Name {
			return fmt.Errorf("ruleset sets not sorted or duplicated at %q (call Ruleset.Sort)", r.Sets[i].Name)
		}
	}
	for i := 1; i < len(r.Chains); i++ {
		if r.Chains[i-1].Name >= r.Chains[i].Name {
			return fmt.Errorf("ruleset chains not sorted or duplicated at %q (call Ruleset.Sort)", r.Chains[i].Name)
		}
	}
	return nil
}

// check holds want to the contract of its shapes (ruleset.Check) before
// anything is read or sent. The kernel refuses a reference to a missing
// object with ENOENT; so does check, so that callers tell a refused batch
// the same way whichever refused it.
func check(want *ruleset.Ruleset) error {
	err := ruleset.Check(want)
	if missing := (*ruleset.MissingError)(nil); errors.As(err, &missing) {
		return fmt.Errorf("%w (%w)", err, unix.ENOENT)
	}
	return err
}

// nextGen returns the generation id after g (the kernel skips 0).
func nextGen(g uint32) uint32 {
	if g+1 == 0 {
		return 1
	}
	return g + 1
}

// readConsistent reads the table between two equal generation ids, so that
// no commit happened while it was read.
func readConsistent(c *netlink.Conn) (*kTable, uint32, error) {
	var lastErr error
	for range maxReadAttempts {
		before, err := genID(c)
		if err != nil {
			return nil, 0, err
		}
		t, err := readTable(c)
		if errors.Is(err, errDumpInterrupted) {
			lastErr = err
			continue
		}
		if err != nil {
			return nil, 0, err
		}
		after, err := genID(c)
		if err != nil {
			return nil, 0, err
		}
		if before == after {
			return t, after, nil
		}
		lastErr = fmt.Errorf("nftables generation moved from %d to %d while reading", before, after)
	}
	return nil, 0, fmt.Errorf("read table inet %s: ruleset kept changing: %w", ruleset.TableName, lastErr)
}

// Cleanup deletes the policyd table, if it exists. No other table is
// touched. The next Sync starts from an empty table.
func (b *Backend) Cleanup(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.last = nil
	if err := ctx.Err(); err != nil {
		return err
	}
	c, err := kernelReader{netns: b.opts.NetNS}.dial()
	if err != nil {
		return err
	}
	defer c.Close()
	m, err := request(unix.NFT_MSG_GETTABLE, 0, unix.NFPROTO_INET, []netlink.Attribute{
		{Type: unix.NFTA_TABLE_NAME, Data: cstring(ruleset.TableName)},
	})
	if err != nil {
		return err
	}
	if _, err := execute(c, m); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return fmt.Errorf("nft cleanup: get table: %w", err)
	}
	conn, err := nftables.New(nftables.WithNetNSFd(b.opts.NetNS))
	if err != nil {
		return err
	}
	conn.DelTable(table())
	if err := conn.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("nft cleanup: delete table inet %s: %w", ruleset.TableName, err)
	}
	return nil
}

func table() *nftables.Table {
	return &nftables.Table{Name: ruleset.TableName, Family: nftables.TableFamilyINet}
}

// bufferSizes sizes the netlink socket buffers for a batch of about ops
// operations, rules of them rules: the whole batch is one sendmsg, and the
// kernel queues an ack per message (up to a kilobyte of buffer each), and
// for a rule an echo of it, before we read any. An echo takes a whole page of the receive buffer (the kernel
// allocates NLMSG_GOODSIZE for it); at 512 bytes a rule, a batch of 5,000
// rules and few elements overflowed it (ENOBUFS) and was never committed.
func bufferSizes(ops, rules int) nftables.SockOption {
	size := 1<<20 + ops*1024 + rules*8192
	return func(c *netlink.Conn) error {
		raw, err := c.SyscallConn()
		if err != nil {
			return err
		}
		var serr error
		err = raw.Control(func(fd uintptr) {
			for _, o := range [][2]int{{unix.SO_SNDBUFFORCE, unix.SO_SNDBUF}, {unix.SO_RCVBUFFORCE, unix.SO_RCVBUF}} {
				if e := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o[0], size); e != nil {
					// Without CAP_NET_ADMIN, ask for what the sysctl limit allows.
					if e2 := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o[1], size); e2 != nil {
						serr = e2
					}
				}
			}
		})
		if err != nil {
			return err
		}
		return serr
	}
}

// maxElemBytes bounds the encoded size of the elements sent in one message:
// the element list is one netlink attribute, whose length is 16 bits.
const maxElemBytes = 32 << 10

// emit queues the steps of a plan (ruleset.Plan.Steps) on conn, one message
// or more per step, in their order. want, which ruleset.Check has accepted,
// resolves the sets rules refer to.
func emit(conn *nftables.Conn, steps []ruleset.Step, want *ruleset.Ruleset) error {
	e := &emitter{conn: conn, t: table(), want: want, created: map[string]*nftables.Set{}}
	conn.AddTable(e.t)
	for _, st := range steps {
		if err := e.step(st); err != nil {
			return err
		}
	}
	return nil
}

// emitter is emit's state within one batch: it interprets each step kind
// with one method, the Backend's side of the Fake's fakeStore.apply.
type emitter struct {
	conn *nftables.Conn
	t    *nftables.Table
	want *ruleset.Ruleset
	// created holds the sets added earlier in the batch: later messages
	// about them name them by batch ID.
	created map[string]*nftables.Set
	nextID  uint32
}

// step queues one step.
func (e *emitter) step(st ruleset.Step) error {
	switch st.Kind {
	case ruleset.StepFlushChain:
		return e.flushChain(st)
	case ruleset.StepDelElements:
		return e.delElements(st)
	case ruleset.StepFlushSet:
		return e.flushSet(st)
	case ruleset.StepDelChain:
		return e.delChain(st)
	case ruleset.StepDelSet:
		return e.delSet(st)
	case ruleset.StepAddSet:
		return e.addSet(st)
	case ruleset.StepAddChain:
		return e.addChain(st)
	case ruleset.StepAddRules:
		return e.addRules(st)
	case ruleset.StepAddElements:
		return e.addElements(st)
	case ruleset.StepDelLimit:
		return e.delLimit(st)
	case ruleset.StepAddLimit:
		return e.addLimit(st)
	case ruleset.StepInvalid:
	}
	return fmt.Errorf("%s", st.Kind)
}

func (e *emitter) newID() uint32 { e.nextID++; return e.nextID }

// set returns the nftables set of s: the one added earlier in the batch,
// or one naming the kernel's.
func (e *emitter) set(s *ruleset.Set) (*nftables.Set, error) {
	if ns, ok := e.created[s.Name]; ok {
		return ns, nil
	}
	return lowerSet(e.t, s)
}

func (e *emitter) chain(c *ruleset.Chain) *nftables.Chain {
	return &nftables.Chain{Table: e.t, Name: c.Name}
}

func (e *emitter) flushChain(st ruleset.Step) error {
	e.conn.FlushChain(e.chain(st.Chain))
	return nil
}

// delElements deletes elements by key: a map entry's verdict is not part
// of its key.
func (e *emitter) delElements(st ruleset.Step) error {
	ns, err := e.set(st.Set)
	if err != nil {
		return err
	}
	elems, err := lowerElements(st.Set, st.Elems)
	if err != nil {
		return err
	}
	for i := range elems {
		elems[i].VerdictData = nil
	}
	for _, chunk := range chunkElements(elems) {
		if err := e.conn.SetDeleteElements(ns, chunk); err != nil {
			return fmt.Errorf("delete elements of set %s: %w", st.Set.Name, err)
		}
	}
	return nil
}

func (e *emitter) flushSet(st ruleset.Step) error {
	e.conn.FlushSet(&nftables.Set{Table: e.t, Name: st.Set.Name})
	return nil
}

func (e *emitter) delChain(st ruleset.Step) error {
	e.conn.DelChain(e.chain(st.Chain))
	return nil
}

func (e *emitter) delSet(st ruleset.Step) error {
	e.conn.DelSet(&nftables.Set{Table: e.t, Name: st.Set.Name})
	return nil
}

func (e *emitter) addSet(st ruleset.Step) error {
	ns, err := lowerSet(e.t, st.Set)
	if err != nil {
		return err
	}
	ns.ID = e.newID()
	if err := e.conn.AddSet(ns, nil); err != nil {
		return fmt.Errorf("add set %s: %w", st.Set.Name, err)
	}
	e.created[st.Set.Name] = ns
	return nil
}

func (e *emitter) addChain(st ruleset.Step) error {
	if st.Chain.Base == nil {
		e.conn.AddChain(e.chain(st.Chain))
		return nil
	}
	nc, err := lowerBaseChain(e.t, st.Chain)
	if err != nil {
		return err
	}
	e.conn.AddChain(nc)
	return nil
}

// addRules appends the chain's rules, each after the anonymous set it
// needs, if any.
func (e *emitter) addRules(st ruleset.Step) error {
	nc := e.chain(st.Chain)
	for i, r := range st.Chain.Rules {
		exprs, anon, err := lowerRule(r, e.want.Set)
		if err != nil {
			return fmt.Errorf("chain %s rule %d (%s): %w", st.Chain.Name, i, ruleText(r), err)
		}
		if anon != nil {
			anon.set.Table = e.t
			anon.set.ID = e.newID()
			if err := e.conn.AddSet(anon.set, anon.elems); err != nil {
				return fmt.Errorf("chain %s rule %d: anonymous set: %w", st.Chain.Name, i, err)
			}
			for _, x := range exprs {
				if l, ok := x.(*expr.Lookup); ok && l.SetName == anon.set.Name {
					l.SetID = anon.set.ID
				}
			}
		}
		e.conn.AddRule(&nftables.Rule{Table: e.t, Chain: nc, Exprs: exprs, UserData: ruleUserData(r)})
	}
	return nil
}

// addElements adds the step's elements, lowered lowerBatch at a time.
func (e *emitter) addElements(st ruleset.Step) error {
	ns, err := e.set(st.Set)
	if err != nil {
		return err
	}
	return st.ElementBatches(lowerBatch, func(batch []ruleset.Element) error {
		elems, err := lowerElements(st.Set, batch)
		if err != nil {
			return err
		}
		for _, chunk := range chunkElements(elems) {
			if err := e.conn.SetAddElements(ns, chunk); err != nil {
				return fmt.Errorf("add elements to set %s: %w", st.Set.Name, err)
			}
		}
		return nil
	})
}

func (e *emitter) delLimit(st ruleset.Step) error {
	e.conn.DeleteObject(&nftables.NamedObj{Table: e.t, Name: st.Limit.Name, Type: nftables.ObjTypeLimit})
	return nil
}

func (e *emitter) addLimit(st ruleset.Step) error {
	e.conn.AddObj(lowerLimit(e.t, st.Limit))
	return nil
}

// ruleText renders a rule for an error message without panicking on a
// shape the ruleset package does not know.
func ruleText(r ruleset.Rule) (s string) {
	defer func() {
		if recover() != nil {
			s = fmt.Sprintf("%T", r)
		}
	}()
	return ruleset.RuleText(r)
}

// lowerBatch is how many elements of a new set are lowered to netlink at a
// time; the messages of a batch are complete before the next is built.
const lowerBatch = 4096

// chunkElements splits elements so that each message stays well below the
// 64 KiB limit of one netlink attribute.
func chunkElements(elems []nftables.SetElement) [][]nftables.SetElement {
	var out [][]nftables.SetElement
	startIdx, size := 0, 0
	for i, e := range elems {
		n := 64 + 2*len(e.Key) + 2*len(e.KeyEnd)
		if e.VerdictData != nil {
			n += 32 + len(e.VerdictData.Chain)
		}
		if size+n > maxElemBytes && i > startIdx {
			out = append(out, elems[startIdx:i])
			startIdx, size = i, 0
		}
		size += n
	}
	if startIdx < len(elems) {
		out = append(out, elems[startIdx:])
	}
	return out
}
