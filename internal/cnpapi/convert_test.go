package cnpapi

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	npav1alpha2 "sigs.k8s.io/network-policy-api/apis/v1alpha2"
	npav1beta1 "sigs.k8s.io/network-policy-api/apis/v1beta1"
)

// fill sets every exported field reachable from v (pointers allocated,
// slices of two, one map entry) to a value derived from a counter, so that
// no field is left at its zero value: a conversion that drops or mixes up a
// field shows in the JSON.
func fill(v reflect.Value, n *int) {
	*n++
	if v.Type() == reflect.TypeOf(metav1.Time{}) {
		v.Set(reflect.ValueOf(metav1.NewTime(time.Unix(int64(1_700_000_000+*n), 0).UTC())))
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(v.Elem(), n)
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fill(v.Field(i), n)
			}
		}
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 2, 2))
		for i := range 2 {
			fill(v.Index(i), n)
		}
	case reflect.Map:
		v.Set(reflect.MakeMap(v.Type()))
		k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
		fill(k, n)
		fill(e, n)
		v.SetMapIndex(k, e)
	case reflect.String:
		v.SetString(fmt.Sprintf("s%d", *n))
	case reflect.Int, reflect.Int32, reflect.Int64:
		v.SetInt(int64(*n))
	case reflect.Bool:
		v.SetBool(true)
	default:
		panic(fmt.Sprintf("fill: unhandled kind %s at %s", v.Kind(), v.Type()))
	}
}

// leaves lists the JSON paths of every value in a decoded document.
func leaves(prefix string, v any, out *[]string) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			leaves(prefix+"."+k, e, out)
		}
	case []any:
		for i, e := range x {
			leaves(fmt.Sprintf("%s[%d]", prefix, i), e, out)
		}
	default:
		*out = append(*out, fmt.Sprintf("%s=%v", prefix, x))
	}
}

func jsonLeaves(t *testing.T, v any) []string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	var out []string
	leaves("", doc, &out)
	return out
}

// TestToV1beta1_EveryField: a v1alpha2 object with every spec and status
// field set converts to a v1beta1 object with the same JSON, field for field
// (only apiVersion differs), sharing no memory with its input.
func TestToV1beta1_EveryField(t *testing.T) {
	t.Parallel()
	in := &npav1alpha2.ClusterNetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "c", Labels: map[string]string{"a": "b"}, ResourceVersion: "7"}}
	n := 0
	fill(reflect.ValueOf(&in.Spec).Elem(), &n)
	fill(reflect.ValueOf(&in.Status).Elem(), &n)
	want := jsonLeaves(t, in)
	if len(want) < 100 {
		t.Fatalf("the filled object has only %d values: the filler missed fields", len(want))
	}
	out := ToV1beta1(in)
	if out.APIVersion != "policy.networking.k8s.io/v1beta1" || out.Kind != "ClusterNetworkPolicy" {
		t.Errorf("TypeMeta %+v", out.TypeMeta)
	}
	got := jsonLeaves(t, out)
	strip := func(ls []string) map[string]bool {
		m := map[string]bool{}
		for _, l := range ls {
			if !strings.HasPrefix(l, ".apiVersion=") && !strings.HasPrefix(l, ".kind=") {
				m[l] = true
			}
		}
		return m
	}
	w, g := strip(want), strip(got)
	for l := range w {
		if !g[l] {
			t.Errorf("lost in conversion: %s", l)
		}
	}
	for l := range g {
		if !w[l] {
			t.Errorf("not in the input: %s", l)
		}
	}

	// No sharing: changing the output leaves the input alone.
	out.Spec.Egress[0].To[0].Networks[0] = "changed"
	out.Spec.Subject.Pods.PodSelector.MatchLabels["x"] = "changed"
	out.Spec.Ingress[0].Protocols[0].TCP.DestinationPort.Range.Start = -1
	out.Status.Conditions[0].Message = "changed"
	if got := jsonLeaves(t, in); !sameSet(got, want) {
		t.Error("the conversion shares memory with its input")
	}

	list := ListToV1beta1(&npav1alpha2.ClusterNetworkPolicyList{ListMeta: metav1.ListMeta{ResourceVersion: "9"}, Items: []npav1alpha2.ClusterNetworkPolicy{*in}})
	if list.ResourceVersion != "9" || len(list.Items) != 1 || list.Items[0].Name != "c" || list.Kind != "ClusterNetworkPolicyList" {
		t.Errorf("list converted as %+v", list.ListMeta)
	}
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[string]int{}
	for _, x := range a {
		m[x]++
	}
	for _, x := range b {
		m[x]--
	}
	for _, c := range m {
		if c != 0 {
			return false
		}
	}
	return true
}

// TestToV1beta1_SameSchema: the two Go types have the same JSON fields, so
// that a field either version gains fails here until the conversion (and
// this package's claim of one schema) is revisited.
func TestToV1beta1_SameSchema(t *testing.T) {
	t.Parallel()
	var shape func(reflect.Type, string, map[string]string, map[reflect.Type]bool)
	shape = func(ty reflect.Type, prefix string, out map[string]string, seen map[reflect.Type]bool) {
		for ty.Kind() == reflect.Pointer || ty.Kind() == reflect.Slice {
			ty = ty.Elem()
		}
		if ty.Kind() != reflect.Struct || ty.PkgPath() != reflect.TypeOf(npav1beta1.ClusterNetworkPolicy{}).PkgPath() &&
			ty.PkgPath() != reflect.TypeOf(npav1alpha2.ClusterNetworkPolicy{}).PkgPath() || seen[ty] {
			out[prefix] = ty.Kind().String()
			return
		}
		seen[ty] = true
		for i := range ty.NumField() {
			f := ty.Field(i)
			name := strings.Split(f.Tag.Get("json"), ",")[0]
			if name == "" {
				name = "(inline)" + f.Name
			}
			shape(f.Type, prefix+"."+name, out, seen)
		}
		delete(seen, ty)
	}
	a, b := map[string]string{}, map[string]string{}
	shape(reflect.TypeOf(npav1alpha2.ClusterNetworkPolicy{}), "", a, map[reflect.Type]bool{})
	shape(reflect.TypeOf(npav1beta1.ClusterNetworkPolicy{}), "", b, map[reflect.Type]bool{})
	for k, v := range a {
		if b[k] != v {
			t.Errorf("v1alpha2 %s (%s) is %q in v1beta1", k, v, b[k])
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			t.Errorf("v1beta1 %s is not in v1alpha2", k)
		}
	}
}
