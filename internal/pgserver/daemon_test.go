package pgserver

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/privlink/privlink/internal/fabric"
	"github.com/privlink/privlink/internal/pki"
)

// helperEnv, when set, makes TestHelperDaemon act as a privlinkd: it
// ensures the server described in the variable (JSON), prints "READY
// <pid>" and waits to be killed.
const helperEnv = "PGSERVER_TEST_DAEMON"

type helperArgs struct {
	DataDir string
	Prefix  string
	Spec    Spec
}

func TestHelperDaemon(t *testing.T) {
	raw := os.Getenv(helperEnv)
	if raw == "" {
		t.Skip("helper process of TestSurvivesDaemonKill")
	}
	var a helperArgs
	if err := json.Unmarshal([]byte(raw), &a); err != nil {
		t.Fatal(err)
	}
	fab, err := fabric.New(a.Prefix, nil)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := pki.LoadOrCreateCA(a.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewManager(Config{DataDir: a.DataDir, CA: ca, Fabric: fab})
	if err != nil {
		t.Fatal(err)
	}
	st, err := m.Ensure(context.Background(), a.Spec)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("READY %d\n", st.PID)
	select {} // until killed
}

// TestSurvivesDaemonKill starts a server from another process (a stand-in
// for privlinkd), kills that process with SIGKILL, and checks that the
// postmaster and an established session survive and that this process's
// Manager adopts the postmaster.
func TestSurvivesDaemonKill(t *testing.T) {
	e := newEnv(t)
	s := e.newServer()
	args, err := json.Marshal(helperArgs{DataDir: e.dataDir, Prefix: e.fab.Prefix(), Spec: s.Spec})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestHelperDaemon$")
	cmd.Env = append(os.Environ(), helperEnv+"="+string(args))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	var pid int
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "READY "); ok {
			pid, _ = strconv.Atoi(rest)
			break
		}
	}
	if pid == 0 {
		t.Fatalf("helper daemon did not start the server: %v", sc.Err())
	}

	session, err := e.dial(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	defer session.Close(ctx)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()

	if _, err := session.Exec(ctx, "SELECT 1"); err != nil {
		t.Errorf("session after the daemon's death: %v", err)
	}
	if st, err := readStat(pid); err != nil || st.state == 'Z' {
		t.Fatalf("postmaster %d after the daemon's death: %v", pid, err)
	}
	st := e.ensure(e.m, s)
	if st.PID != pid {
		t.Errorf("adopted pid %d, want %d", st.PID, pid)
	}
	if pm := postmasters(t, filepath.Join(e.m.pgDir, s.ID, dataSubdir)); len(pm) != 1 {
		t.Errorf("postmasters %v, want one", pm)
	}
	if _, err := session.Exec(ctx, "SELECT 1"); err != nil {
		t.Errorf("session after adoption: %v", err)
	}
}
