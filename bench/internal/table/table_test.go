package table

import (
	"strings"
	"testing"
)

func TestTable(t *testing.T) {
	var b strings.Builder
	HeaderTo(&b, "NICs", "time")
	RowTo(&b, 10, "1.5s")
	want := "| NICs | time |\n|---|---|\n| 10 | 1.5s |\n"
	if b.String() != want {
		t.Errorf("got %q, want %q", b.String(), want)
	}
}
