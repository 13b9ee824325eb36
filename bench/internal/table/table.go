// Package table prints the markdown tables of the benchmark programs, as
// docs/benchmarks.md shows them.
package table

import (
	"fmt"
	"io"
	"os"
	"strings"
)

// Header prints a table's header row and its separator to standard output.
func Header(cols ...string) { HeaderTo(os.Stdout, cols...) }

// HeaderTo prints a table's header row and its separator to w.
func HeaderTo(w io.Writer, cols ...string) {
	fmt.Fprintln(w, "| "+strings.Join(cols, " | ")+" |")
	fmt.Fprintln(w, "|"+strings.Repeat("---|", len(cols)))
}

// Row prints one row to standard output, each cell formatted with %v.
func Row(cells ...any) { RowTo(os.Stdout, cells...) }

// RowTo prints one row to w, each cell formatted with %v.
func RowTo(w io.Writer, cells ...any) {
	s := make([]string, len(cells))
	for i, c := range cells {
		s[i] = fmt.Sprint(c)
	}
	fmt.Fprintln(w, "| "+strings.Join(s, " | ")+" |")
}
