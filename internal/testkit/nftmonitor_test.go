package testkit

import (
	"crypto/rand"
	"encoding/hex"
	"os/exec"
	"testing"
)

// TestNFTMonitor: the commits in a namespace are counted, each once, and
// the monitor's own markers are not.
func TestNFTMonitor(t *testing.T) {
	RequireRoot(t, "it creates a network namespace", "nft", "ip")
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	ns := "plk-mon-" + hex.EncodeToString(b[:])
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "delete", ns).Run() })
	nft := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", append([]string{"netns", "exec", ns, "nft"}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("nft %v: %v: %s", args, err, out)
		}
	}
	m := StartNFTMonitor(t, ns)
	if n, changes := m.Changes(t); n != 0 || len(changes) != 0 {
		t.Errorf("nothing committed: %d commits %q", n, changes)
	}
	nft("add", "table", "inet", "t")
	nft("add", "set", "inet", "t", "s", "{ type ipv4_addr; }")
	nft("add", "element", "inet", "t", "s", "{ 10.0.0.1, 10.0.0.2 }")
	n, changes := m.Changes(t)
	if n != 3 || len(changes) != 4 { // each element a line
		t.Errorf("three commits, four changes: %d commits %q", n, changes)
	}
	if n, changes := m.Changes(t); n != 0 || len(changes) != 0 {
		t.Errorf("nothing more committed: %d commits %q", n, changes)
	}
}
