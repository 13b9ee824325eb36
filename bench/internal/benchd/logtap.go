package benchd

import (
	"bytes"
	"io"
	"strings"
	"sync"
)

// LogTap reads log lines of log/slog's text handler (privlinkd's format),
// counts them by message, and forwards warnings and errors to another
// writer. It is safe for concurrent use.
type LogTap struct {
	forward io.Writer

	mu      sync.Mutex
	partial []byte
	counts  map[string]int
}

// NewLogTap returns a tap forwarding WARN and ERROR lines to forward (nil:
// to nothing).
func NewLogTap(forward io.Writer) *LogTap {
	return &LogTap{forward: forward, counts: map[string]int{}}
}

// Write implements io.Writer.
func (t *LogTap) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.partial = append(t.partial, p...)
	for {
		i := bytes.IndexByte(t.partial, '\n')
		if i < 0 {
			break
		}
		t.line(string(t.partial[:i]))
		t.partial = t.partial[i+1:]
	}
	return len(p), nil
}

func (t *LogTap) line(l string) {
	t.counts[field(l, "msg")]++
	if t.forward != nil && (strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR")) {
		_, _ = io.WriteString(t.forward, l+"\n")
	}
}

// field returns the value of key=value (value possibly quoted) in a text
// handler line, without quotes; "" if absent.
func field(l, key string) string {
	i := strings.Index(l, " "+key+"=")
	if i < 0 {
		return ""
	}
	v := l[i+len(key)+2:]
	if strings.HasPrefix(v, `"`) {
		v = v[1:]
		if j := strings.Index(v, `"`); j >= 0 {
			return v[:j]
		}
		return v
	}
	if j := strings.IndexByte(v, ' '); j >= 0 {
		return v[:j]
	}
	return v
}

// TapCounts is what a LogTap has seen so far.
type TapCounts struct {
	// Messages counts lines by their msg.
	Messages map[string]int
}

// Counts returns a copy of what the tap has seen so far.
func (t *LogTap) Counts() TapCounts {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := TapCounts{Messages: make(map[string]int, len(t.counts))}
	for k, v := range t.counts {
		c.Messages[k] = v
	}
	return c
}

// Since returns what was seen between before and c.
func (c TapCounts) Since(before TapCounts) TapCounts {
	d := TapCounts{Messages: map[string]int{}}
	for k, v := range c.Messages {
		if n := v - before.Messages[k]; n != 0 {
			d.Messages[k] = n
		}
	}
	return d
}
