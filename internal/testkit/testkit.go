// Package testkit holds the helpers privlink's tests share: skipping (or,
// under CI, failing) tests that need root, bounded waits, and assertions
// on ARM errors as the Azure SDK returns them. Only tests import it.
package testkit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
)

// RequireRoot skips a test that needs root when not root, saying why; under
// CI (CI=true, which runs as root) it fails instead, so that nothing is
// silently skipped there. The tools it names must be installed.
func RequireRoot(t testing.TB, why string, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatalf("this test needs root (%s), and CI must run as root", why)
		}
		t.Skipf("this test needs root: %s", why)
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: run scripts/test, which installs what the tests need", tool)
		}
	}
}

// Poll calls cond every 50 ms until it holds or bound passes, and reports
// whether it held.
func Poll(bound time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(bound)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// WaitFor polls cond until it returns nil, and fails the test with what
// and cond's last error when bound passes first (bounds are generous:
// only something broken misses them).
func WaitFor(t testing.TB, bound time.Duration, what string, cond func() error) {
	t.Helper()
	var err error
	if !Poll(bound, func() bool { err = cond(); return err == nil }) {
		t.Fatalf("%s: not within %v: %v", what, bound, err)
	}
}

// Serve accepts connections on ln until the test ends, when it closes ln,
// and hands each to handle in a goroutine of its own.
func Serve(t testing.TB, ln net.Listener, handle func(net.Conn)) {
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go handle(c)
		}
	}()
}

// ARMError is the body of an ARM error response.
type ARMError struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
	Target  string `json:"target"`
}

// WantResponseError fails the test unless err is an *azcore.ResponseError
// with status and code, and returns it.
func WantResponseError(t testing.TB, err error, status int, code string) *azcore.ResponseError {
	t.Helper()
	var re *azcore.ResponseError
	if !errors.As(err, &re) {
		t.Fatalf("got error %v, want a %d %s ResponseError", err, status, code)
	}
	if re.StatusCode != status || re.ErrorCode != code {
		t.Fatalf("got %d %s, want %d %s:\n%v", re.StatusCode, re.ErrorCode, status, code, err)
	}
	return re
}

// WantARMError is WantResponseError that returns the decoded error body.
func WantARMError(t testing.TB, err error, status int, code string) ARMError {
	t.Helper()
	re := WantResponseError(t, err, status, code)
	var body struct {
		Error ARMError `json:"error"`
	}
	if b, perr := runtime.Payload(re.RawResponse); perr == nil {
		_ = json.Unmarshal(b, &body)
	}
	body.Error.Status = re.StatusCode
	return body.Error
}

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

// Capture runs tcpdump (every interface, IPv4 but ARP) in the network
// namespace ns until the returned function is called, which stops it and
// returns one summary line per packet and the raw capture. It stops at
// the test's end at the latest.
func Capture(t testing.TB, ns string) func() ([]string, []byte) {
	t.Helper()
	file := t.TempDir() + "/cap.pcap"
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
