package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeModule writes files (path: content) under a new module root.
func writeModule(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	files["go.mod"] = "module example.com/m\n\ngo 1.26\n"
	for path, content := range files {
		full := filepath.Join(root, filepath.FromSlash(path))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// sealedPkg declares a sealed interface of two members and an enum of three
// (its unexported count is no member), with a switch of each kind inside
// the package.
const sealedPkg = `package p

type Shape interface{ seal() }

type A struct{}
type B struct{}

func (*A) seal() {}
func (*B) seal() {}

type Kind uint8

const (
	KindInvalid Kind = iota
	KindOne
	KindTwo
	numKinds
)

const untyped = 7

func (k Kind) String() string {
	switch k {
	case KindOne:
		return "one"
	}
	return "?"
}

func name(s Shape) string {
	switch s.(type) {
	case *A:
		return "a"
	case *B:
		return "b"
	}
	return ""
}
`

// consumer holds switches over both sets from another package, through an
// import renamed q.
const consumer = `package c

import q "example.com/m/p"

func full(s q.Shape, k q.Kind) {
	switch s.(type) {
	case *q.A, *q.B:
	}
	switch k {
	case q.KindInvalid, q.KindOne, q.KindTwo:
	}
}

func partial(s q.Shape, k q.Kind) {
	switch s.(type) {
	case *q.A:
	default:
	}
	switch k {
	case q.KindTwo:
	}
	//sealed:partial only A has what this wants
	switch s.(type) {
	case *q.A:
	}
	//sealed:partial
	switch s.(type) {
	case *q.B:
	}
	switch x := 3; x {
	case 1, 2:
	}
}
`

func TestRun_FindsSwitchesThatMissMembers(t *testing.T) {
	t.Parallel()
	root := writeModule(t, map[string]string{"p/p.go": sealedPkg, "c/c.go": consumer, "c/c_test.go": "package c\n\nimport q \"example.com/m/p\"\n\nfunc t(k q.Kind) {\n\tswitch k {\n\tcase q.KindOne:\n\t}\n}\n"})
	got, err := run(root, []setName{{"p", "Shape"}, {"p", "Kind"}})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"c/c.go:15:2: switch over p.Shape misses B (name every member",
		"c/c.go:19:2: switch over p.Kind misses KindInvalid, KindOne (",
		"c/c.go:27:2: //sealed:partial on a switch over p.Shape needs a reason",
		"p/p.go:23:2: switch over p.Kind misses KindInvalid, KindTwo (",
	}
	if len(got) != len(want) {
		t.Fatalf("findings:\n%s\nwant %d", strings.Join(got, "\n"), len(want))
	}
	for i := range want {
		if !strings.Contains(got[i], want[i]) {
			t.Errorf("finding %d = %q, want one containing %q", i, got[i], want[i])
		}
	}
}

func TestRun_RefusesASetItCannotFind(t *testing.T) {
	t.Parallel()
	root := writeModule(t, map[string]string{"p/p.go": sealedPkg + "\ntype Open interface{ Seal() }\n"})
	for _, tt := range []struct {
		set setName
		err string
	}{
		{setName{"p", "Nope"}, "no type Nope"},
		{setName{"p", "Open"}, "not sealed"},
		{setName{"p", "untyped"}, "no type untyped"},
	} {
		if _, err := run(root, []setName{tt.set}); err == nil || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("%v: error %v, want one containing %q", tt.set, err, tt.err)
		}
	}
}

// TestRun_Policyd runs the checker over this repository with its own list,
// so that `go test ./...` catches a switch that misses a member too.
func TestRun_Policyd(t *testing.T) {
	t.Parallel()
	got, err := run(filepath.Join("..", ".."), sets)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) > 0 {
		t.Errorf("switches over sealed sets miss members:\n%s", strings.Join(got, "\n"))
	}
}
