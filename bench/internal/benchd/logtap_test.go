package benchd

import (
	"strings"
	"testing"
)

func TestLogTap(t *testing.T) {
	var fwd strings.Builder
	tap := NewLogTap(&fwd)
	before := tap.Counts()
	lines := `time=2026-01-01T00:00:00Z level=DEBUG msg="NIC converged" nic=a
time=2026-01-01T00:00:00Z level=DEBUG msg="arm request" method=GET
time=2026-01-01T00:00:00Z level=WARN msg="reconcile failed; will retry" err=x
time=2026-01-01T00:00:00Z level=DEBUG msg=plain
time=2026-01-01T00:00:00Z level=DEBUG msg="NIC converged" nic=b
`
	// Split across writes, mid-line.
	_, _ = tap.Write([]byte(lines[:50]))
	_, _ = tap.Write([]byte(lines[50:]))
	got := tap.Counts().Since(before).Messages
	want := map[string]int{"NIC converged": 2, "arm request": 1, "reconcile failed; will retry": 1, "plain": 1}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("count of %q = %d, want %d (all: %v)", k, got[k], v, got)
		}
	}
	if !strings.Contains(fwd.String(), "level=WARN") || strings.Contains(fwd.String(), "level=DEBUG") {
		t.Errorf("forwarded %q, want the WARN line only", fwd.String())
	}
}
