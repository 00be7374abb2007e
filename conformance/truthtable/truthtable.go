// Package truthtable owns connectivity truth tables in the format the upstream
// Kubernetes e2e netpol suite prints: rows are sources ("from"), columns are
// destinations ("to"), "." means allowed, "X" denied and "-" not probed (the
// diagonal, a pod to itself, is never probed). There is one table per
// (port, protocol).
//
// Tables are plain data: they print, parse back (for data files) and diff.
// They know nothing about how a cell was obtained, so the model, the kernel lab
// and the conformance data all share them.
package truthtable

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	"github.com/policyd/policyd/policy/model"
)

// Marks used in printed tables.
const (
	MarkAllowed   = "."
	MarkDenied    = "X"
	MarkNotProbed = "-"
)

type cell uint8

const (
	cellNotProbed cell = iota // the zero value: nothing known
	cellAllowed
	cellDenied
)

func (c cell) mark() string {
	switch c {
	case cellAllowed:
		return MarkAllowed
	case cellDenied:
		return MarkDenied
	}
	return MarkNotProbed
}

// Table is a square truth table over Names. The zero value is not usable;
// build one with New.
type Table struct {
	// Names are the row and column labels in print order, usually pod keys
	// "x/a". Do not modify it directly; Set adds missing names.
	Names []string
	index map[string]int
	cells map[[2]int]cell
}

// New returns a table over names, every cell not probed. Duplicate names are
// kept once, in first-seen order.
func New(names []string) *Table {
	t := &Table{index: map[string]int{}, cells: map[[2]int]cell{}}
	for _, n := range names {
		t.add(n)
	}
	return t
}

func (t *Table) add(name string) int {
	if i, ok := t.index[name]; ok {
		return i
	}
	t.index[name] = len(t.Names)
	t.Names = append(t.Names, name)
	return len(t.Names) - 1
}

// Set records whether from may connect to to. A name the table does not have
// yet is appended to Names, so the table stays square.
func (t *Table) Set(from, to string, allowed bool) {
	c := cellDenied
	if allowed {
		c = cellAllowed
	}
	t.cells[[2]int{t.add(from), t.add(to)}] = c
}

// Unset marks the cell from -> to as not probed.
func (t *Table) Unset(from, to string) {
	i, ok1 := t.index[from]
	j, ok2 := t.index[to]
	if ok1 && ok2 {
		delete(t.cells, [2]int{i, j})
	}
}

// Get reports whether from may connect to to; probed is false when the cell
// was never set (or a name is unknown), and allowed is then false.
func (t *Table) Get(from, to string) (allowed, probed bool) {
	c := t.get(from, to)
	return c == cellAllowed, c != cellNotProbed
}

func (t *Table) get(from, to string) cell {
	i, ok1 := t.index[from]
	j, ok2 := t.index[to]
	if !ok1 || !ok2 {
		return cellNotProbed
	}
	return t.cells[[2]int{i, j}]
}

// Counts returns how many cells are allowed and denied.
func (t *Table) Counts() (allowedCells, deniedCells int) {
	for _, c := range t.cells {
		if c == cellAllowed {
			allowedCells++
		} else if c == cellDenied {
			deniedCells++
		}
	}
	return allowedCells, deniedCells
}

// String prints the table: a header line "-" followed by the column names,
// then one line per row name followed by one mark per column. Columns are
// padded with spaces so they line up; Parse reads it back.
func (t *Table) String() string {
	return t.render(func(from, to string) string { return t.get(from, to).mark() }, nil)
}

// render prints a grid with mark(from, to) in each cell and an optional suffix
// after each row.
func (t *Table) render(mark func(from, to string) string, rowSuffix func(from string) string) string {
	width := len(MarkNotProbed)
	for _, n := range t.Names {
		width = max(width, len(n))
	}
	for _, from := range t.Names {
		for _, to := range t.Names {
			width = max(width, len(mark(from, to)))
		}
	}
	var b strings.Builder
	row := func(first string, rest func(i int) string, suffix string) {
		var line strings.Builder
		line.WriteString(pad(first, width))
		for i := range t.Names {
			line.WriteString(" ")
			line.WriteString(pad(rest(i), width))
		}
		b.WriteString(strings.TrimRight(line.String(), " "))
		b.WriteString(suffix)
		b.WriteString("\n")
	}
	row(MarkNotProbed, func(i int) string { return t.Names[i] }, "")
	for _, from := range t.Names {
		suffix := ""
		if rowSuffix != nil {
			suffix = rowSuffix(from)
		}
		row(from, func(i int) string { return mark(from, t.Names[i]) }, suffix)
	}
	return b.String()
}

func pad(s string, width int) string {
	if len(s) >= width {
		return s
	}
	return s + strings.Repeat(" ", width-len(s))
}

// Parse reads a table printed by String. Blank lines and lines starting with
// "#" are skipped; leading indentation is ignored. The header line must start
// with "-" and the row names must equal the column names, in the same order.
func Parse(text string) (*Table, error) {
	var lines [][]string
	var lineNos []int
	for n, l := range strings.Split(text, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		lines = append(lines, strings.Fields(l))
		lineNos = append(lineNos, n+1)
	}
	if len(lines) == 0 {
		return nil, fmt.Errorf("truth table: empty")
	}
	header := lines[0]
	if header[0] != MarkNotProbed {
		return nil, fmt.Errorf("truth table line %d: header must start with %q, got %q", lineNos[0], MarkNotProbed, header[0])
	}
	names := header[1:]
	t := New(names)
	if len(t.Names) != len(names) {
		return nil, fmt.Errorf("truth table line %d: duplicate column name", lineNos[0])
	}
	if len(lines)-1 != len(names) {
		return nil, fmt.Errorf("truth table: %d columns but %d rows", len(names), len(lines)-1)
	}
	for r, fields := range lines[1:] {
		ln := lineNos[r+1]
		if fields[0] != names[r] {
			return nil, fmt.Errorf("truth table line %d: row %d is %q, want %q (rows must follow the column order)", ln, r, fields[0], names[r])
		}
		if len(fields)-1 != len(names) {
			return nil, fmt.Errorf("truth table line %d: row %q has %d cells, want %d", ln, fields[0], len(fields)-1, len(names))
		}
		for c, m := range fields[1:] {
			switch m {
			case MarkAllowed:
				t.Set(names[r], names[c], true)
			case MarkDenied:
				t.Set(names[r], names[c], false)
			case MarkNotProbed:
			default:
				return nil, fmt.Errorf("truth table line %d: row %q column %q: unknown mark %q (want %q, %q or %q)", ln, names[r], names[c], m, MarkAllowed, MarkDenied, MarkNotProbed)
			}
		}
	}
	return t, nil
}

// Diff compares observed against expected over the union of their names (in
// expected's order, then observed's extra names). A cell disagrees when its
// marks differ, including when only one side probed it. It returns the number
// of disagreeing cells and, when there are any, a grid in which agreeing
// cells show their mark and disagreeing cells show "expected>observed"
// (e.g. ".>X": expected allowed, observed denied) followed by one line per
// disagreement. The text is empty when the tables agree.
func Diff(expected, observed *Table) (mismatches int, text string) {
	u := New(expected.Names)
	for _, n := range observed.Names {
		u.add(n)
	}
	type miss struct{ from, to, want, got string }
	var misses []miss
	mark := func(from, to string) string {
		e, o := expected.get(from, to).mark(), observed.get(from, to).mark()
		if e == o {
			return e
		}
		return e + ">" + o
	}
	for _, from := range u.Names {
		for _, to := range u.Names {
			e, o := expected.get(from, to), observed.get(from, to)
			if e != o {
				misses = append(misses, miss{from, to, describe(e), describe(o)})
			}
		}
	}
	if len(misses) == 0 {
		return 0, ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d of %d cells disagree (cell marks: expected>observed; %s allowed, %s denied, %s not probed)\n",
		len(misses), len(u.Names)*len(u.Names), MarkAllowed, MarkDenied, MarkNotProbed)
	b.WriteString(u.render(mark, func(from string) string {
		n := 0
		for _, m := range misses {
			if m.from == from {
				n++
			}
		}
		if n == 0 {
			return ""
		}
		return fmt.Sprintf("   <- %d", n)
	}))
	for _, m := range misses {
		fmt.Fprintf(&b, "%s -> %s: expected %s, observed %s\n", m.from, m.to, m.want, m.got)
	}
	return len(misses), b.String()
}

func describe(c cell) string {
	switch c {
	case cellAllowed:
		return "allowed"
	case cellDenied:
		return "denied"
	}
	return "not probed"
}

// Tables is one truth table per destination port and protocol.
type Tables map[model.PortProto]*Table

// Keys returns the tables' keys sorted by port, then protocol number.
func (ts Tables) Keys() []model.PortProto {
	return slices.SortedFunc(maps.Keys(ts), model.PortProto.Compare)
}

// String prints every table, sorted by key, each preceded by a line holding
// its key ("TCP/80") and followed by a blank line. ParseTables reads it back.
func (ts Tables) String() string {
	var b strings.Builder
	for i, k := range ts.Keys() {
		if i > 0 {
			b.WriteString("\n")
		}
		b.WriteString(k.String())
		b.WriteString("\n")
		b.WriteString(ts[k].String())
	}
	return b.String()
}

// ParseTables reads tables printed by Tables.String: each table is preceded by
// a line "PROTOCOL/PORT". Lines starting with "#" are skipped.
func ParseTables(text string) (Tables, error) {
	out := Tables{}
	var key *model.PortProto
	var body []string
	flush := func() error {
		if key == nil {
			return nil
		}
		t, err := Parse(strings.Join(body, "\n"))
		if err != nil {
			return fmt.Errorf("table %s: %w", key, err)
		}
		if _, dup := out[*key]; dup {
			return fmt.Errorf("table %s: appears twice", key)
		}
		out[*key] = t
		return nil
	}
	for n, l := range strings.Split(text, "\n") {
		s := strings.TrimSpace(l)
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		if len(strings.Fields(s)) == 1 && strings.Contains(s, "/") && s != MarkNotProbed {
			if pp, err := model.ParsePortProto(s); err == nil {
				if err := flush(); err != nil {
					return nil, err
				}
				key, body = &pp, nil
				continue
			}
		}
		if key == nil {
			return nil, fmt.Errorf("truth tables line %d: expected a PROTOCOL/PORT line before the first table, got %q", n+1, s)
		}
		body = append(body, l)
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return out, nil
}

// FromCells builds one table per (port, protocol) from matrix cells. Every
// table spans the same names: all sources and destinations of cells, sorted,
// so tables of different ports line up; cells absent from the input stay
// not probed.
func FromCells(cells []model.Cell) Tables {
	seen := map[string]bool{}
	var names []string
	for _, c := range cells {
		for _, n := range []string{c.From, c.To} {
			if !seen[n] {
				seen[n] = true
				names = append(names, n)
			}
		}
	}
	sort.Strings(names)
	out := Tables{}
	for _, c := range cells {
		k := model.PortProto{Port: c.Port, Protocol: c.Protocol}
		t := out[k]
		if t == nil {
			t = New(names)
			out[k] = t
		}
		t.Set(c.From, c.To, c.Allowed)
	}
	return out
}
