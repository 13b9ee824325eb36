package proxyrelay

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"

	"github.com/privlink/privlink/internal/testkit"
)

// TestRelaySplices checks that payload goes through splice(2), not through
// user memory: it runs TestRelayHalfClose (which moves 3*copyChunk+17 bytes
// to the backend) again under strace and adds up what splice calls moved.
// Every relayed byte is spliced twice (socket to pipe, pipe to socket), and
// nothing else in that test splices, so the sum is at least twice the
// payload when, and only when, the relay splices.
func TestRelaySplices(t *testing.T) {
	if os.Getenv("PROXYRELAY_UNDER_STRACE") != "" {
		t.Skip("already under strace")
	}
	testkit.RequireRoot(t, "it traces a process with strace", "strace")
	out := filepath.Join(t.TempDir(), "strace.txt")
	cmd := exec.CommandContext(t.Context(), "strace", "-f", "-qq", "-e", "trace=splice", "-o", out,
		os.Args[0], "-test.run", "^TestRelayHalfClose$", "-test.count", "1")
	cmd.Env = append(os.Environ(), "PROXYRELAY_UNDER_STRACE=1")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("TestRelayHalfClose under strace: %v\n%s", err, b)
	}
	trace, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	// With several threads, strace splits a call into "splice(...
	// <unfinished ...>" and "<... splice resumed>...) = N".
	var moved, calls int
	for _, m := range regexp.MustCompile(`(?m)(?:splice\(|<\.\.\. splice resumed>).*\) = (\d+)$`).FindAllSubmatch(trace, -1) {
		n, _ := strconv.Atoi(string(m[1]))
		moved += n
		calls++
	}
	if payload := 3*copyChunk + 17; moved < 2*payload {
		t.Errorf("splice moved %d bytes in %d calls: want at least %d (the payload, in and out of a pipe)\n%s",
			moved, calls, 2*payload, bytes.TrimSpace(trace[:min(len(trace), 2000)]))
	}
	t.Logf("splice moved %d bytes in %d calls", moved, calls)
}
