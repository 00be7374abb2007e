package pktpath

import "testing"

// TestCountStacks: samples are told apart by their header lines, and one is
// in nftables only when nft_do_chain itself is among its frames (not
// nft_do_chain_inet alone, not a leaf elsewhere).
func TestCountStacks(t *testing.T) {
	out := []byte(`16120 
	ffffffff81bdc7a7 nft_rhash_lookup
	ffffffff81bdc7a8 nft_lookup_eval
	ffffffff81bdc7a9 nft_do_chain
	ffffffff81bdc7aa nft_do_chain_inet
	ffffffff81bdc7ab nf_hook_slow

16120 
	ffffffff82255aa7 clear_page_erms
	ffffffff8163a328 get_page_from_freelist

  161 
	ffffffff81bdc7aa nft_do_chain_inet

16120 
	ffffffff81bdc7a9 nft_do_chain
	ffffffff81bdc7aa nft_do_chain_inet
16120 
	           6e2e8 runtime.newstack
`)
	samples, nft, err := countStacks(out)
	if err != nil {
		t.Fatal(err)
	}
	if samples != 5 || nft != 2 {
		t.Errorf("countStacks = %d samples, %d in nftables; want 5, 2", samples, nft)
	}
	if _, _, err := countStacks(nil); err == nil {
		t.Error("countStacks of no output: no error")
	}
}

// TestNftNs: the figure is the pooled samples over the pooled packets, and
// the spread is that of the single runs.
func TestNftNs(t *testing.T) {
	ps := []ProfileSample{
		{Sample: Sample{Count: 1000}, Nft: 10}, // 10 samples at 1 kHz = 10 ms over 1000: 10 µs
		{Sample: Sample{Count: 3000}, Nft: 6},  // 6 ms over 3000: 2 µs
	}
	ns, lo, hi := NftNs(ps, 1000)
	if ns != 4000 || lo != 2000 || hi != 10000 {
		t.Errorf("NftNs = %v (%v–%v), want 4000 (2000–10000)", ns, lo, hi)
	}
}
