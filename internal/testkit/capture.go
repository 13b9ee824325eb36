package testkit

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// lockedBuffer is a bytes.Buffer a process writes while the test reads.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Capture runs tcpdump on every interface of the namespace ns (IPv4, no
// ARP) until the returned function is called (or the test ends); that
// function stops it and returns one summary line per packet (tcpdump -n
// -r) and the raw capture, so a test can check both what flowed and that
// a payload never appeared in clear.
func Capture(t testing.TB, ns string) func() ([]string, []byte) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "cap.pcap")
	cmd := exec.Command("ip", "netns", "exec", ns, "tcpdump", "-i", "any", "-n", "-U", "--immediate-mode", "-Z", "root", "-w", file, "not arp and not ip6")
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	WaitFor(t, 10*time.Second, "tcpdump listening", func() error {
		if !strings.Contains(stderr.String(), "listening on") {
			return fmt.Errorf("stderr %q", stderr.String())
		}
		return nil
	})
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			_ = cmd.Process.Signal(syscall.SIGINT)
			_ = cmd.Wait()
			t.Logf("tcpdump: %s", stderr.String())
		}
	}
	t.Cleanup(stop)
	return func() ([]string, []byte) {
		stop()
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("tcpdump", "-n", "-r", file).Output()
		if err != nil {
			t.Fatalf("tcpdump -r: %v", err)
		}
		var lines []string
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if l != "" {
				lines = append(lines, l)
			}
		}
		return lines, raw
	}
}
