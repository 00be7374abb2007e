// Package krew holds policyd's krew plugin manifest (policyd.yaml), which
// installs the CLI as `kubectl policyd`; its test checks the manifest
// against the krew format and against the binaries `make cross` builds.
package krew
