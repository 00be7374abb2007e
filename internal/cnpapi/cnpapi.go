// Package cnpapi owns the one answer the agent and the CLI both need about
// ClusterNetworkPolicies: which version of policy.networking.k8s.io the
// cluster serves them in, and how to read that version as the v1beta1 type
// the rest of policyd uses.
//
// network-policy-api v0.3.0 CRDs serve v1beta1 (storage) and v1alpha2 (the
// same schema); v0.2.x CRDs serve v1alpha2 only. Served picks the CRD's
// storage version when discovery tells it (the StorageVersionHash of each
// served resource, which needs no permission beyond discovery), otherwise
// v1beta1 first, and falls back to the other version. A version the API
// server does not know (404) is "not served"; any other discovery failure is
// an error, never "no ClusterNetworkPolicies": callers keep their last
// answer and say so.
package cnpapi

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/discovery"
	npav1alpha2 "sigs.k8s.io/network-policy-api/apis/v1alpha2"
	npav1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
	npaclient "sigs.k8s.io/network-policy-api/pkg/client/clientset/versioned"
)

// Resource is the plural name ClusterNetworkPolicies are served under.
const Resource = "clusternetworkpolicies"

// Kind is their kind.
const Kind = "ClusterNetworkPolicy"

// Version is a version of policy.networking.k8s.io that serves
// ClusterNetworkPolicies. The zero value means none is served.
type Version string

// The versions policyd reads, in the order tried when the storage version
// is not known.
const (
	None     Version = ""
	V1beta1  Version = "v1beta1"
	V1alpha2 Version = "v1alpha2"
)

// Versions lists the versions policyd reads, v1beta1 first.
var Versions = []Version{V1beta1, V1alpha2}

// GroupVersion returns "policy.networking.k8s.io/VERSION".
func (v Version) GroupVersion() string { return npav1beta1.GroupName + "/" + string(v) }

// String returns the group version, or "none".
func (v Version) String() string {
	if v == None {
		return "none"
	}
	return v.GroupVersion()
}

// Answer is what discovery says about ClusterNetworkPolicies.
type Answer struct {
	// Served lists the versions that serve them, in Versions' order.
	Served []Version
	// Storage is the CRD's storage version when discovery tells it and it
	// is one policyd reads; None otherwise.
	Storage Version
}

// Choose returns the version to read: the storage version when it is
// served, else the first served one of Versions, else None.
func (a Answer) Choose() Version {
	for _, v := range a.Served {
		if v == a.Storage {
			return v
		}
	}
	if len(a.Served) > 0 {
		return a.Served[0]
	}
	return None
}

// Discover asks d which versions serve ClusterNetworkPolicies. A version the
// API server does not know (404) is not served; any other failure is an
// error naming the version, and then the Answer is not to be used.
func Discover(d discovery.DiscoveryInterface) (Answer, error) {
	var a Answer
	for _, v := range Versions {
		list, err := d.ServerResourcesForGroupVersion(v.GroupVersion())
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return Answer{}, fmt.Errorf("discovery of %s: %w", v.GroupVersion(), err)
		}
		for _, r := range list.APIResources {
			if r.Name != Resource {
				continue
			}
			a.Served = append(a.Served, v)
			for _, sv := range Versions {
				if r.StorageVersionHash != "" && r.StorageVersionHash == storageVersionHash(sv) {
					a.Storage = sv
				}
			}
		}
	}
	return a, nil
}

// Served returns the version to read ClusterNetworkPolicies in (Choose of
// Discover's answer): None when no version serves them, an error when
// discovery failed otherwise than with 404.
func Served(d discovery.DiscoveryInterface) (Version, error) {
	a, err := Discover(d)
	if err != nil {
		return None, err
	}
	return a.Choose(), nil
}

// storageVersionHash is the hash an API server publishes in discovery for a
// resource stored as group/version/kind (k8s.io/apiserver's
// discovery.StorageVersionHash): the first 8 bytes of the SHA-256 of
// "group/version/kind", in base64.
func storageVersionHash(v Version) string {
	sum := sha256.Sum256([]byte(npav1beta1.GroupName + "/" + string(v) + "/" + Kind))
	return base64.StdEncoding.EncodeToString(sum[:8])
}

// List lists the ClusterNetworkPolicies of version v, as v1beta1 objects.
func List(ctx context.Context, c npaclient.Interface, v Version, opts metav1.ListOptions) (*npav1beta1.ClusterNetworkPolicyList, error) {
	switch v {
	case V1beta1:
		return c.PolicyV1beta1().ClusterNetworkPolicies().List(ctx, opts)
	case V1alpha2:
		l, err := c.PolicyV1alpha2().ClusterNetworkPolicies().List(ctx, opts)
		if err != nil {
			return nil, err
		}
		return ListToV1beta1(l), nil
	}
	return nil, fmt.Errorf("no ClusterNetworkPolicy version %q", string(v))
}

// Watch watches the ClusterNetworkPolicies of version v; the events carry
// v1beta1 objects (bookmarks too; error events are passed as they are).
func Watch(ctx context.Context, c npaclient.Interface, v Version, opts metav1.ListOptions) (watch.Interface, error) {
	switch v {
	case V1beta1:
		return c.PolicyV1beta1().ClusterNetworkPolicies().Watch(ctx, opts)
	case V1alpha2:
		w, err := c.PolicyV1alpha2().ClusterNetworkPolicies().Watch(ctx, opts)
		if err != nil {
			return nil, err
		}
		return watch.Filter(w, func(ev watch.Event) (watch.Event, bool) {
			if o, ok := ev.Object.(*npav1alpha2.ClusterNetworkPolicy); ok {
				ev.Object = ToV1beta1(o)
			}
			return ev, true
		}), nil
	}
	return nil, fmt.Errorf("no ClusterNetworkPolicy version %q", string(v))
}
