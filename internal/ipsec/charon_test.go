package ipsec

import (
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// A pid file whose pid now belongs to another process (here: this test)
// names no charon: PID reports none, and Stop signals nothing and removes
// the file.
func TestStalePIDFile(t *testing.T) {
	d := New(t.TempDir(), "none", slog.New(slog.DiscardHandler))
	if err := os.MkdirAll(d.runDir(), 0o700); err != nil {
		t.Fatal(err)
	}
	if got := d.PID(); got != 0 {
		t.Fatalf("PID without a pid file = %d, want 0", got)
	}
	if err := os.WriteFile(d.pidFile(), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := d.PID(); got != 0 {
		t.Fatalf("PID of a pid file naming this test (not %s) = %d, want 0", Binary, got)
	}
	if err := d.Stop(); err != nil { // would SIGTERM the test if it trusted the file
		t.Fatal(err)
	}
	// Stop removes the stale file: the next charon would otherwise see its
	// pid alive and refuse to start ("charon already running").
	if _, err := os.Stat(d.pidFile()); !os.IsNotExist(err) {
		t.Fatalf("stale pid file after Stop: %v, want it removed", err)
	}
	if err := os.WriteFile(d.pidFile(), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The other way round: a process running Binary is charon. Point
	// Binary at this test's executable to see the check accept it.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	old := Binary
	Binary, _ = filepath.EvalSymlinks(self)
	t.Cleanup(func() { Binary = old })
	if got := d.PID(); got != os.Getpid() {
		t.Fatalf("PID of a pid file naming a process of Binary = %d, want %d", got, os.Getpid())
	}
}
