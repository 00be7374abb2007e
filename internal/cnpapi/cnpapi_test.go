package cnpapi

import (
	"errors"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	fakediscovery "k8s.io/client-go/discovery/fake"
	k8stesting "k8s.io/client-go/testing"
)

// served is discovery's answer for one version: whether it lists the
// resource and the storage version its hash names (None: no hash).
type served struct {
	v       Version
	storage Version
	other   bool // the group version is served, without clusternetworkpolicies
}

func fakeDiscovery(vs []served, fail map[Version]error) *fakediscovery.FakeDiscovery {
	d := &fakediscovery.FakeDiscovery{Fake: &k8stesting.Fake{}}
	for _, s := range vs {
		r := metav1.APIResource{Name: Resource, Kind: Kind}
		if s.storage != None {
			r.StorageVersionHash = storageVersionHash(s.storage)
		}
		if s.other {
			r = metav1.APIResource{Name: "adminnetworkpolicies", Kind: "AdminNetworkPolicy"}
		}
		d.Resources = append(d.Resources, &metav1.APIResourceList{GroupVersion: s.v.GroupVersion(), APIResources: []metav1.APIResource{r}})
	}
	// FakeDiscovery does not say which version it is asked for; answer
	// the failures in the order Discover asks.
	calls := 0
	d.AddReactor("get", "resource", func(k8stesting.Action) (bool, runtime.Object, error) {
		v := Versions[calls%len(Versions)]
		calls++
		if err := fail[v]; err != nil {
			return true, nil, err
		}
		return false, nil, nil
	})
	return d
}

// TestServed_ChoosesTheStorageVersionElseV1beta1: the version read is the
// CRD's storage version when discovery tells it, else v1beta1, else
// v1alpha2; 404 means not served; any other failure is an error, never
// "not served".
func TestServed_ChoosesTheStorageVersionElseV1beta1(t *testing.T) {
	t.Parallel()
	internal := apierrors.NewInternalError(errors.New("etcd is sad"))
	forbidden := apierrors.NewForbidden(schema.GroupResource{}, "", errors.New("no"))
	tests := []struct {
		name    string
		served  []served
		fail    map[Version]error
		want    Version
		wantErr bool
	}{
		{name: "no CRD", want: None},
		{name: "v0.3.0: both, v1beta1 stored", served: []served{{v: V1beta1, storage: V1beta1}, {v: V1alpha2, storage: V1beta1}}, want: V1beta1},
		{name: "v0.2.x: v1alpha2 only", served: []served{{v: V1alpha2, storage: V1alpha2}}, want: V1alpha2},
		{name: "both, v1alpha2 stored", served: []served{{v: V1beta1, storage: V1alpha2}, {v: V1alpha2, storage: V1alpha2}}, want: V1alpha2},
		{name: "both, no hash: v1beta1 first", served: []served{{v: V1beta1}, {v: V1alpha2}}, want: V1beta1},
		{name: "v1beta1 only", served: []served{{v: V1beta1, storage: V1beta1}}, want: V1beta1},
		{name: "stored in a version not served: fall back", served: []served{{v: V1alpha2, storage: V1beta1}}, want: V1alpha2},
		{name: "group served without the resource", served: []served{{v: V1beta1, other: true}}, want: None},
		{name: "500 on v1beta1", served: []served{{v: V1alpha2}}, fail: map[Version]error{V1beta1: internal}, wantErr: true},
		{name: "500 on v1alpha2 with v1beta1 served", served: []served{{v: V1beta1}}, fail: map[Version]error{V1alpha2: internal}, wantErr: true},
		{name: "403", fail: map[Version]error{V1beta1: forbidden}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := Served(fakeDiscovery(tt.served, tt.fail))
			if tt.wantErr {
				if err == nil {
					t.Fatalf("Served = %v, nil; want an error", got)
				}
				if got != None {
					t.Errorf("Served returned %v with its error", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("Served = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestStorageVersionHash_AsTheAPIServer: the hashes k8s.io/apiserver's
// discovery.StorageVersionHash gives for ClusterNetworkPolicy stored as
// v1beta1 and as v1alpha2 (TestAgent_CNPServedOnlyAsV1alpha2 checks that a
// real kube-apiserver publishes what Discover reads).
func TestStorageVersionHash_AsTheAPIServer(t *testing.T) {
	t.Parallel()
	for v, want := range map[Version]string{V1beta1: "YeXAAtZp7/g=", V1alpha2: "gUVa+n4iSe8="} {
		if got := storageVersionHash(v); got != want {
			t.Errorf("storageVersionHash(%s) = %s, want %s", v, got, want)
		}
	}
}
