package nft

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/policyd/policyd/policy/ruleset"
)

// This file reads the kernel's nftables state with plain nfnetlink requests:
// the ruleset generation id (google/nftables v0.3.0 has no getter for it) and
// the names, types and elements of policyd's sets, its chains, its limit
// objects, and the handle and userdata of every rule of every chain. Rule expressions are
// never decoded.

// errDumpInterrupted reports a dump the kernel marked inconsistent because
// the ruleset changed while it was being dumped.
var errDumpInterrupted = errors.New("nftables dump interrupted by a concurrent change")

// kernelReader sends read-only nfnetlink requests in one network namespace.
type kernelReader struct {
	netns int
}

func (k kernelReader) dial() (*netlink.Conn, error) {
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: k.netns})
	if err != nil {
		return nil, fmt.Errorf("dial netfilter netlink: %w", err)
	}
	return c, nil
}

// request builds an nftables request with the nfgenmsg header.
func request(msgType uint8, flags netlink.HeaderFlags, family byte, attrs []netlink.Attribute) (netlink.Message, error) {
	data, err := netlink.MarshalAttributes(attrs)
	if err != nil {
		return netlink.Message{}, err
	}
	return netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | uint16(msgType)),
			Flags: netlink.Request | flags,
		},
		Data: append([]byte{family, unix.NFNETLINK_V0, 0, 0}, data...),
	}, nil
}

// execute sends m and returns the replies, failing on an interrupted dump.
func execute(c *netlink.Conn, m netlink.Message) ([]netlink.Message, error) {
	msgs, err := c.Execute(m)
	if err != nil {
		return nil, err
	}
	for _, r := range msgs {
		if r.Header.Flags&netlink.DumpInterrupted != 0 {
			return nil, errDumpInterrupted
		}
	}
	return msgs, nil
}

// decoder returns an attribute decoder for the payload of an nftables
// message, after its 4-byte nfgenmsg header.
func decoder(m netlink.Message) (*netlink.AttributeDecoder, error) {
	if len(m.Data) < 4 {
		return nil, fmt.Errorf("short nftables message (%d bytes)", len(m.Data))
	}
	ad, err := netlink.NewAttributeDecoder(m.Data[4:])
	if err != nil {
		return nil, err
	}
	ad.ByteOrder = binary.BigEndian
	return ad, nil
}

// genID returns the current ruleset generation id. Every committed batch
// that changes anything, in any table, increments it.
func genID(c *netlink.Conn) (uint32, error) {
	m, err := request(unix.NFT_MSG_GETGEN, 0, unix.AF_UNSPEC, nil)
	if err != nil {
		return 0, err
	}
	msgs, err := execute(c, m)
	if err != nil {
		return 0, fmt.Errorf("get nftables generation: %w", err)
	}
	for _, r := range msgs {
		if r.Header.Type != netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_NEWGEN) {
			continue
		}
		ad, err := decoder(r)
		if err != nil {
			return 0, err
		}
		for ad.Next() {
			if ad.Type() == unix.NFTA_GEN_ID {
				id := ad.Uint32()
				if err := ad.Err(); err != nil {
					return 0, err
				}
				return id, nil
			}
		}
		if err := ad.Err(); err != nil {
			return 0, err
		}
	}
	return 0, errors.New("get nftables generation: no generation id in reply")
}

// kTable is what the kernel holds of policyd's table.
type kTable struct {
	exists bool
	sets   []*kSet
	chains []*kChain
	limits []*ruleset.Limit
}

type kSet struct {
	name     string
	flags    uint32
	keyType  uint32
	keyLen   uint32
	dataType uint32
	comment  string
	// size is NFTA_SET_DESC_SIZE, 0 when the set has none.
	size  uint32
	elems []kElem
}

type kElem struct {
	key, keyEnd []byte
	intervalEnd bool
	hasVerdict  bool
	code        int32
	chain       string
}

type kChain struct {
	name     string
	base     bool
	hooknum  uint32
	priority int32
	policy   uint32
	rules    []kRule
}

type kRule struct {
	handle uint64
	udata  []byte
}

// readTable reads policyd's table: sets with elements, chains, and the
// handle and userdata of every rule, in order.
func readTable(c *netlink.Conn) (*kTable, error) {
	t := &kTable{}
	m, err := request(unix.NFT_MSG_GETTABLE, 0, unix.NFPROTO_INET, []netlink.Attribute{
		{Type: unix.NFTA_TABLE_NAME, Data: cstring(ruleset.TableName)},
	})
	if err != nil {
		return nil, err
	}
	if _, err := execute(c, m); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return t, nil
		}
		return nil, fmt.Errorf("get table inet %s: %w", ruleset.TableName, err)
	}
	t.exists = true
	if t.sets, err = readSets(c); err != nil {
		return nil, err
	}
	for _, s := range t.sets {
		if s.elems, err = readElements(c, s.name); err != nil {
			return nil, err
		}
	}
	if t.chains, err = readChains(c); err != nil {
		return nil, err
	}
	rules, err := readRules(c)
	if err != nil {
		return nil, err
	}
	for _, ch := range t.chains {
		ch.rules = rules[ch.name]
	}
	if t.limits, err = readLimits(c); err != nil {
		return nil, err
	}
	return t, nil
}

// readLimits reads the table's limit objects. One that is not a plain
// packets-a-second limit (the only kind policyd writes) is returned with
// rate 0, so that it differs from every wanted limit and is replaced.
func readLimits(c *netlink.Conn) ([]*ruleset.Limit, error) {
	m, err := request(unix.NFT_MSG_GETOBJ, netlink.Dump, unix.NFPROTO_INET, []netlink.Attribute{
		{Type: unix.NFTA_OBJ_TABLE, Data: cstring(ruleset.TableName)},
		{Type: unix.NFTA_OBJ_TYPE, Data: binary.BigEndian.AppendUint32(nil, unix.NFT_OBJECT_LIMIT)},
	})
	if err != nil {
		return nil, err
	}
	msgs, err := execute(c, m)
	if err != nil {
		return nil, fmt.Errorf("list objects of table inet %s: %w", ruleset.TableName, err)
	}
	var out []*ruleset.Limit
	for _, r := range msgs {
		ad, err := decoder(r)
		if err != nil {
			return nil, err
		}
		l := &ruleset.Limit{}
		var table string
		var typ uint32
		var rate, unit uint64
		var kind, flags uint32
		for ad.Next() {
			switch ad.Type() {
			case unix.NFTA_OBJ_TABLE:
				table = ad.String()
			case unix.NFTA_OBJ_NAME:
				l.Name = ad.String()
			case unix.NFTA_OBJ_TYPE:
				typ = ad.Uint32()
			case unix.NFTA_OBJ_DATA:
				ad.Nested(func(nd *netlink.AttributeDecoder) error {
					for nd.Next() {
						switch nd.Type() {
						case unix.NFTA_LIMIT_RATE:
							rate = nd.Uint64()
						case unix.NFTA_LIMIT_UNIT:
							unit = nd.Uint64()
						case unix.NFTA_LIMIT_BURST:
							l.Burst = nd.Uint32()
						case unix.NFTA_LIMIT_TYPE:
							kind = nd.Uint32()
						case unix.NFTA_LIMIT_FLAGS:
							flags = nd.Uint32()
						}
					}
					return nil
				})
			}
		}
		if err := ad.Err(); err != nil {
			return nil, fmt.Errorf("decode object: %w", err)
		}
		if table != ruleset.TableName || typ != unix.NFT_OBJECT_LIMIT {
			continue
		}
		if unit == 1 && kind == unix.NFT_LIMIT_PKTS && flags == 0 && rate <= math.MaxUint32 {
			l.Rate = uint32(rate)
		}
		out = append(out, l)
	}
	return out, nil
}

func cstring(s string) []byte { return append([]byte(s), 0) }

func readSets(c *netlink.Conn) ([]*kSet, error) {
	m, err := request(unix.NFT_MSG_GETSET, netlink.Dump, unix.NFPROTO_INET, []netlink.Attribute{
		{Type: unix.NFTA_SET_TABLE, Data: cstring(ruleset.TableName)},
	})
	if err != nil {
		return nil, err
	}
	msgs, err := execute(c, m)
	if err != nil {
		return nil, fmt.Errorf("list sets of table inet %s: %w", ruleset.TableName, err)
	}
	var out []*kSet
	for _, r := range msgs {
		ad, err := decoder(r)
		if err != nil {
			return nil, err
		}
		s := &kSet{}
		table := ""
		for ad.Next() {
			switch ad.Type() {
			case unix.NFTA_SET_TABLE:
				table = ad.String()
			case unix.NFTA_SET_NAME:
				s.name = ad.String()
			case unix.NFTA_SET_FLAGS:
				s.flags = ad.Uint32()
			case unix.NFTA_SET_KEY_TYPE:
				s.keyType = ad.Uint32()
			case unix.NFTA_SET_KEY_LEN:
				s.keyLen = ad.Uint32()
			case unix.NFTA_SET_DATA_TYPE:
				s.dataType = ad.Uint32()
			case unix.NFTA_SET_DESC:
				ad.Nested(func(nd *netlink.AttributeDecoder) error {
					for nd.Next() {
						if nd.Type() == unix.NFTA_SET_DESC_SIZE {
							s.size = nd.Uint32()
						}
					}
					return nil
				})
			case unix.NFTA_SET_USERDATA:
				if tlv, ok := parseUserData(ad.Bytes()); ok {
					s.comment = string(bytes.TrimSuffix(tlv[udataSetComment], []byte{0}))
				}
			}
		}
		if err := ad.Err(); err != nil {
			return nil, fmt.Errorf("decode set: %w", err)
		}
		if table != ruleset.TableName || s.flags&unix.NFT_SET_ANONYMOUS != 0 {
			continue
		}
		out = append(out, s)
	}
	return out, nil
}

// udataSetComment is NFTNL_UDATA_SET_COMMENT.
const udataSetComment = 7

func readElements(c *netlink.Conn, set string) ([]kElem, error) {
	m, err := request(unix.NFT_MSG_GETSETELEM, netlink.Dump, unix.NFPROTO_INET, []netlink.Attribute{
		{Type: unix.NFTA_SET_ELEM_LIST_TABLE, Data: cstring(ruleset.TableName)},
		{Type: unix.NFTA_SET_ELEM_LIST_SET, Data: cstring(set)},
	})
	if err != nil {
		return nil, err
	}
	msgs, err := execute(c, m)
	if err != nil {
		return nil, fmt.Errorf("list elements of set %s: %w", set, err)
	}
	var out []kElem
	for _, r := range msgs {
		ad, err := decoder(r)
		if err != nil {
			return nil, err
		}
		for ad.Next() {
			if ad.Type() != unix.NFTA_SET_ELEM_LIST_ELEMENTS {
				continue
			}
			ad.Nested(func(list *netlink.AttributeDecoder) error {
				for list.Next() {
					var e kElem
					list.Nested(func(nd *netlink.AttributeDecoder) error {
						return decodeElem(nd, &e)
					})
					out = append(out, e)
				}
				return nil
			})
		}
		if err := ad.Err(); err != nil {
			return nil, fmt.Errorf("decode elements of set %s: %w", set, err)
		}
	}
	return out, nil
}

func decodeElem(nd *netlink.AttributeDecoder, e *kElem) error {
	value := func(dst *[]byte) func(*netlink.AttributeDecoder) error {
		return func(d *netlink.AttributeDecoder) error {
			for d.Next() {
				if d.Type() == unix.NFTA_DATA_VALUE {
					*dst = d.Bytes()
				}
			}
			return nil
		}
	}
	for nd.Next() {
		switch nd.Type() {
		case unix.NFTA_SET_ELEM_KEY:
			nd.Nested(value(&e.key))
		case nftables.NFTA_SET_ELEM_KEY_END:
			nd.Nested(value(&e.keyEnd))
		case unix.NFTA_SET_ELEM_FLAGS:
			e.intervalEnd = nd.Uint32()&unix.NFT_SET_ELEM_INTERVAL_END != 0
		case unix.NFTA_SET_ELEM_DATA:
			nd.Nested(func(d *netlink.AttributeDecoder) error {
				for d.Next() {
					if d.Type() != unix.NFTA_DATA_VERDICT {
						continue
					}
					e.hasVerdict = true
					d.Nested(func(v *netlink.AttributeDecoder) error {
						for v.Next() {
							switch v.Type() {
							case unix.NFTA_VERDICT_CODE:
								e.code = int32(v.Uint32())
							case unix.NFTA_VERDICT_CHAIN:
								e.chain = v.String()
							}
						}
						return nil
					})
				}
				return nil
			})
		}
	}
	return nil
}

func readChains(c *netlink.Conn) ([]*kChain, error) {
	m, err := request(unix.NFT_MSG_GETCHAIN, netlink.Dump, unix.NFPROTO_INET, nil)
	if err != nil {
		return nil, err
	}
	msgs, err := execute(c, m)
	if err != nil {
		return nil, fmt.Errorf("list chains: %w", err)
	}
	var out []*kChain
	for _, r := range msgs {
		ad, err := decoder(r)
		if err != nil {
			return nil, err
		}
		ch := &kChain{}
		table := ""
		for ad.Next() {
			switch ad.Type() {
			case unix.NFTA_CHAIN_TABLE:
				table = ad.String()
			case unix.NFTA_CHAIN_NAME:
				ch.name = ad.String()
			case unix.NFTA_CHAIN_HOOK:
				ch.base = true
				ad.Nested(func(h *netlink.AttributeDecoder) error {
					for h.Next() {
						switch h.Type() {
						case unix.NFTA_HOOK_HOOKNUM:
							ch.hooknum = h.Uint32()
						case unix.NFTA_HOOK_PRIORITY:
							ch.priority = int32(h.Uint32())
						}
					}
					return nil
				})
			case unix.NFTA_CHAIN_POLICY:
				ch.policy = ad.Uint32()
			}
		}
		if err := ad.Err(); err != nil {
			return nil, fmt.Errorf("decode chain: %w", err)
		}
		if r.Data[0] != unix.NFPROTO_INET || table != ruleset.TableName {
			continue
		}
		out = append(out, ch)
	}
	return out, nil
}

// readRules reads the rules of every chain of policyd's table in one dump,
// by chain name, in each chain's order.
func readRules(c *netlink.Conn) (map[string][]kRule, error) {
	m, err := request(unix.NFT_MSG_GETRULE, netlink.Dump, unix.NFPROTO_INET, []netlink.Attribute{
		{Type: unix.NFTA_RULE_TABLE, Data: cstring(ruleset.TableName)},
	})
	if err != nil {
		return nil, err
	}
	msgs, err := execute(c, m)
	if err != nil {
		return nil, fmt.Errorf("list rules of table inet %s: %w", ruleset.TableName, err)
	}
	out := map[string][]kRule{}
	for _, r := range msgs {
		ad, err := decoder(r)
		if err != nil {
			return nil, err
		}
		var rule kRule
		table, ch := "", ""
		for ad.Next() {
			switch ad.Type() {
			case unix.NFTA_RULE_TABLE:
				table = ad.String()
			case unix.NFTA_RULE_CHAIN:
				ch = ad.String()
			case unix.NFTA_RULE_HANDLE:
				rule.handle = ad.Uint64()
			case unix.NFTA_RULE_USERDATA:
				rule.udata = append([]byte(nil), ad.Bytes()...)
			}
		}
		if err := ad.Err(); err != nil {
			return nil, fmt.Errorf("decode rule of chain %s: %w", ch, err)
		}
		if r.Data[0] != unix.NFPROTO_INET || table != ruleset.TableName {
			continue
		}
		out[ch] = append(out[ch], rule)
	}
	return out, nil
}
