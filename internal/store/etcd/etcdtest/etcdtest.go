// Package etcdtest runs a real, single-member etcd server for tests: the
// etcd binary of Debian's etcd-server package, on free loopback ports,
// with its data in a temporary directory.
package etcdtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// MaxTxnOps is the --max-txn-ops the server runs with: privlink needs more
// than etcd's default of 128 (see package etcd).
const MaxTxnOps = 10000

const (
	startAttempts = 3                // a free port may be taken before etcd binds it
	startTimeout  = 30 * time.Second // until etcd reports healthy
	stopTimeout   = 10 * time.Second // from SIGTERM to SIGKILL
)

// Start starts etcd and returns its client endpoint, e.g.
// "http://127.0.0.1:43127". The server is stopped, and its data removed,
// when the test ends.
//
// If the etcd binary is not installed the test is skipped, or fails when
// the environment variable CI is "true".
func Start(t testing.TB) (endpoint string) {
	t.Helper()
	if _, err := exec.LookPath("etcd"); err != nil {
		msg := "etcd binary not found in PATH: install Debian's etcd-server package (apt-get install etcd-server)"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	endpoint, stop, err := Launch(t.TempDir())
	if err != nil {
		t.Fatalf("etcdtest: %v", err)
	}
	t.Cleanup(stop)
	return endpoint
}

// Launch starts etcd with its data and log in dir (benchmarks use it
// outside tests) and returns its client endpoint and a function that
// stops it.
func Launch(dir string) (endpoint string, stop func(), err error) {
	bin, err := exec.LookPath("etcd")
	if err != nil {
		return "", nil, fmt.Errorf("etcd binary not found in PATH: install Debian's etcd-server package: %w", err)
	}
	for attempt := 1; ; attempt++ {
		sub := filepath.Join(dir, "etcd-"+strconv.Itoa(attempt))
		endpoint, stop, err := launch(sub, bin)
		if err == nil || attempt == startAttempts {
			return endpoint, stop, err
		}
	}
}

// Prefix returns a key prefix unique within this test process, for
// tests that share one etcd.
func Prefix(t testing.TB) string {
	return fmt.Sprintf("/test/%s/%d/", t.Name(), prefixSeq.Add(1))
}

var prefixSeq atomic.Int64

func launch(dir, bin string) (string, func(), error) {
	ports, err := freePorts(2)
	if err != nil {
		return "", nil, err
	}
	client := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	peer := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", nil, err
	}
	logPath := filepath.Join(dir, "etcd.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return "", nil, fmt.Errorf("create log: %w", err)
	}
	defer logFile.Close() // the child has its own descriptor

	cmd := exec.Command(bin,
		"--name", "default",
		"--data-dir", filepath.Join(dir, "data"),
		"--listen-client-urls", client,
		"--advertise-client-urls", client,
		"--listen-peer-urls", peer,
		"--initial-advertise-peer-urls", peer,
		"--initial-cluster", "default="+peer,
		"--initial-cluster-state", "new",
		// privlink's transactions compare every key of a listed prefix.
		"--max-txn-ops", strconv.Itoa(MaxTxnOps),
		"--logger", "zap",
		"--log-outputs", "stderr",
		"--log-level", "warn",
	)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("start %s: %w", bin, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	stop := func() {
		pid := cmd.Process.Pid
		_ = syscall.Kill(-pid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(stopTimeout):
			_ = syscall.Kill(-pid, syscall.SIGKILL)
			<-exited
		}
	}

	if err := waitHealthy(client, exited); err != nil {
		stop()
		out, _ := os.ReadFile(logPath)
		return "", nil, fmt.Errorf("etcd on %s: %w\n%s", client, err, tail(out, 4096))
	}
	return client, stop, nil
}

// waitHealthy polls etcd's /health until it answers true, etcd exits, or
// startTimeout passes.
func waitHealthy(client string, exited <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if healthy(ctx, client) {
			return nil
		}
		select {
		case <-tick.C:
		case <-exited:
			return errors.New("exited before it became healthy")
		case <-ctx.Done():
			return fmt.Errorf("not healthy after %s", startTimeout)
		}
	}
}

func healthy(ctx context.Context, client string) bool {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, client+"/health", nil)
	if err != nil {
		return false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var h struct {
		Health string `json:"health"`
	}
	return resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(&h) == nil && h.Health == "true"
}

// freePorts returns n distinct loopback ports that were free a moment ago.
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		defer l.Close() // held until all are picked, so they differ
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
