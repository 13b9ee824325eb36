package procmem

import (
	"os"
	"os/exec"
	"slices"
	"testing"
)

func TestOfSelf(t *testing.T) {
	m, err := Of(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if m.RSS <= 0 || m.PSS <= 0 || m.PSS > m.RSS || m.USS > m.RSS || m.HWM < m.RSS || m.Procs != 1 {
		t.Errorf("implausible memory of this process: %+v", m)
	}
}

func TestTree(t *testing.T) {
	cmd := exec.Command("sleep", "10")
	if err := cmd.Start(); err != nil {
		t.Skip("no sleep:", err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	pids, err := Tree(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if pids[0] != os.Getpid() || !slices.Contains(pids, cmd.Process.Pid) {
		t.Errorf("Tree(self) = %v, want self first and child %d", pids, cmd.Process.Pid)
	}
	sum, err := OfTree(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if sum.Procs < 2 || sum.HWM != 0 {
		t.Errorf("OfTree(self) = %+v, want at least 2 processes and no HWM", sum)
	}
}

func TestReadStatSelf(t *testing.T) {
	st, err := ReadStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if st.PPID != os.Getppid() || st.Comm == "" || st.State == "" {
		t.Errorf("ReadStat(self) = %+v, want parent %d", st, os.Getppid())
	}
	for i := 0; CPU(os.Getpid()) == 0 && i < 1e9; i++ { // burn a clock tick
	}
	if CPU(os.Getpid()) <= 0 {
		t.Errorf("CPU(self) = 0 after a busy loop")
	}
}
