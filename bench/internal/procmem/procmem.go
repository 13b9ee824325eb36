// Package procmem reads what processes cost from /proc for the benchmark
// programs: their CPU time (ReadStat, CPU) and their memory, as resident
// (RSS), proportional (PSS: each shared page divided among the processes
// that map it) and unique (USS: pages no other process maps) set sizes,
// for one process or a process tree.
package procmem

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Mem is memory in bytes.
type Mem struct {
	RSS, PSS, USS int64
	// HWM is the peak resident set size (VmHWM), for Of only.
	HWM int64
	// Procs is how many processes were summed.
	Procs int
}

// Add returns the sum of m and o.
func (m Mem) Add(o Mem) Mem {
	return Mem{RSS: m.RSS + o.RSS, PSS: m.PSS + o.PSS, USS: m.USS + o.USS, HWM: m.HWM + o.HWM, Procs: m.Procs + o.Procs}
}

// MiB renders bytes as MiB with one decimal.
func MiB(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// Of returns the memory of one process, from /proc/PID/smaps_rollup and
// /proc/PID/status.
func Of(pid int) (Mem, error) {
	m := Mem{Procs: 1}
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return m, fmt.Errorf("procmem: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		kb, err := strconv.ParseInt(fields[1], 10, 64)
		if err != nil {
			continue
		}
		switch fields[0] {
		case "Rss:":
			m.RSS = kb << 10
		case "Pss:":
			m.PSS = kb << 10
		case "Private_Clean:", "Private_Dirty:":
			m.USS += kb << 10
		}
	}
	if err := sc.Err(); err != nil {
		return m, fmt.Errorf("procmem: %w", err)
	}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
				if f := strings.Fields(v); len(f) > 0 {
					kb, _ := strconv.ParseInt(f[0], 10, 64)
					m.HWM = kb << 10
				}
			}
		}
	}
	return m, nil
}

// PIDs returns the IDs of every process, from /proc.
func PIDs() ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("procmem: %w", err)
	}
	var out []int
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			out = append(out, pid)
		}
	}
	return out, nil
}

// Tree returns pid and all its descendants.
func Tree(pid int) ([]int, error) {
	pids, err := PIDs()
	if err != nil {
		return nil, err
	}
	children := map[int][]int{}
	for _, p := range pids {
		if st, err := ReadStat(p); err == nil { // else it exited meanwhile
			children[st.PPID] = append(children[st.PPID], p)
		}
	}
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i]]...)
	}
	return out, nil
}

// OfTree returns the summed memory of pid and its descendants (HWM is
// left 0: peaks of different processes do not add up).
func OfTree(pid int) (Mem, error) {
	pids, err := Tree(pid)
	if err != nil {
		return Mem{}, err
	}
	var sum Mem
	for _, p := range pids {
		m, err := Of(p)
		if err != nil {
			if p == pid {
				return Mem{}, err
			}
			continue // a backend that exited meanwhile
		}
		m.HWM = 0
		sum = sum.Add(m)
	}
	return sum, nil
}
