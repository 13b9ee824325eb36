// Package e2e drives a real privlinkd, started by the tests, with the
// official Azure SDK for Go modules through azidentity.
package e2e

import (
	"bytes"
	"context"
	"fmt"
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
	"github.com/privlink/privlink/internal/daemon/daemonproc"
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
	proc    *daemonproc.Proc
	log     *bytes.Buffer // one log across restarts: a failure shows every run
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
	d := &daemon{t: t, log: &bytes.Buffer{}}
	dir := t.TempDir()
	// PostgreSQL runs as the postgres user, who must pass through the
	// directories above the data directory (t.TempDir makes them 0700).
	if err := os.Chmod(filepath.Dir(dir), 0o711); err != nil {
		t.Fatal(err)
	}
	o := daemonproc.Options{Binary: filepath.Join(binDir, "privlinkd"), Dir: dir,
		Prefix: "pe2e" + uuid.NewString()[:6] + "-", LogLevel: "debug", Log: d.log}
	if backend == "etcd" {
		o.EtcdEndpoints, o.EtcdPrefix = etcdtest.Start(t), "/"+strings.ReplaceAll(t.Name(), "/", "_")+"/"
	}
	p, err := daemonproc.New(o)
	if err != nil {
		t.Fatal(err)
	}
	d.proc, d.prefix, d.dataDir, d.listen = p, p.Prefix, p.DataDir, p.Listen
	d.start()
	t.Cleanup(func() {
		d.stop(syscall.SIGTERM)
		if err := daemonproc.RemoveNamespaces(d.prefix); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			t.Logf("privlinkd log:\n%s", d.log.String())
		}
	})
	return d
}

func (d *daemon) start() {
	t := d.t
	t.Helper()
	if err := d.proc.Start(context.Background()); err != nil {
		t.Fatalf("%v\n%s", err, d.log.String())
	}
	d.cfg, d.creds = d.proc.Config, d.proc.Config.Creds
}

// stop ends the daemon with sig (SIGTERM: clean; SIGKILL: a crash).
func (d *daemon) stop(sig syscall.Signal) {
	if err := d.proc.Stop(sig, 30*time.Second); err != nil {
		d.t.Error(err)
	}
}

// restart stops the daemon with sig and starts it again on the same data.
func (d *daemon) restart(sig syscall.Signal) {
	d.t.Helper()
	d.stop(sig)
	d.start()
}

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

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return c
}

func ptr[T any](v T) *T { return &v }
