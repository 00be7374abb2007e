package truthtable

import (
	"fmt"
	"strings"
	"testing"

	"github.com/policyd/policyd/cluster"
	"github.com/policyd/policyd/policy/model"
)

// fixture builds a 3x3 table over x/a, x/b, y/a from rows of marks, e.g.
// {"-..", "X-.", "..-"}; "-" leaves a cell unset.
func fixture(t *testing.T, rows ...string) *Table {
	t.Helper()
	names := []string{"x/a", "x/b", "y/a"}
	tab := New(names)
	for i, r := range rows {
		for j, m := range r {
			switch m {
			case '.':
				tab.Set(names[i], names[j], true)
			case 'X':
				tab.Set(names[i], names[j], false)
			case '-':
			default:
				t.Fatalf("bad fixture mark %q", m)
			}
		}
	}
	return tab
}

func TestTable_String(t *testing.T) {
	t.Parallel()
	tab := fixture(t, "-.X", "X-.", "..-")
	want := "" +
		"-   x/a x/b y/a\n" +
		"x/a -   .   X\n" +
		"x/b X   -   .\n" +
		"y/a .   .   -\n"
	if got := tab.String(); got != want {
		t.Errorf("String() =\n%s\nwant\n%s", got, want)
	}
}

func TestTable_GetSet(t *testing.T) {
	t.Parallel()
	tab := New([]string{"x/a", "x/b", "x/a"})
	if got := strings.Join(tab.Names, ","); got != "x/a,x/b" {
		t.Fatalf("New kept duplicate names: %s", got)
	}
	tests := []struct {
		name             string
		from, to         string
		set              *bool
		unset            bool
		wantOK, wantProb bool
	}{
		{name: "never set is not probed", from: "x/a", to: "x/b"},
		{name: "set allowed", from: "x/a", to: "x/b", set: ptr(true), wantOK: true, wantProb: true},
		{name: "set denied", from: "x/b", to: "x/a", set: ptr(false), wantProb: true},
		{name: "unknown name is not probed", from: "x/a", to: "q/q"},
	}
	for _, tt := range tests {
		// Sequential on purpose: the cases share one table.
		if tt.set != nil {
			tab.Set(tt.from, tt.to, *tt.set)
		}
		ok, probed := tab.Get(tt.from, tt.to)
		if ok != tt.wantOK || probed != tt.wantProb {
			t.Errorf("%s: Get(%s,%s) = %v,%v, want %v,%v", tt.name, tt.from, tt.to, ok, probed, tt.wantOK, tt.wantProb)
		}
	}
	tab.Unset("x/a", "x/b")
	if _, probed := tab.Get("x/a", "x/b"); probed {
		t.Errorf("Unset left the cell probed")
	}
	tab.Set("z/c", "x/a", true)
	if got := strings.Join(tab.Names, ","); got != "x/a,x/b,z/c" {
		t.Errorf("Set with a new name: Names = %s, want x/a,x/b,z/c", got)
	}
	if a, d := tab.Counts(); a != 1 || d != 1 {
		t.Errorf("Counts() = %d,%d, want 1,1", a, d)
	}
}

func ptr[T any](v T) *T { return &v }

func TestParse_RoundTrip(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		tab  *Table
	}{
		{name: "mixed", tab: fixture(t, "-.X", "X-.", "..-")},
		{name: "all denied", tab: fixture(t, "XXX", "XXX", "XXX")},
		{name: "nothing probed", tab: fixture(t, "---", "---", "---")},
		{name: "empty", tab: New(nil)},
		{name: "long names", tab: func() *Table {
			tab := New([]string{"namespace-1/pod-long-name", "x/a"})
			tab.Set("x/a", "namespace-1/pod-long-name", true)
			return tab
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			text := tt.tab.String()
			got, err := Parse(text)
			if err != nil {
				t.Fatalf("Parse(String()) error: %v\n%s", err, text)
			}
			if n, diff := Diff(tt.tab, got); n != 0 {
				t.Errorf("round trip changed %d cells:\n%s", n, diff)
			}
			if got.String() != text {
				t.Errorf("round trip text differs:\n%s\nvs\n%s", got.String(), text)
			}
		})
	}
}

func TestParse_AcceptsIndentAndComments(t *testing.T) {
	t.Parallel()
	text := `
	# expected after deny-all in x
	-	x/a	x/b
	x/a	-	X

	x/b	.	-
`
	tab, err := Parse(text)
	if err != nil {
		t.Fatal(err)
	}
	if ok, probed := tab.Get("x/a", "x/b"); ok || !probed {
		t.Errorf("x/a -> x/b = %v,%v, want denied", ok, probed)
	}
	if ok, probed := tab.Get("x/b", "x/a"); !ok || !probed {
		t.Errorf("x/b -> x/a = %v,%v, want allowed", ok, probed)
	}
}

func TestParse_Errors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, text, want string
	}{
		{name: "empty", text: "\n# only a comment\n", want: "empty"},
		{name: "header without dash", text: "x/a x/b\nx/a - .\nx/b . -", want: "header must start"},
		{name: "missing row", text: "- x/a x/b\nx/a - .", want: "2 columns but 1 rows"},
		{name: "rows out of order", text: "- x/a x/b\nx/b . -\nx/a - .", want: "rows must follow the column order"},
		{name: "short row", text: "- x/a x/b\nx/a -\nx/b . -", want: "has 1 cells, want 2"},
		{name: "bad mark", text: "- x/a x/b\nx/a - ?\nx/b . -", want: `unknown mark "?"`},
		{name: "duplicate column", text: "- x/a x/a\nx/a - .\nx/a . -", want: "duplicate column"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse(tt.text)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Parse error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestDiff(t *testing.T) {
	t.Parallel()
	base := func() *Table { return fixture(t, "-.X", "X-.", "..-") }
	tests := []struct {
		name      string
		observed  *Table
		wantN     int
		wantLines []string
	}{
		{name: "equal", observed: base(), wantN: 0},
		{
			name:     "one flipped to denied",
			observed: fixture(t, "-XX", "X-.", "..-"),
			wantN:    1,
			wantLines: []string{
				"1 of 9 cells disagree",
				"x/a -   .>X X   <- 1",
				"x/a -> x/b: expected allowed, observed denied",
			},
		},
		{
			name:     "flipped to allowed and one not probed",
			observed: fixture(t, "-..", "--.", "..-"),
			wantN:    2,
			wantLines: []string{
				"x/a -> y/a: expected denied, observed allowed",
				"x/b -> x/a: expected denied, observed not probed",
				"x/b X>- -   .   <- 1",
			},
		},
		{
			name: "observed has an extra pod",
			observed: func() *Table {
				tab := base()
				tab.Set("z/c", "x/a", false)
				return tab
			}(),
			wantN:     1,
			wantLines: []string{"z/c -> x/a: expected not probed, observed denied", "1 of 16 cells"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			n, text := Diff(base(), tt.observed)
			if n != tt.wantN {
				t.Errorf("Diff = %d mismatches, want %d\n%s", n, tt.wantN, text)
			}
			if n == 0 && text != "" {
				t.Errorf("Diff of equal tables returned text %q", text)
			}
			for _, l := range tt.wantLines {
				if !strings.Contains(text, l) {
					t.Errorf("Diff text lacks %q:\n%s", l, text)
				}
			}
		})
	}
}

func TestTables_RoundTrip(t *testing.T) {
	t.Parallel()
	cells := []model.Cell{
		{From: "x/a", To: "x/b", Port: 80, Protocol: cluster.ProtocolTCP, Allowed: true},
		{From: "x/b", To: "x/a", Port: 80, Protocol: cluster.ProtocolTCP, Allowed: false},
		{From: "x/a", To: "y/a", Port: 81, Protocol: cluster.ProtocolUDP, Allowed: true},
		{From: "x/a", To: "x/b", Port: 80, Protocol: cluster.ProtocolSCTP, Allowed: false},
	}
	ts := FromCells(cells)
	if got := len(ts); got != 3 {
		t.Fatalf("FromCells made %d tables, want 3", got)
	}
	for k, tab := range ts {
		if got := strings.Join(tab.Names, ","); got != "x/a,x/b,y/a" {
			t.Errorf("table %s names = %s, want every name sorted", k, got)
		}
	}
	tcp := ts[model.PortProto{Port: 80, Protocol: cluster.ProtocolTCP}]
	if ok, probed := tcp.Get("x/a", "x/b"); !ok || !probed {
		t.Errorf("TCP/80 x/a -> x/b = %v,%v, want allowed", ok, probed)
	}
	if _, probed := tcp.Get("x/a", "y/a"); probed {
		t.Errorf("TCP/80 x/a -> y/a probed, but no cell said so")
	}
	text := ts.String()
	if !strings.HasPrefix(text, "TCP/80\n") || !strings.Contains(text, "\nSCTP/80\n") || !strings.Contains(text, "\nUDP/81\n") {
		t.Errorf("Tables.String() headers wrong:\n%s", text)
	}
	if strings.Index(text, "SCTP/80") > strings.Index(text, "UDP/81") {
		t.Errorf("Tables.String() not sorted by port then protocol:\n%s", text)
	}
	back, err := ParseTables("# a comment\n" + text)
	if err != nil {
		t.Fatalf("ParseTables: %v\n%s", err, text)
	}
	if len(back) != len(ts) {
		t.Fatalf("ParseTables returned %d tables, want %d", len(back), len(ts))
	}
	for k, want := range ts {
		if n, d := Diff(want, back[k]); n != 0 {
			t.Errorf("table %s changed:\n%s", k, d)
		}
	}
}

func TestParseTables_Errors(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, text, want string }{
		{name: "no key line", text: "- x/a\nx/a -", want: "expected a PROTOCOL/PORT line"},
		{name: "duplicate key", text: "TCP/80\n- x/a\nx/a -\ntcp/80\n- x/a\nx/a -", want: "appears twice"},
		{name: "bad table", text: "TCP/80\n- x/a\nx/a ?", want: "table TCP/80"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := ParseTables(tt.text)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ParseTables error = %v, want %q", err, tt.want)
			}
		})
	}
}

func ExampleDiff() {
	want := New([]string{"x/a", "x/b"})
	want.Set("x/a", "x/b", true)
	want.Set("x/b", "x/a", false)
	got := New([]string{"x/a", "x/b"})
	got.Set("x/a", "x/b", false)
	got.Set("x/b", "x/a", false)
	_, text := Diff(want, got)
	fmt.Print(text)
	// Output:
	// 1 of 4 cells disagree (cell marks: expected>observed; . allowed, X denied, - not probed)
	// -   x/a x/b
	// x/a -   .>X   <- 1
	// x/b X   -
	// x/a -> x/b: expected allowed, observed denied
}
