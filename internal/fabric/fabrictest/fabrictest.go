// Package fabrictest gives tests outside internal/fabric a Fabric of their
// own: a namespace prefix no other test or run shares, and a cleanup that
// removes every namespace of it and fails the test if one is left. Only
// tests import it; internal/fabric's own tests have the same in
// helpers_test.go, with checks of the host namespace on top.
package fabrictest

import (
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"testing"

	"github.com/privlink/privlink/internal/fabric"
	"github.com/privlink/privlink/internal/testkit"
)

// New returns a Fabric whose namespaces are named tag, 8 random hex digits
// and "-" (tag is a few letters saying which package's tests made them, as
// `ip netns` shows them). It skips the test when not root (fails under CI).
// A nil log discards.
func New(t testing.TB, tag string, log *slog.Logger) *fabric.Fabric {
	t.Helper()
	testkit.RequireRoot(t, "it creates network namespaces")
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	prefix := tag + hex.EncodeToString(b[:]) + "-"
	f, err := fabric.New(prefix, log)
	if err != nil {
		t.Fatalf("fabric with prefix %s: %v", prefix, err)
	}
	t.Cleanup(func() {
		if err := f.RemoveStale(func(string) bool { return false }); err != nil {
			t.Errorf("remove namespaces of %s: %v", prefix, err)
		}
		if names, err := f.ListOwned(); err != nil || len(names) != 0 {
			t.Errorf("namespaces of %s left: %v (err %v)", prefix, names, err)
		}
	})
	return f
}
