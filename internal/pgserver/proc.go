package pgserver

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// proc is a postmaster this Manager watches: one it started (done is
// closed once Wait has reaped it) or one it adopted from a previous
// privlinkd (done is nil). It is identified by pid and start time, so a
// reused pid is never mistaken for it.
type proc struct {
	pid     int
	start   uint64    // start time in clock ticks after boot (/proc/<pid>/stat field 22)
	started time.Time // when this Manager started or adopted it

	done    chan struct{} // own child: closed after Wait returns; nil when adopted
	waitErr error         // own child: Wait's result, set before done closes
}

// alive reports whether the process still runs (a zombie does not).
func (p *proc) alive() bool {
	if p.done != nil {
		select {
		case <-p.done:
			return false
		default:
		}
	}
	st, err := readStat(p.pid)
	return err == nil && st.start == p.start && st.state != 'Z' && st.state != 'X'
}

// exitStatus describes how an own child ended, for logs.
func (p *proc) exitStatus() string {
	if p.done == nil {
		return "unknown (adopted)"
	}
	select {
	case <-p.done:
	default:
		return "still running"
	}
	if p.waitErr == nil {
		return "exit status 0"
	}
	return p.waitErr.Error()
}

// signal sends sig to the process if it is still the same process.
func (p *proc) signal(sig syscall.Signal) error {
	if !p.alive() {
		return nil
	}
	if err := syscall.Kill(p.pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal %v to pid %d: %w", sig, p.pid, err)
	}
	return nil
}

// ownChild wraps a started command; a goroutine reaps it (so it never
// stays a zombie) and then pokes wake. The goroutine lives as long as the
// process, also after the Manager is closed.
func ownChild(cmd *exec.Cmd, wake func()) (*proc, error) {
	// Read before Wait can reap it: until then its /proc entry stays.
	st, statErr := readStat(cmd.Process.Pid)
	p := &proc{pid: cmd.Process.Pid, start: st.start, started: time.Now(), done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
		wake()
	}()
	if statErr != nil {
		cmd.Process.Kill()
		return nil, fmt.Errorf("read started process %d: %w", p.pid, statErr)
	}
	return p, nil
}

// procStat is what privlink reads from /proc/<pid>/stat.
type procStat struct {
	state byte
	ppid  int
	start uint64
}

// readStat parses /proc/<pid>/stat.
func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, err
	}
	// The command name (field 2) is in parentheses and may hold anything,
	// so fields are counted from the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state), f[1] field 4 (ppid), f[19] field 22 (starttime).
	if len(f) < 20 || len(f[0]) != 1 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	ppid, err1 := strconv.Atoi(f[1])
	start, err2 := strconv.ParseUint(f[19], 10, 64)
	if err1 != nil || err2 != nil {
		return procStat{}, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	return procStat{state: f[0][0], ppid: ppid, start: start}, nil
}

// procCwd returns the working directory of pid ("" when unknown).
func procCwd(pid int) string {
	s, _ := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
	return s
}

// procExe returns the executable of pid, without the " (deleted)" suffix
// that an upgraded package's binary gets ("" when unknown).
func procExe(pid int) string {
	s, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	return strings.TrimSuffix(s, " (deleted)")
}

// isPostgres reports whether pid runs an installed PostgreSQL binary with
// the postgres user's effective uid.
func (m *Manager) isPostgres(pid int) bool {
	exe := procExe(pid)
	if !slices.ContainsFunc(m.versions, func(v string) bool { return exe == filepath.Join(m.bins[v], "postgres") }) {
		return false
	}
	uids, err := procUIDs(pid)
	return err == nil && len(uids) > 1 && uids[1] == m.uid
}

// procUIDs returns the real, effective, saved and filesystem uids of pid.
func procUIDs(pid int) ([]int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	for line := range strings.Lines(string(b)) {
		rest, ok := strings.CutPrefix(line, "Uid:")
		if !ok {
			continue
		}
		var uids []int
		for _, f := range strings.Fields(rest) {
			u, err := strconv.Atoi(f)
			if err != nil {
				return nil, fmt.Errorf("/proc/%d/status: bad Uid line", pid)
			}
			uids = append(uids, u)
		}
		return uids, nil
	}
	return nil, fmt.Errorf("/proc/%d/status: no Uid line", pid)
}

// clusterPIDs returns the processes whose working directory is dataDir:
// a PostgreSQL cluster's postmaster and every process it forked (they all
// run in the data directory), also after the postmaster died.
func clusterPIDs(dataDir string) ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		if procCwd(pid) == dataDir {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// killCluster sends SIGKILL to every process of the cluster at dataDir
// (see Manager.isPostgres: a root shell sitting in the directory is not
// one) and waits until none is left or the bound passes.
func (m *Manager) killCluster(dataDir string, bound time.Duration) error {
	deadline := time.Now().Add(bound)
	for {
		all, err := clusterPIDs(dataDir)
		if err != nil {
			return err
		}
		pids := slices.DeleteFunc(all, func(pid int) bool { return !m.isPostgres(pid) })
		var live []int
		for _, pid := range pids {
			if st, err := readStat(pid); err != nil || st.state == 'Z' || st.state == 'X' {
				continue // gone, or dead and waiting to be reaped
			}
			live = append(live, pid)
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
				return fmt.Errorf("kill pid %d: %w", pid, err)
			}
		}
		if len(live) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes %v of %s survive SIGKILL", live, dataDir)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
