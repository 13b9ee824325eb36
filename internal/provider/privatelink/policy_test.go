package privatelink

import (
	"testing"
)

func TestPolicy(t *testing.T) {
	const home, a, b = "11111111-1111-1111-1111-111111111111", "aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa", "bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb"
	var none *Policy
	if !none.Visible(a) || none.AutoApproves(a) {
		t.Error("no policy: every subscription may request, none is approved by policy")
	}
	p := &Policy{Home: home, Visibility: []string{a}, AutoApproval: []string{a}}
	for _, tc := range []struct {
		sub           string
		visible, auto bool
	}{
		{home, true, false},
		{"11111111-1111-1111-1111-111111111111", true, false},
		{"AAAAAAAA-AAAA-AAAA-AAAA-AAAAAAAAAAAA", true, true}, // subscription IDs compare without case
		{b, false, false},
	} {
		if got := p.Visible(tc.sub); got != tc.visible {
			t.Errorf("Visible(%s) = %v, want %v", tc.sub, got, tc.visible)
		}
		if got := p.AutoApproves(tc.sub); got != tc.auto {
			t.Errorf("AutoApproves(%s) = %v, want %v", tc.sub, got, tc.auto)
		}
	}
	if star := (&Policy{Home: home, Visibility: []string{"*"}}); !star.Visible(b) || star.AutoApproves(b) {
		t.Error("visibility * lets every subscription request, and approves none")
	}
}

func TestLinkIdentifier(t *testing.T) {
	seen := map[string]bool{}
	for range 64 {
		s := newLinkIdentifier()
		v, ok := ParseLinkIdentifier(s)
		if !ok || v == 0 {
			t.Fatalf("newLinkIdentifier() = %q: not a non-zero uint32", s)
		}
		seen[s] = true
	}
	if len(seen) < 60 {
		t.Errorf("64 link identifiers, only %d distinct", len(seen))
	}
	for _, bad := range []string{"", "0", "-1", "4294967296", "x"} {
		if _, ok := ParseLinkIdentifier(bad); ok {
			t.Errorf("ParseLinkIdentifier(%q) accepted", bad)
		}
	}
}
