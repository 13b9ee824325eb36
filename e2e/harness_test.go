// Package e2e drives a real privlinkd, started by the tests, with the
// official Azure SDK for Go modules through azidentity.
package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	azruntime "github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/google/uuid"
	"github.com/privlink/privlink/internal/azconfig"
	"github.com/privlink/privlink/internal/fabric"
	"github.com/privlink/privlink/internal/store/etcd/etcdtest"
)

var binDir string

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(runHelper(mode, os.Args[1:]))
	}
	dir, err := os.MkdirTemp("", "privlink-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	args := []string{"build", "-o", dir}
	if raceEnabled {
		args = append(args, "-race")
	}
	args = append(args, "../cmd/privlinkd", "../cmd/privlink")
	cmd := exec.Command("go", args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build privlinkd:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// pollOpts makes pollers follow the server's Retry-After; the default
// frequency (30 s) only applies when a server sends none.
var pollOpts = &azruntime.PollUntilDoneOptions{Frequency: time.Second}

// daemon is one privlinkd process the test started.
type daemon struct {
	t       *testing.T
	prefix  string // of its network namespaces
	dataDir string
	listen  string
	args    []string
	cmd     *exec.Cmd
	log     *bytes.Buffer
	exited  chan struct{}
	creds   azconfig.Credentials
	cfg     *azconfig.Config
}

// backends lists the stores the suite runs on: bolt always, etcd too
// (a real etcd from Debian's etcd-server, started by the test).
func backends(t *testing.T) []string { return []string{"bolt", "etcd"} }

// startDaemon starts privlinkd on a fresh data directory and a free port,
// and stops it when the test ends.
func startDaemon(t *testing.T, backend string) *daemon {
	t.Helper()
	d := &daemon{t: t, dataDir: t.TempDir(), listen: freeAddr(t), prefix: "pe2e" + uuid.NewString()[:6] + "-"}
	// PostgreSQL runs as the postgres user, who must pass through the
	// directories above the data directory (t.TempDir makes them 0700).
	if err := os.Chmod(filepath.Dir(d.dataDir), 0o711); err != nil {
		t.Fatal(err)
	}
	d.args = []string{"--data-dir", d.dataDir, "--listen", d.listen, "--netns-prefix", d.prefix, "--log-level", "debug"}
	if backend == "etcd" {
		ep := etcdtest.Start(t)
		d.args = append(d.args, "--store", "etcd", "--etcd-endpoints", ep, "--etcd-prefix", "/"+strings.ReplaceAll(t.Name(), "/", "_")+"/")
	}
	d.start()
	t.Cleanup(func() {
		d.stop(syscall.SIGTERM)
		d.removeNamespaces()
		if t.Failed() {
			t.Logf("privlinkd log:\n%s", d.log.String())
		}
	})
	return d
}

func (d *daemon) start() {
	t := d.t
	t.Helper()
	if d.log == nil {
		d.log = &bytes.Buffer{} // one log across restarts: a failure shows every run
	}
	d.cmd = exec.Command(filepath.Join(binDir, "privlinkd"), d.args...)
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("start privlinkd: %v", err)
	}
	d.exited = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { _ = cmd.Wait(); close(done) }(d.cmd, d.exited)
	d.waitHealthy()
	c, err := azconfig.Load(filepath.Join(d.dataDir, "credentials.json"))
	if err != nil {
		t.Fatal(err)
	}
	d.creds = c
	d.cfg, err = azconfig.New(c)
	if err != nil {
		t.Fatal(err)
	}
}

// stop ends the daemon with sig (SIGTERM: clean; SIGKILL: a crash).
func (d *daemon) stop(sig syscall.Signal) {
	if d.cmd == nil || d.cmd.Process == nil {
		return
	}
	select {
	case <-d.exited:
		return
	default:
	}
	_ = d.cmd.Process.Signal(sig)
	select {
	case <-d.exited:
	case <-time.After(30 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.exited
		d.t.Errorf("privlinkd did not stop within 30s of %v", sig)
	}
}

// restart stops the daemon with sig and starts it again on the same data.
func (d *daemon) restart(sig syscall.Signal) {
	d.t.Helper()
	d.stop(sig)
	d.start()
}

func (d *daemon) waitHealthy() {
	t := d.t
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-d.exited:
			t.Fatalf("privlinkd exited during start:\n%s", d.log.String())
		default:
		}
		pem, err := os.ReadFile(filepath.Join(d.dataDir, "ca.pem"))
		if err != nil {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
		resp, err := hc.Get("https://" + d.listen + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("privlinkd not healthy after 60s:\n%s", d.log.String())
}

// opts returns ARM client options for the default principal.
func (d *daemon) opts() *arm.ClientOptions { return d.cfg.ClientOptions() }

// principal runs `privlink principal create` and returns an SDK
// configuration for the new principal.
func (d *daemon) principal(newTenant bool) *azconfig.Config {
	d.t.Helper()
	args := []string{"--data-dir", d.dataDir, "principal", "create"}
	if newTenant {
		args = append(args, "--new-tenant")
	}
	out := d.cli(args...)
	f := filepath.Join(d.t.TempDir(), "creds.json")
	if err := os.WriteFile(f, []byte(out), 0o600); err != nil {
		d.t.Fatal(err)
	}
	c, err := azconfig.Load(f)
	if err != nil {
		d.t.Fatalf("privlink principal create printed unusable credentials: %v\n%s", err, out)
	}
	cfg, err := azconfig.New(c)
	if err != nil {
		d.t.Fatal(err)
	}
	return cfg
}

// cli runs the privlink CLI and returns its standard output; it fails the
// test if the command fails.
func (d *daemon) cli(args ...string) string {
	d.t.Helper()
	out, err := d.cliResult(args...)
	if err != nil {
		d.t.Fatalf("privlink %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (d *daemon) cliResult(args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(binDir, "privlink"), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return stdout.String() + stderr.String(), err
	}
	return stdout.String(), nil
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return c
}

func ptr[T any](v T) *T { return &v }

// removeNamespaces deletes every namespace the daemon made (they outlive
// it on purpose: a restarted privlinkd finds them) and checks none is left.
func (d *daemon) removeNamespaces() {
	if os.Geteuid() != 0 {
		return
	}
	fab, err := fabric.New(d.prefix, nil)
	if err != nil {
		d.t.Errorf("clean up namespaces: %v", err)
		return
	}
	if err := fab.RemoveStale(func(string) bool { return false }); err != nil {
		d.t.Errorf("clean up namespaces: %v", err)
	}
	if left, _ := fab.ListOwned(); len(left) > 0 {
		d.t.Errorf("namespaces left behind: %v", left)
	}
}
