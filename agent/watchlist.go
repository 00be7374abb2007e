package agent

import (
	"errors"
	"os"

	clientfeatures "k8s.io/client-go/features"
)

// UseWatchList turns client-go's WatchListClient feature on or off for the
// whole process; call it before creating any client or informer.
//
// With it on, an informer's initial state streams from the API server as
// watch events (sendInitialEvents, Kubernetes 1.27+, on by default in the
// API server since 1.34) and each object goes through the informer's
// transform as it arrives, so the agent never holds the full objects of a
// whole LIST at once: at 50k pods that LIST alone is larger than the
// agent's entire converted state. An API server without the feature makes
// client-go fall back to LIST. An explicit KUBE_FEATURE_WatchListClient
// environment variable still wins.
func UseWatchList(on bool) error {
	if _, set := os.LookupEnv("KUBE_FEATURE_" + string(clientfeatures.WatchListClient)); set {
		return nil // the operator's explicit choice
	}
	gates, ok := clientfeatures.FeatureGates().(interface {
		Set(clientfeatures.Feature, bool) error
	})
	if !ok {
		return errors.New("client-go's feature gates were replaced and cannot be set")
	}
	return gates.Set(clientfeatures.WatchListClient, on)
}
