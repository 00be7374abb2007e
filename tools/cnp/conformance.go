//go:build tools

// Package cnp pins the network-policy-api release whose conformance suite the
// real-cluster e2e harness runs (the release policyd supports, as in the
// project's go.mod). The blank imports are what the suite's own test files
// (sigs.k8s.io/network-policy-api/conformance, package conformance_test)
// import, so that `go test -c` of that package finds every module in go.sum.
// It is a module of its own because the suite needs Kubernetes libraries
// newer than the cluster's release in tools/cluster.
package cnp

import (
	_ "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	_ "k8s.io/apimachinery/pkg/util/sets"
	_ "k8s.io/client-go/kubernetes"
	_ "k8s.io/client-go/plugin/pkg/client/auth"
	_ "k8s.io/client-go/rest"
	_ "k8s.io/client-go/tools/clientcmd"
	_ "sigs.k8s.io/controller-runtime/pkg/client"
	_ "sigs.k8s.io/controller-runtime/pkg/client/config"
	_ "sigs.k8s.io/network-policy-api/apis/v1beta1"
	_ "sigs.k8s.io/network-policy-api/conformance/apis/v1alpha1"
	_ "sigs.k8s.io/network-policy-api/conformance/tests"
	_ "sigs.k8s.io/network-policy-api/conformance/utils/flags"
	_ "sigs.k8s.io/network-policy-api/conformance/utils/suite"
	_ "sigs.k8s.io/yaml"
)
