package model

import (
	"encoding/binary"
	"hash/fnv"
	"math/rand/v2"
	"testing"

	"github.com/policyd/policyd/cluster/clustertest"
)

// byteSource feeds a rand.Rand from fuzz input, so that the fuzzer's byte
// mutations steer the generator (coverage guidance works), and falls back to
// a PCG seeded from the input once the bytes run out.
type byteSource struct {
	data     []byte
	fallback *rand.PCG
}

func newByteSource(data []byte) *byteSource {
	h := fnv.New64a()
	h.Write(data)
	return &byteSource{data: data, fallback: rand.NewPCG(h.Sum64(), uint64(len(data)))}
}

func (b *byteSource) Uint64() uint64 {
	if len(b.data) >= 8 {
		v := binary.LittleEndian.Uint64(b.data)
		b.data = b.data[8:]
		return v
	}
	return b.fallback.Uint64()
}

// FuzzEvaluate generates a cluster and packets from the input and checks
// Evaluate against the naive evaluator and the decision invariants. Matrix
// must also agree with Evaluate on every cell.
func FuzzEvaluate(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte("x/a -> y/b TCP/80"))
	f.Add(make([]byte, 64))
	f.Fuzz(func(t *testing.T, data []byte) {
		rng := rand.New(newByteSource(data))
		opts := clustertest.Options{
			IPv6:                rng.IntN(2) == 0,
			HostNetwork:         rng.IntN(2) == 0,
			Unscheduled:         rng.IntN(2) == 0,
			ExtraNamespaces:     rng.IntN(2),
			MaxPodsPerNamespace: 1 + rng.IntN(3),
			MaxPolicies:         1 + rng.IntN(6),
		}
		objs := clustertest.RandomObjects(rng, opts)
		s := objs.Snapshot()
		for range 8 {
			pc := randomPacket(rng, s, opts.IPv6 && rng.IntN(2) == 0)
			d := Evaluate(s, pc.model(s))
			checkInvariants(t, d)
			if msg := compare(objs, s, pc); msg != "" {
				t.Fatalf("%s\n%s", msg, describe(shrink(objs, pc), pc))
			}
		}
		// Matrix cells must agree with the naive evaluator too, probed over
		// the first family of the destination that the source also has.
		for i, c := range Matrix(s) {
			from, to := s.Pod(c.From), s.Pod(c.To)
			if from == nil || to == nil || from.HostNetwork || to.HostNetwork || c.From == c.To {
				t.Fatalf("matrix cell with an unprobeable pair: %+v", c)
			}
			if i%7 != 0 {
				continue // a sample keeps each input fast
			}
			pc := packetChoice{proto: c.Protocol, port: c.Port}
			for _, dip := range to.IPs {
				fam := 6
				if dip.Is4() {
					fam = 4
				}
				if sip, ok := from.IP(fam); ok {
					pc.src = endpointChoice{pod: c.From, ip: sip}
					pc.dst = endpointChoice{pod: c.To, ip: dip}
					break
				}
			}
			src, dst := pc.naive(objs)
			eg, in := naiveFor(objs).allowed(src, dst, pc.proto.String(), pc.port)
			if c.Allowed != (eg && in) {
				t.Fatalf("matrix cell %+v, naive egress=%v ingress=%v\n%s", c, eg, in, describe(objs, pc))
			}
		}
	})
}
