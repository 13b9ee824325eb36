package pgserver

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestUpgrade upgrades a server of the oldest installed major with a
// pg_dumpall to the newest by dump and restore, through its namespace
// address: data, roles and passwords stay; a downgrade and a restore that
// the new major refuses leave the old cluster serving.
func TestUpgrade(t *testing.T) {
	e := newEnv(t)
	targets := e.m.UpgradeTargets()
	var from, to string
	for _, v := range e.m.Versions() {
		if len(targets[v]) > 0 {
			from, to = v, targets[v][len(targets[v])-1]
			break
		}
	}
	if from == "" {
		if e.m.dumpBin("0") == "" || len(e.m.Versions()) < 2 {
			requireVersion(t, e.m, "16") // skip (or fail under CI): scripts/install-pg-majors
		}
		t.Fatalf("no upgrade path among %v: %v", e.m.Versions(), targets)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	s := e.newServer()
	s.Version = from
	e.ensure(e.m, s)
	if _, err := e.psql(s, s.password, "sslmode=require",
		"CREATE TABLE t (id int PRIMARY KEY, v text)",
		"INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 5000) g"); err != nil {
		t.Fatal(err)
	}
	// Before 16 the administrator has no CREATEROLE (see adminCreateRole).
	for _, sql := range []string{"CREATE ROLE app LOGIN PASSWORD 'app-pw'", "GRANT SELECT ON t TO app"} {
		if _, err := e.m.Exec(ctx, s.ID, sql); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("Downgrade", func(t *testing.T) {
		down := s.Spec
		down.Version = "14"
		if _, err := e.m.bin("14"); err != nil {
			t.Skip("PostgreSQL 14 is not installed")
		}
		_, err := e.m.Upgrade(ctx, down, nil)
		var ue *UpgradeError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), "downgrade") {
			t.Fatalf("downgrade: %v, want an UpgradeError", err)
		}
	})

	t.Run("RefusedRestoreKeepsOldCluster", func(t *testing.T) {
		// force_parallel_mode is gone from PostgreSQL 16 (renamed debug_parallel_query): the
		// restore of the database's setting fails.
		for _, sql := range []string{"CREATE DATABASE appdb", "ALTER DATABASE appdb SET force_parallel_mode = off"} {
			if _, err := e.m.Exec(ctx, s.ID, sql); err != nil {
				t.Fatal(err)
			}
		}
		up := s.Spec
		up.Version = to
		_, err := e.m.Upgrade(ctx, up, nil)
		var ue *UpgradeError
		if !errors.As(err, &ue) || ue.Step != "DumpRestore" || !strings.Contains(ue.Reason, "force_parallel_mode") {
			t.Fatalf("upgrade: %v, want a refused restore naming force_parallel_mode", err)
		}
		if v, _ := e.m.DataVersion(s.ID); v != from {
			t.Errorf("data version %s after a failed upgrade, want %s", v, from)
		}
		out, err := e.psql(s, "app-pw", "sslmode=require user=app", "SELECT current_setting('server_version_num')::int / 10000 || ' ' || count(*) FROM t")
		if err != nil || out != from+" 5000" {
			t.Fatalf("after a failed upgrade: %q, %v; want %q", out, err, from+" 5000")
		}
		if _, err := e.m.Exec(ctx, s.ID, "ALTER DATABASE appdb RESET force_parallel_mode"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("Upgrade", func(t *testing.T) {
		up := s.Spec
		up.Version = to
		var steps []UpgradeStep
		st, err := e.m.Upgrade(ctx, up, func(p UpgradeStep) { steps = append(steps, p) })
		if err != nil {
			t.Fatal(err)
		}
		if st.State != StateReady || st.Version != to {
			t.Fatalf("status %+v, want Ready on %s", st, to)
		}
		if len(steps) == 0 || steps[len(steps)-1] != (UpgradeStep{Step: "Done", Percent: 100}) {
			t.Errorf("progress %v, want it to end Done at 100", steps)
		}
		for i := 1; i < len(steps); i++ {
			if steps[i].Percent < steps[i-1].Percent {
				t.Errorf("progress goes back: %v", steps)
			}
		}
		out, err := e.psql(s, "app-pw", e.verifyFull(s.Name+".postgres.database.azure.com")+" user=app",
			"SELECT current_setting('server_version_num')::int / 10000 || ' ' || count(*) || ' ' || sum(length(v)) FROM t")
		if want := to + " 5000 160000"; err != nil || out != want {
			t.Fatalf("after the upgrade: %q, %v; want %q", out, err, want)
		}
		if _, err := e.psql(s, s.password, "sslmode=require", "INSERT INTO t VALUES (0, 'written after')"); err != nil {
			t.Errorf("admin writes after the upgrade: %v", err)
		}
		s.Version = to
		if st := e.ensure(e.m, s); st.Version != to {
			t.Errorf("ensure after the upgrade: %+v", st)
		}
	})
}
