package procmem

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTick is USER_HZ, the unit of /proc/PID/stat's times, on Linux.
const clockTick = time.Second / 100

// Stat is what the benchmarks read of /proc/PID/stat.
type Stat struct {
	Comm, State string
	PPID        int
	// CPU is the process's user+system time, Children that of its
	// children it has waited for.
	CPU, Children time.Duration
}

// ReadStat reads /proc/PID/stat.
func ReadStat(pid int) (Stat, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return Stat{}, fmt.Errorf("procmem: %w", err)
	}
	s := string(data)
	lp, rp := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if lp < 0 || rp < lp {
		return Stat{}, fmt.Errorf("procmem: /proc/%d/stat: no command", pid)
	}
	f := strings.Fields(s[rp+1:]) // f[0] is field 3 (state)
	if len(f) < 15 {
		return Stat{}, fmt.Errorf("procmem: /proc/%d/stat: %d fields", pid, len(f)+2)
	}
	num := func(i int) int64 { v, _ := strconv.ParseInt(f[i-3], 10, 64); return v }
	return Stat{Comm: s[lp+1 : rp], State: f[0], PPID: int(num(4)),
		CPU: time.Duration(num(14)+num(15)) * clockTick, Children: time.Duration(num(16)+num(17)) * clockTick}, nil
}

// CPU returns the user+system CPU time of pid so far (0 when it cannot be
// read).
func CPU(pid int) time.Duration {
	st, err := ReadStat(pid)
	if err != nil {
		return 0
	}
	return st.CPU
}
