package postgres

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	pg "github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/postgresql/armpostgresqlflexibleservers/v5"
	"github.com/privlink/privlink/internal/store"
	"github.com/privlink/privlink/internal/testkit"
)

// TestSKUBounds: shared_buffers is bounded by 75% of the compute size's
// memory, in 8 kB pages; what a GET advertises is exactly what a PUT
// accepts. The other memory settings keep Azure's fixed ranges.
func TestSKUBounds(t *testing.T) {
	e := newEnv(t)
	e.group("rg")
	for _, c := range []struct {
		sku, tier string
		gib       int64
		max       int64 // of shared_buffers
	}{
		{"Standard_B1ms", "Burstable", 2, 196608},
		{"Standard_B2s", "Burstable", 4, 393216},
		{"Standard_B20ms", "Burstable", 80, 7864320},
		{"Standard_D2ds_v5", "GeneralPurpose", 8, 786432},
		{"Standard_D4ds_v5", "GeneralPurpose", 16, 1572864},
		{"Standard_D96ads_v5", "GeneralPurpose", 384, 37748736},
		{"Standard_E2ds_v5", "MemoryOptimized", 16, 1572864},
		{"Standard_E8ds_v5", "MemoryOptimized", 64, 6291456},
		{"Standard_E64s_v3", "MemoryOptimized", 432, 42467328},
		{"Standard_E96ds_v5", "MemoryOptimized", 672, 66060288},
	} {
		name := strings.ToLower(strings.ReplaceAll(c.sku, "_", "-"))
		body := serverBody()
		body.SKU = &pg.SKU{Name: to.Ptr(c.sku), Tier: to.Ptr(pg.SKUTier(c.tier))}
		if _, err := e.create("rg", name, body); err != nil {
			t.Fatalf("%s: %v", c.sku, err)
		}
		sb := e.getConfig("rg", name, "shared_buffers")
		if want := fmt.Sprintf("16-%d", c.max); *sb.Properties.AllowedValues != want {
			t.Errorf("%s: shared_buffers allowedValues %q, want %q", c.sku, *sb.Properties.AllowedValues, want)
		}
		// The bound itself is accepted, one more is not, nor
		// PostgreSQL's own maximum (the value that bricked a server).
		if _, err := e.setConfig("rg", name, "shared_buffers", to.Ptr(fmt.Sprint(c.max)), "user-override", false); err != nil {
			t.Errorf("%s: shared_buffers at its bound: %v", c.sku, err)
		}
		for _, v := range []int64{c.max + 1, 1073741823} {
			_, err := e.setConfig("rg", name, "shared_buffers", to.Ptr(fmt.Sprint(v)), "user-override", false)
			re := testkit.WantResponseError(t, err, http.StatusBadRequest, codeInvalidValue)
			for _, want := range []string{"shared_buffers", fmt.Sprint(v), fmt.Sprintf("16-%d", c.max), c.sku, fmt.Sprintf("%d GiB", c.gib), "75%"} {
				if !strings.Contains(re.Error(), want) {
					t.Errorf("%s: shared_buffers=%d: %q missing from %v", c.sku, v, want, re)
				}
			}
		}
		if got := *e.getConfig("rg", name, "shared_buffers").Properties.Value; got != fmt.Sprint(c.max) {
			t.Errorf("%s: a refused value changed shared_buffers to %s", c.sku, got)
		}
		// Azure bounds these by fixed ranges, whatever the size.
		for setting, want := range map[string]string{
			"max_connections": "25-5000", "work_mem": "64-2097151", "maintenance_work_mem": "1024-2097151",
			"effective_cache_size": "1-2147483647",
		} {
			if got := *e.getConfig("rg", name, setting).Properties.AllowedValues; got != want {
				t.Errorf("%s: %s allowedValues %q, want %q", c.sku, setting, got, want)
			}
		}
	}

	// Sizes Azure does not offer have no memory to bound by: refused.
	for _, sku := range []string{"Standard_B3ms", "Standard_D3ds_v5", "Standard_E7ds_v5", "Standard_D1024ds_v5"} {
		body := serverBody()
		body.SKU = &pg.SKU{Name: to.Ptr(sku)}
		_, err := e.create("rg", "odd-size", body)
		re := testkit.WantResponseError(t, err, http.StatusBadRequest, codeInvalidValue)
		if !strings.Contains(re.Error(), sku) || !strings.Contains(re.Error(), `"target": "sku.name"`) {
			t.Errorf("%s: %v", sku, re)
		}
	}
}

// TestSKUChangeKeepsSettingsInBounds: a compute size too small for a
// setting the user set is refused, naming the setting and the new bound;
// once the setting fits, the change goes through.
func TestSKUChangeKeepsSettingsInBounds(t *testing.T) {
	e := newEnv(t)
	e.group("rg")
	body := serverBody()
	body.SKU = &pg.SKU{Name: to.Ptr("Standard_D2ds_v5"), Tier: to.Ptr(pg.SKUTierGeneralPurpose)}
	if _, err := e.create("rg", "scale", body); err != nil {
		t.Fatal(err)
	}
	if _, err := e.setConfig("rg", "scale", "shared_buffers", to.Ptr("786432"), "user-override", false); err != nil {
		t.Fatal(err)
	}
	down := pg.ServerForPatch{SKU: &pg.SKUForPatch{Name: to.Ptr("Standard_B1ms"), Tier: to.Ptr(pg.SKUTierBurstable)}}
	_, err := e.update("rg", "scale", down)
	re := testkit.WantResponseError(t, err, http.StatusBadRequest, codeInvalidValue)
	for _, want := range []string{"shared_buffers", "786432", "16-196608", "Standard_B1ms", "2 GiB", `"target": "sku.name"`} {
		if !strings.Contains(re.Error(), want) {
			t.Errorf("%q missing from %v", want, re)
		}
	}
	s, err := e.servers.Get(e.ctx, "rg", "scale", nil)
	if err != nil || *s.SKU.Name != "Standard_D2ds_v5" {
		t.Fatalf("a refused change changed the size: %v %v", err, *s.SKU.Name)
	}
	// A PUT of the whole server is checked the same way.
	body.SKU = &pg.SKU{Name: to.Ptr("Standard_B2s"), Tier: to.Ptr(pg.SKUTierBurstable)}
	_, err = e.create("rg", "scale", body)
	testkit.WantResponseError(t, err, http.StatusBadRequest, codeInvalidValue)
	// Larger is fine, and advertises the larger bound.
	if _, err := e.update("rg", "scale", pg.ServerForPatch{SKU: &pg.SKUForPatch{Name: to.Ptr("Standard_D4ds_v5")}}); err != nil {
		t.Fatal(err)
	}
	if got := *e.getConfig("rg", "scale", "shared_buffers").Properties.AllowedValues; got != "16-1572864" {
		t.Errorf("allowedValues after scaling up: %s", got)
	}
	// Once the setting fits, the smaller size is accepted.
	if _, err := e.setConfig("rg", "scale", "shared_buffers", to.Ptr("65536"), "user-override", false); err != nil {
		t.Fatal(err)
	}
	if _, err := e.update("rg", "scale", down); err != nil {
		t.Fatalf("scale down with shared_buffers in bounds: %v", err)
	}
}

// TestFailedGenerationRollsBack: when the controller reports that a
// generation failed (the postmaster did not come up with its settings),
// the Desired record and the configurations go back to what the server
// last ran with, the operation fails naming what went back, the server
// is Ready again, and configuration changes and restarts work afterwards.
func TestFailedGenerationRollsBack(t *testing.T) {
	e := controllerEnv(t)
	p, err := e.servers.BeginCreateOrUpdate(e.ctx, "rg", "rbk", serverBody(), nil)
	if err != nil {
		t.Fatal(err)
	}
	e.reconcile("rg", "rbk")
	finish(t, e.ctx, p)
	// A good static setting, applied: part of what the server runs with.
	if _, err := e.setConfig("rg", "rbk", "max_connections", to.Ptr("200"), "user-override", false); err != nil {
		t.Fatal(err)
	}
	e.action2(t, "restart", "rg", "rbk")
	if d, _ := e.desired("rg", "rbk"); d.LastGood == nil || d.LastGood.Settings["max_connections"] != "200" || !d.LastGood.Running {
		t.Fatalf("LastGood after a reconciled restart: %+v", d.LastGood)
	}

	// Two new static values, then a restart that the controller fails.
	for name, v := range map[string]string{"max_connections": "300", "shared_buffers": "100000"} {
		if _, err := e.setConfig("rg", "rbk", name, to.Ptr(v), "user-override", false); err != nil {
			t.Fatal(err)
		}
	}
	pr, err := e.servers.BeginRestart(e.ctx, "rg", "rbk", nil)
	if err != nil {
		t.Fatal(err)
	}
	d, _ := e.desired("rg", "rbk")
	if d.Settings["shared_buffers"] != "100000" || d.Settings["max_connections"] != "300" {
		t.Fatalf("the restart did not apply the static settings: %v", d.Settings)
	}
	e.txn(func(tx store.Tx) error {
		ok, err := Failed(tx, serverID(t, "rg", "rbk"), d.Generation, StartFailure("rbk", "could not map anonymous shared memory: Cannot allocate memory"))
		if err == nil && !ok {
			t.Error("Failed refused the current generation")
		}
		return err
	})
	_, err = pr.PollUntilDone(e.ctx, poll)
	re := testkit.WantResponseError(t, err, http.StatusOK, codeStartFailed)
	for _, want := range []string{"could not map anonymous shared memory", "shared_buffers from 100000 back to 16384", "max_connections from 300 back to 200"} {
		if !strings.Contains(re.Error(), want) {
			t.Errorf("%q missing from %v", want, re)
		}
	}
	after, _ := e.desired("rg", "rbk")
	if after.Generation <= d.Generation || after.Settings["max_connections"] != "200" || after.Settings["shared_buffers"] != "" || !after.Running {
		t.Errorf("Desired after the failure: generation %d (was %d), running %v, settings %v", after.Generation, d.Generation, after.Running, after.Settings)
	}
	if st := e.state("rg", "rbk"); st != pg.ServerStateReady {
		t.Errorf("state %s after a rolled back restart", st)
	}
	sb := e.getConfig("rg", "rbk", "shared_buffers")
	mc := e.getConfig("rg", "rbk", "max_connections")
	if *sb.Properties.Source != sourceDefault || *sb.Properties.Value != "16384" || *sb.Properties.IsConfigPendingRestart ||
		*mc.Properties.Source != sourceUser || *mc.Properties.Value != "200" || *mc.Properties.IsConfigPendingRestart {
		t.Errorf("configurations after the failure: shared_buffers %s (%s, pending %v), max_connections %s (%s, pending %v)",
			*sb.Properties.Value, *sb.Properties.Source, *sb.Properties.IsConfigPendingRestart,
			*mc.Properties.Value, *mc.Properties.Source, *mc.Properties.IsConfigPendingRestart)
	}
	// A stale generation changes nothing more.
	e.txn(func(tx store.Tx) error {
		ok, err := Failed(tx, serverID(t, "rg", "rbk"), d.Generation, StartFailure("rbk", "again"))
		if ok {
			t.Error("Failed accepted a stale generation")
		}
		return err
	})
	// The controller applies the restored generation; then the user can
	// change the value again and restart.
	e.reconcile("rg", "rbk")
	if _, err := e.setConfig("rg", "rbk", "shared_buffers", to.Ptr("32768"), "user-override", false); err != nil {
		t.Fatalf("configuration after the failure: %v", err)
	}
	e.action2(t, "restart", "rg", "rbk")
	if d, _ := e.desired("rg", "rbk"); d.Settings["shared_buffers"] != "32768" || d.LastGood.Settings["shared_buffers"] != "32768" {
		t.Errorf("after a good restart: %v, last good %v", d.Settings, d.LastGood.Settings)
	}

	// A start that fails goes back to stopped: the controller stops
	// trying to run it.
	e.action2(t, "stop", "rg", "rbk")
	if _, err := e.setConfig("rg", "rbk", "shared_buffers", to.Ptr("65536"), "user-override", false); err == nil {
		t.Fatal("a configuration change on a stopped server was accepted")
	}
	ps, err := e.servers.BeginStart(e.ctx, "rg", "rbk", nil)
	if err != nil {
		t.Fatal(err)
	}
	d, _ = e.desired("rg", "rbk")
	e.txn(func(tx store.Tx) error {
		_, err := Failed(tx, serverID(t, "rg", "rbk"), d.Generation, StartFailure("rbk", "no memory"))
		return err
	})
	_, err = ps.PollUntilDone(e.ctx, poll)
	testkit.WantResponseError(t, err, http.StatusOK, codeStartFailed)
	if d, _ := e.desired("rg", "rbk"); d.Running {
		t.Error("a failed start left the server meant to run")
	}
	if st := e.state("rg", "rbk"); st != pg.ServerStateStopped {
		t.Errorf("state %s after a failed start", st)
	}
	e.action2(t, "start", "rg", "rbk")
}

// TestSKUMemory holds the compute sizes Azure offers to their memory, and
// refuses those it does not (128 and 192 vCores exist only in v6).
func TestSKUMemory(t *testing.T) {
	for _, c := range []struct {
		name string
		gib  int64
		ok   bool
	}{
		{"Standard_B1ms", 2, true},
		{"Standard_D4ds_v5", 16, true},
		{"standard_d96ds_v5", 384, true},
		{"Standard_D128ds_v6", 512, true},
		{"Standard_D128ds_v5", 0, false},
		{"Standard_D192ds_v5", 0, false},
		{"Standard_E192ds_v6", 1832, true},
		{"Standard_E128ds_v5", 0, false},
		{"Standard_E64s_v3", 432, true},
		{"Standard_E20ds_v5", 160, true},
		{"Standard_D20ds_v5", 0, false},
		{"Standard_B3ms", 0, false},
	} {
		if gib, ok := skuMemoryGiB(c.name); gib != c.gib || ok != c.ok {
			t.Errorf("skuMemoryGiB(%s) = %d, %v; want %d, %v", c.name, gib, ok, c.gib, c.ok)
		}
	}
}
