package testkit

import (
	"bufio"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// NFTMonitor follows what is committed to nftables in one network
// namespace: `nft monitor` runs inside it (through `ip netns exec`) until
// the test ends. Each commit (a kernel transaction, whatever it changes)
// ends with a line "# new generation N by process ..."; the lines before
// it are the commit's changes (add rule, delete element, ...). It reads
// the kernel's own account, so a test can tell that a pass changed nothing.
type NFTMonitor struct {
	ns   string
	cmd  *exec.Cmd
	mu   sync.Mutex
	cond *sync.Cond
	seen []string // lines not yet handed out by Changes
	done bool     // nft exited
	seq  int      // markers used
}

// StartNFTMonitor starts following namespace ns's nftables commits; it
// stops when the test ends.
func StartNFTMonitor(t testing.TB, ns string) *NFTMonitor {
	t.Helper()
	m := &NFTMonitor{ns: ns}
	m.cond = sync.NewCond(&m.mu)
	m.cmd = exec.Command("ip", "netns", "exec", ns, "nft", "monitor")
	out, err := m.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := m.cmd.Start(); err != nil {
		t.Fatalf("nft monitor in %s: %v", ns, err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			m.mu.Lock()
			m.seen = append(m.seen, sc.Text())
			m.cond.Broadcast()
			m.mu.Unlock()
		}
		m.mu.Lock()
		m.done = true
		m.cond.Broadcast()
		m.mu.Unlock()
	}()
	t.Cleanup(func() {
		_ = m.cmd.Process.Kill()
		_ = m.cmd.Wait()
	})
	// The monitor listens once a marker comes back: nft subscribes a
	// moment after it starts, and misses what is committed before.
	for try := 0; ; try++ {
		if _, ok := m.mark(t, 500*time.Millisecond); ok {
			return m
		}
		if try == 20 {
			t.Fatalf("nft monitor in %s: no marker came back in %d tries (read %q)", ns, try+1, m.seen)
		}
	}
}

// Changes returns what was committed in the namespace since the last call
// (or since the start): the number of commits and their change lines. It
// first commits a marker (an empty table of its own, added and deleted)
// and waits until the monitor reports it, so that nothing committed
// before the call is missed; the marker's own commits are left out.
func (m *NFTMonitor) Changes(t testing.TB) (commits int, changes []string) {
	t.Helper()
	lines, ok := m.mark(t, 10*time.Second)
	if !ok {
		t.Fatalf("nft monitor in %s: the marker did not come back (read %q)", m.ns, m.seen)
	}
	return countCommits(lines)
}

// mark commits a marker and waits, at most bound, until the monitor has
// reported it; it returns the lines read before the marker's.
func (m *NFTMonitor) mark(t testing.TB, bound time.Duration) (lines []string, ok bool) {
	t.Helper()
	m.seq++
	marker := fmt.Sprintf("privlink-monitor-%d", m.seq)
	for _, args := range [][]string{{"add", "table", "inet", marker}, {"delete", "table", "inet", marker}} {
		cmd := append([]string{"netns", "exec", m.ns, "nft"}, args...)
		if out, err := exec.Command("ip", cmd...).CombinedOutput(); err != nil {
			t.Fatalf("nft %s in %s: %v: %s", strings.Join(args, " "), m.ns, err, out)
		}
	}
	start, end := "add table inet "+marker, "delete table inet "+marker
	timedOut := false
	deadline := time.AfterFunc(bound, func() {
		m.mu.Lock()
		timedOut = true
		m.cond.Broadcast()
		m.mu.Unlock()
	})
	defer deadline.Stop()
	m.mu.Lock()
	defer m.mu.Unlock()
	// The marker's deletion, then the generation line of its commit.
	for {
		at := -1
		for i, l := range m.seen {
			if at < 0 && strings.HasPrefix(l, end) {
				at = i
			}
			if at >= 0 && strings.HasPrefix(l, "# new generation") {
				lines = m.seen[:i+1]
				m.seen = m.seen[i+1:]
				if j := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, start) }); j >= 0 {
					lines = lines[:j]
				}
				return lines, true
			}
		}
		if m.done || timedOut {
			return nil, false
		}
		m.cond.Wait()
	}
}

// countCommits counts the commits and change lines of monitor output.
func countCommits(lines []string) (commits int, changes []string) {
	for _, l := range lines {
		switch {
		case strings.HasPrefix(l, "# new generation"):
			commits++
		case strings.TrimSpace(l) != "":
			changes = append(changes, l)
		}
	}
	return commits, changes
}
