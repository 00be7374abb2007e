// Command sealedcheck fails when a switch over one of policyd's sealed sets
// leaves a member out. `make verify` runs it from the repository root.
//
// A sealed set is either an interface sealed by an unexported method (its
// members are the types of its package that have that method: the rule
// shapes) or an enum type (its members are the exported constants of that
// type declared in its package: the step kinds). Every non-test switch of
// the module that names any member of a set, as a type switch case or a
// value case, must name every member of it, the invalid zero included: a
// default clause does not excuse a missing one, since one value many
// interpret is only safe when each interpreter says what it does with each
// member. A switch that is partial on purpose says so on the line before it
// or its own line, with a reason:
//
//	//sealed:partial only the shapes that lead to allow rules
//
// golangci-lint's exhaustive linter checks every enum of the module (52
// switches today, most outside these sets) with no way to name a few, and
// checks no type switch; gochecksumtype checks type switches over
// annotated interfaces but no enum. This checker does both for the listed sets only, with the standard
// library's parser: the members are identifiers distinct enough to match by
// name, so it needs no type checker and no new dependency.
package main

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	pathpkg "path"
	"path/filepath"
	"slices"
	"strings"
)

// sets lists the sealed sets, by package (relative to the module) and type
// name. Adding one is one line here.
var sets = []setName{
	{"policy/ruleset", "Rule"},     // the rule shapes, in type switches
	{"policy/ruleset", "Shape"},    // the rule shapes, by their Shape constant
	{"policy/ruleset", "StepKind"}, // the kinds of step of a batch
	{"policy/decider", "Kind"},     // the kinds of decider
}

// setName names a sealed set.
type setName struct{ pkg, name string }

// set is a sealed set and its members.
type set struct {
	setName
	path    string // import path
	members []string
}

func main() {
	root := "."
	if len(os.Args) > 1 {
		root = os.Args[1]
	}
	findings, err := run(root, sets)
	if err != nil {
		fmt.Fprintln(os.Stderr, "sealedcheck:", err)
		os.Exit(2)
	}
	for _, f := range findings {
		fmt.Println(f)
	}
	if len(findings) > 0 {
		os.Exit(1)
	}
}

// run checks every non-test Go file of the module at root against names and
// returns one finding a switch that misses members.
func run(root string, names []setName) ([]string, error) {
	module, err := modulePath(filepath.Join(root, "go.mod"))
	if err != nil {
		return nil, err
	}
	var all []*set
	for _, n := range names {
		s, err := loadSet(root, module, n)
		if err != nil {
			return nil, err
		}
		all = append(all, s)
	}
	var findings []string
	err = walkGo(root, func(path string) error {
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, rel, src, parser.ParseComments)
		if err != nil {
			return err
		}
		findings = append(findings, checkFile(fset, f, pathpkg.Dir(rel), all)...)
		return nil
	})
	return findings, err
}

// modulePath reads the module path from go.mod.
func modulePath(gomod string) (string, error) {
	b, err := os.ReadFile(gomod)
	if err != nil {
		return "", err
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "module "); ok {
			return strings.Trim(strings.TrimSpace(rest), `"`), nil
		}
	}
	return "", fmt.Errorf("%s: no module line", gomod)
}

// walkGo calls f with every non-test .go file of the module at root,
// skipping testdata, hidden directories and nested modules.
func walkGo(root string, f func(path string) error) error {
	return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			name := d.Name()
			if path != root && (name == "testdata" || name == "vendor" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")) {
				return filepath.SkipDir
			}
			if _, err := os.Stat(filepath.Join(path, "go.mod")); path != root && err == nil {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		return f(path)
	})
}

// loadSet parses the package of n and finds its members.
func loadSet(root, module string, n setName) (*set, error) {
	dir := filepath.Join(root, filepath.FromSlash(n.pkg))
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		return nil, err
	}
	var parsed []*ast.File
	fset := token.NewFileSet()
	for _, path := range files {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return nil, err
		}
		parsed = append(parsed, f)
	}
	s := &set{setName: n, path: module + "/" + n.pkg}
	spec := findType(parsed, n.name)
	switch t := typeExpr(spec).(type) {
	case nil:
		return nil, fmt.Errorf("%s: no type %s", n.pkg, n.name)
	case *ast.InterfaceType:
		seal := sealingMethod(t)
		if seal == "" {
			return nil, fmt.Errorf("%s.%s: an interface without an unexported method is not sealed", n.pkg, n.name)
		}
		s.members = receivers(parsed, seal)
	default:
		s.members = constantsOf(parsed, n.name)
	}
	if len(s.members) < 2 {
		return nil, fmt.Errorf("%s.%s: %d members found; a sealed set needs at least two", n.pkg, n.name, len(s.members))
	}
	slices.Sort(s.members)
	return s, nil
}

func findType(files []*ast.File, name string) *ast.TypeSpec {
	for _, f := range files {
		for _, d := range f.Decls {
			if g, ok := d.(*ast.GenDecl); ok && g.Tok == token.TYPE {
				for _, sp := range g.Specs {
					if ts := sp.(*ast.TypeSpec); ts.Name.Name == name {
						return ts
					}
				}
			}
		}
	}
	return nil
}

func typeExpr(ts *ast.TypeSpec) ast.Expr {
	if ts == nil {
		return nil
	}
	return ts.Type
}

// sealingMethod returns the name of an unexported method of t, or "".
func sealingMethod(t *ast.InterfaceType) string {
	for _, m := range t.Methods.List {
		for _, n := range m.Names {
			if !n.IsExported() {
				return n.Name
			}
		}
	}
	return ""
}

// receivers returns the receiver types of the methods called method.
func receivers(files []*ast.File, method string) []string {
	var out []string
	for _, f := range files {
		for _, d := range f.Decls {
			fd, ok := d.(*ast.FuncDecl)
			if !ok || fd.Recv == nil || fd.Name.Name != method {
				continue
			}
			t := fd.Recv.List[0].Type
			if star, ok := t.(*ast.StarExpr); ok {
				t = star.X
			}
			if id, ok := t.(*ast.Ident); ok {
				out = append(out, id.Name)
			}
		}
	}
	return out
}

// constantsOf returns the exported constants of type name. In a const
// block, a spec without a type or values repeats the type of the one
// before; a spec with values and no type is untyped.
func constantsOf(files []*ast.File, name string) []string {
	var out []string
	for _, f := range files {
		for _, d := range f.Decls {
			g, ok := d.(*ast.GenDecl)
			if !ok || g.Tok != token.CONST {
				continue
			}
			typ := ""
			for _, sp := range g.Specs {
				vs := sp.(*ast.ValueSpec)
				switch {
				case vs.Type != nil:
					typ = ""
					if id, ok := vs.Type.(*ast.Ident); ok {
						typ = id.Name
					}
				case len(vs.Values) > 0:
					typ = ""
				}
				if typ != name {
					continue
				}
				for _, n := range vs.Names {
					if n.IsExported() {
						out = append(out, n.Name)
					}
				}
			}
		}
	}
	return out
}

// checkFile returns the findings of one file of the package at dir
// (relative to the module root).
func checkFile(fset *token.FileSet, f *ast.File, dir string, sets []*set) []string {
	// How this file names each set's package: "" inside the package.
	qual := map[*set]string{}
	for _, s := range sets {
		if dir == s.pkg {
			qual[s] = ""
			continue
		}
		for _, imp := range f.Imports {
			if strings.Trim(imp.Path.Value, `"`) != s.path {
				continue
			}
			q := s.path[strings.LastIndex(s.path, "/")+1:]
			if imp.Name != nil {
				q = imp.Name.Name
			}
			qual[s] = q
		}
	}
	if len(qual) == 0 {
		return nil
	}
	partial := partialLines(fset, f)
	var findings []string
	ast.Inspect(f, func(n ast.Node) bool {
		var body *ast.BlockStmt
		switch sw := n.(type) {
		case *ast.SwitchStmt:
			body = sw.Body
		case *ast.TypeSwitchStmt:
			body = sw.Body
		default:
			return true
		}
		pos := fset.Position(n.Pos())
		for _, s := range sets {
			q, ok := qual[s]
			if !ok {
				continue
			}
			named := namedMembers(body, s, q)
			if len(named) == 0 {
				continue
			}
			var missing []string
			for _, m := range s.members {
				if !named[m] {
					missing = append(missing, m)
				}
			}
			reason, marked := partial[pos.Line]
			switch {
			case len(missing) == 0:
			case marked && reason != "":
			case marked:
				findings = append(findings, fmt.Sprintf("%s: //sealed:partial on a switch over %s.%s needs a reason", pos, s.pkg, s.name))
			default:
				findings = append(findings, fmt.Sprintf("%s: switch over %s.%s misses %s (name every member, or mark it //sealed:partial with a reason)",
					pos, s.pkg, s.name, strings.Join(missing, ", ")))
			}
		}
		return true
	})
	return findings
}

// namedMembers returns the members of s the cases of body name, as q.Name
// (or Name inside the package, q == ""), through a pointer or not.
func namedMembers(body *ast.BlockStmt, s *set, q string) map[string]bool {
	named := map[string]bool{}
	for _, st := range body.List {
		cc, ok := st.(*ast.CaseClause)
		if !ok {
			continue
		}
		for _, e := range cc.List {
			if star, ok := e.(*ast.StarExpr); ok {
				e = star.X
			}
			var name string
			switch e := e.(type) {
			case *ast.Ident:
				if q == "" {
					name = e.Name
				}
			case *ast.SelectorExpr:
				if x, ok := e.X.(*ast.Ident); ok && q != "" && x.Name == q {
					name = e.Sel.Name
				}
			}
			if slices.Contains(s.members, name) {
				named[name] = true
			}
		}
	}
	return named
}

// partialLines maps the line of every switch marked //sealed:partial (the
// comment's own line and the next) to the reason given.
func partialLines(fset *token.FileSet, f *ast.File) map[int]string {
	out := map[int]string{}
	for _, g := range f.Comments {
		for _, c := range g.List {
			rest, ok := strings.CutPrefix(c.Text, "//sealed:partial")
			if !ok {
				continue
			}
			line := fset.Position(c.Pos()).Line
			reason := strings.TrimSpace(rest)
			out[line], out[line+1] = reason, reason
		}
	}
	return out
}
