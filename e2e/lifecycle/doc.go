// Package lifecycle holds the real cluster's DaemonSet lifecycle tests (build
// tag e2e; make e2e runs them after the upstream suites, see e2e/run.sh):
// with prober pods opening new connections to every target ten times a
// second from both nodes throughout, a rolling update to a new image, an
// agent pod deleted, a policy changed while an agent is down, and the
// uninstall; plus `kubectl policyd explain` and `policyd observe` live.
//
// Each test proves a claim of the agent's lifecycle (agent package doc):
// enforcement never pauses while an agent is replaced, what changed while it
// was away reaches the kernel when it is back, and uninstalling leaves every
// node clean.
package lifecycle
