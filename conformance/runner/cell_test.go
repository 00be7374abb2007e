package runner

import "testing"

func TestCell_Agrees(t *testing.T) {
	t.Parallel()
	yes, no := true, false
	tests := []struct {
		name string
		cell Cell
		want bool
	}{
		{"allowed and answered", Cell{Expected: true, Probed: true, Observed: true, Detail: "ok"}, true},
		{"denied by a timeout", Cell{Probed: true, Detail: "timeout"}, true},
		{"denied by a local output drop", Cell{Probed: true, Detail: "blocked locally"}, true},
		{"denied but refused: no server, or a reject", Cell{Probed: true, Detail: "refused"}, false},
		{"denied but unreachable", Cell{Probed: true, Detail: "unreachable"}, false},
		{"denied but connected without an answer", Cell{Probed: true, Detail: "no answer"}, false},
		{"expected allowed, dropped", Cell{Expected: true, Probed: true, Detail: "timeout"}, false},
		{"expected denied, answered", Cell{Probed: true, Observed: true, Detail: "ok"}, false},
		{"not probed", Cell{Expected: true, Detail: "not probed: SCTP"}, true},
		{"not probed, model vs case table", Cell{Expected: true, Case: &no}, false},
		{"case table agrees", Cell{Expected: true, Case: &yes, Probed: true, Observed: true}, true},
		{"lab fault", Cell{Expected: true, Probed: true, Observed: true, Err: "wrong answer"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := tt.cell.Agrees(); got != tt.want {
				t.Errorf("Agrees() = %v, want %v for %+v", got, tt.want, tt.cell)
			}
		})
	}
}
