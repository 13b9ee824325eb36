package e2e

import (
	"errors"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/postgresql/armpostgresqlflexibleservers/v5"
	"github.com/privlink/privlink/internal/testkit"
)

// The largest shared_buffers of Standard_E96ds_v5 (672 GiB): 75% of its
// memory in 8 kB pages, 504 GiB.
const e96SharedBuffers = "66060288"

// requireUnmappable skips the test on a machine that could map 504 GiB of
// shared memory (then the value that the SKU allows would start).
func requireUnmappable(t *testing.T) {
	t.Helper()
	if mode, err := os.ReadFile("/proc/sys/vm/overcommit_memory"); err != nil || strings.TrimSpace(string(mode)) == "1" {
		t.Skipf("vm.overcommit_memory = 1 (%v): the kernel would map any shared_buffers, so none fails the start", err)
	}
	meminfo, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		t.Fatal(err)
	}
	var kb int64
	for line := range strings.Lines(string(meminfo)) {
		if f := strings.Fields(line); len(f) >= 2 && (f[0] == "MemTotal:" || f[0] == "SwapTotal:") {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			kb += n
		}
	}
	if kb >= 504<<20 {
		t.Skipf("%d GiB of memory and swap: PostgreSQL could start with 504 GiB of shared_buffers here", kb>>20)
	}
}

// responseError returns err as the SDK's error, failing the test when it
// is not one with code.
func responseError(t *testing.T, err error, code string) *azcore.ResponseError {
	t.Helper()
	var re *azcore.ResponseError
	if !errors.As(err, &re) || re.ErrorCode != code {
		t.Fatalf("error = %v, want %s", err, code)
	}
	return re
}

// TestBrick reproduces issue 14's third defect: a configuration value
// that the server cannot start with. The value of the report,
// shared_buffers = 1073741823, is refused by the SKU's bound; a value
// the SKU allows but this machine cannot allocate fails the restart
// (the poller returns the postmaster's FATAL), after which the server is
// Ready on its old settings, with its data, and takes new values,
// restarts and stops again.
func TestBrick(t *testing.T) {
	testkit.RequireRoot(t, "it creates network namespaces", "ip", "dig")
	requireUnmappable(t)
	d := startDaemon(t, "bolt")
	t.Cleanup(func() { stopPostmasters(t, d) })
	c := ctx(t)
	createGroup(t, d, "brick")
	p := newPGClients(t, d, d.creds.SubscriptionID)
	createServer(t, p, "brick", "brick1") // Standard_B1ms: 2 GiB
	s := serverIn(t, d, "brick", "brick1")
	s.mustPSQL(t, "create table kept(v text); insert into kept values ('before')")
	setConfig := func(name, value string) error {
		poller, err := p.configs.BeginPut(c, "brick", "brick1", name, armpostgresqlflexibleservers.ConfigurationForUpdate{
			Properties: &armpostgresqlflexibleservers.ConfigurationProperties{Value: ptr(value), Source: ptr("user-override")}}, nil)
		if err == nil {
			_, err = poller.PollUntilDone(c, pollOpts)
		}
		return err
	}
	restart := func() error {
		poller, err := p.servers.BeginRestart(c, "brick", "brick1", nil)
		if err == nil {
			_, err = poller.PollUntilDone(c, pollOpts)
		}
		return err
	}
	config := func(name string) armpostgresqlflexibleservers.ConfigurationProperties {
		t.Helper()
		got, err := p.configs.Get(c, "brick", "brick1", name, nil)
		if err != nil {
			t.Fatal(err)
		}
		return *got.Properties
	}

	// The value of the report: outside the SKU's bound, refused as Azure
	// does, naming the parameter and the bound; nothing stored.
	if got := *config("shared_buffers").AllowedValues; got != "16-196608" {
		t.Errorf("shared_buffers allowedValues on Standard_B1ms = %q, want 16-196608", got)
	}
	err := setConfig("shared_buffers", "1073741823")
	re := responseError(t, err, "InvalidParameterValue")
	if re.StatusCode != http.StatusBadRequest {
		t.Errorf("status %d, want 400", re.StatusCode)
	}
	for _, want := range []string{"shared_buffers", "1073741823", "16-196608", "Standard_B1ms"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the refusal does not say %q: %v", want, err)
		}
	}
	if sb := config("shared_buffers"); *sb.Source != "system-default" || *sb.IsConfigPendingRestart {
		t.Fatalf("a refused value was stored: %+v", sb)
	}

	// A compute size whose bound this machine cannot allocate.
	up, err := p.servers.BeginUpdate(c, "brick", "brick1", armpostgresqlflexibleservers.ServerForPatch{
		SKU: &armpostgresqlflexibleservers.SKUForPatch{Name: ptr("Standard_E96ds_v5"), Tier: ptr(armpostgresqlflexibleservers.SKUTierMemoryOptimized)}}, nil)
	if err == nil {
		_, err = up.PollUntilDone(c, pollOpts)
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := setConfig("shared_buffers", e96SharedBuffers); err != nil {
		t.Fatalf("shared_buffers = %s on Standard_E96ds_v5: %v", e96SharedBuffers, err)
	}
	if !*config("shared_buffers").IsConfigPendingRestart {
		t.Error("shared_buffers is not pending a restart")
	}
	// The restart fails, within the test's bound, saying why.
	err = restart()
	responseError(t, err, "ServerStartFailed")
	for _, want := range []string{"could not map anonymous shared memory", "shared_buffers from " + e96SharedBuffers + " back to 16384"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the failed restart does not say %q: %v", want, err)
		}
	}

	// The server is back, Ready, on its previous settings, with its data.
	srv, err := p.servers.Get(c, "brick", "brick1", nil)
	if err != nil || *srv.Properties.State != armpostgresqlflexibleservers.ServerStateReady {
		t.Fatalf("after the failed restart: %v %v", err, srv.Properties.State)
	}
	if sb := config("shared_buffers"); *sb.Value != "16384" || *sb.Source != "system-default" || *sb.IsConfigPendingRestart {
		t.Errorf("shared_buffers after the failed restart: %s %s pending %v", *sb.Value, *sb.Source, *sb.IsConfigPendingRestart)
	}
	if got := s.mustPSQL(t, "select v from kept"); got != "before" {
		t.Errorf("data after the failed restart: %q", got)
	}
	if got := s.mustPSQL(t, "show shared_buffers"); got != "128MB" {
		t.Errorf("shared_buffers running = %s, want 128MB", got)
	}

	// And everything works again: a new value, a restart, stop, start.
	if err := setConfig("shared_buffers", "32768"); err != nil {
		t.Fatalf("configuration after the failed restart: %v", err)
	}
	if err := restart(); err != nil {
		t.Fatalf("restart with shared_buffers = 32768: %v", err)
	}
	if got := s.mustPSQL(t, "show shared_buffers"); got != "256MB" {
		t.Errorf("shared_buffers after the restart = %s, want 256MB", got)
	}
	stop, err := p.servers.BeginStop(c, "brick", "brick1", nil)
	if err == nil {
		_, err = stop.PollUntilDone(c, pollOpts)
	}
	if err != nil {
		t.Fatalf("stop: %v", err)
	}
	start, err := p.servers.BeginStart(c, "brick", "brick1", nil)
	if err == nil {
		_, err = start.PollUntilDone(c, pollOpts)
	}
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	if got := s.mustPSQL(t, "select v from kept"); got != "before" {
		t.Errorf("data after stop and start: %q", got)
	}
}
