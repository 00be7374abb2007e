#!/usr/bin/env bash
# Runs policyd's benchmarks and writes BENCHMARKS.md: every figure with the
# command that produced it and the baseline measured in the same run.
# Needs root for the packet-path and agent benchmarks (network namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."
out=BENCHMARKS.md
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

run() { # title, command...
  local title=$1; shift
  echo "== $title: $*" >&2
  {
    echo "### $title"
    echo
    echo '```'
    echo "\$ $*"
    "$@" 2>&1 | grep -Ev '^(goos|goarch|pkg|cpu|PASS|ok )' || true
    echo '```'
    echo
  } >> "$tmp/body.md"
}

run "Selector index: build for 10,000 pods / 2,000 policies, one relabel, cached peer lookups" \
  go test -run='^$' -bench='FromSnapshot|PodRelabel|PeerPods' -benchmem -benchtime=5x ./selectors/
run "Semantics model: one explain, one matrix of a 100-pod namespace" \
  go test -run='^$' -bench='Evaluate|Matrix100' -benchmem ./policy/model/
run "Compile: 1k/10k/50k pods x 200/2k/10k policies, about 100 pods on the compiled node" \
  go test -run='^$' -bench='^BenchmarkCompile$' -benchmem -benchtime=5x -timeout=30m ./policy/compile/
run "Partial sync on the 10k/2k cluster: compile + diff time and kernel operations per change (pod add, pod relabel, policy add)" \
  go test -run='^$' -bench='^BenchmarkPartialSyncOps$' -benchmem -benchtime=10x ./policy/compile/
run "Hostile inputs: the worst single object of each shape at the API server's 1.5 MB limit (policy/compile/hostile), compiled with the default budgets (quarantined) and with them lifted: time, peak heap, what was built" \
  go test -run='^$' -bench='^BenchmarkCompileHostile$' -benchmem -benchtime=3x ./policy/compile/
run "Budgets: what one rule, element and chain cost the agent (Go heap of the table, twice, plus the peak of a full sync into a fresh namespace), the figures compile.DefaultBudget derives the budgets from" \
  go test -run='^$' -bench='^BenchmarkBudgetBytes$' -benchtime=2x ./policy/nft/
run "ClusterNetworkPolicy: compile the 10k/2k node without and with 100 Admin + 100 Baseline CNPs (two of each tier select each benchmark pod's namespace); partial sync per pod add, CNP action change and CNP priority change" \
  go test -run='^$' -bench='ClusterPolicies' -benchmem -benchtime=5x ./policy/compile/
run "Partial sync through netlink: one pod add written to a real kernel table" \
  go test -run='^$' -bench='BenchmarkSync' -benchmem -benchtime=20x ./policy/nft/
run "Strict mode: one --cut-established pass over 100,000 conntrack entries on the 10k/2k node (dump with the kernel mark filter, judge every marked flow, cut the denied)" \
  go test -run='^$' -bench='BenchmarkPass' -benchtime=3x -timeout=10m ./policy/ctcut/
go build -o "$tmp/pktbench" ./bench/cmd/pktbench
# The packet path writes its own markdown (tables, headings); its progress
# lines, every measurement as it happened, go below it in a collapsed block.
# Every configuration has topologies of its own, its table loaded once into
# each of 3 (round r measures instance r mod 3: the hash seeds of a table's
# sets move its cost by up to ±12%), so rounds are short and many: 15 rounds
# of 300 ms, then a kernel profile (perf, from Debian's linux-perf) of the
# time spent in nftables per judged packet, 6 rounds of 2 s. About 11
# minutes with these flags.
if ! command -v perf >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq linux-perf >/dev/null 2>&1 || true
fi
pktbench=("$tmp/pktbench" -instances 3 -rounds 15 -duration 300ms -pods 10000 -policies 2000 -cnps 100
  -curve-policies 200,2000,10000 -curve-pods 1000,10000,50000 -curve-rounds 15)
if command -v perf >/dev/null; then
  pktbench+=(-profile -profile-rounds 6 -profile-duration 2s)
else
  echo "bench: no perf (apt-get install linux-perf): the packet path runs without its kernel profile" >&2
fi
echo "== packet path: ${pktbench[*]}" >&2
{
  if ! "${pktbench[@]}" 2> "$tmp/pktbench.log"; then
    echo "**pktbench failed:** $(tail -n 1 "$tmp/pktbench.log")"
    tail -n 1 "$tmp/pktbench.log" >&2
  fi
  echo
  echo '```'
  echo "\$ pktbench ${pktbench[*]:1}"
  echo '```'
  echo
  echo '<details><summary>pktbench progress: every measurement as it was taken</summary>'
  echo
  echo '```'
  cat "$tmp/pktbench.log"
  echo '```'
  echo
  echo '</details>'
  echo
} >> "$tmp/body.md"
if [ -n "$(ls agent/*bench*_test.go 2>/dev/null)" ]; then
  run "Agent: policy programming latency and memory against a real API server" \
    go test -run='^$' -bench='BenchmarkAgent' -benchtime=1x -timeout=30m ./agent/
fi

{
  echo "# policyd benchmarks"
  echo
  echo "Written by \`make bench\` (hack/bench.sh) on $(date -u +%Y-%m-%d), $(nproc) cores,"
  echo "$(uname -r), $(go version | cut -d' ' -f3), load average at start: $(cut -d' ' -f1-3 /proc/loadavg)."
  echo "Every figure below comes with the command that produced it; baselines are"
  echo "measured in the same run. Times on a shared 2-core machine are noisy:"
  echo "compare figures within one run, not across runs."
  echo
  cat "$tmp/body.md"
} > "$out"
echo "wrote $out" >&2
