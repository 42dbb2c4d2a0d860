package monitor

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/vigil-mesh/vigil/agent"
)

// The /proc sampler. Parsing (parseStat, parseStatm, parseNetDev, cpuPercent) is pure and tested
// on fixed inputs in testdata; ReadSample and Sampler are the thin shell that reads the files and
// the clock.

// ProcStat is what the sampler uses from /proc/PID/stat.
type ProcStat struct {
	PID       int
	Comm      string
	State     byte // R, S, D, Z, …
	PPID      int
	Ticks     uint64 // utime + stime, in clock ticks
	Threads   int
	StartTime uint64 // clock ticks after boot; with PID it identifies the process across PID reuse
}

// parseStat parses the contents of /proc/PID/stat. The command name is in parentheses and may
// itself contain spaces and parentheses, so fields are counted from the last ')'.
func parseStat(b []byte) (ProcStat, error) {
	var st ProcStat
	open := bytes.IndexByte(b, '(')
	end := bytes.LastIndexByte(b, ')')
	if open < 1 || end < open {
		return st, errors.New("stat: no (comm) field")
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b[:open])))
	if err != nil {
		return st, fmt.Errorf("stat: field 1 (pid): %w", err)
	}
	st.PID = pid
	st.Comm = string(b[open+1 : end])
	f := strings.Fields(string(b[end+1:]))
	// f[0] is field 3 (state); field N is f[N-3]. We need up to field 22 (starttime).
	if len(f) < 20 {
		return st, fmt.Errorf("stat: %d fields after comm, want at least 20", len(f))
	}
	if len(f[0]) != 1 || !('A' <= f[0][0] && f[0][0] <= 'Z' || 'a' <= f[0][0] && f[0][0] <= 'z') {
		return st, fmt.Errorf("stat: field 3 (state) %q is not one letter", f[0])
	}
	st.State = f[0][0]
	num := func(field int) (uint64, error) {
		v, err := strconv.ParseUint(f[field-3], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("stat: field %d: %w", field, err)
		}
		return v, nil
	}
	ppid, err := num(4)
	if err != nil {
		return st, err
	}
	utime, err := num(14)
	if err != nil {
		return st, err
	}
	stime, err := num(15)
	if err != nil {
		return st, err
	}
	threads, err := num(20)
	if err != nil {
		return st, err
	}
	start, err := num(22)
	if err != nil {
		return st, err
	}
	st.PPID, st.Ticks, st.Threads, st.StartTime = int(ppid), utime+stime, int(threads), start
	return st, nil
}

// parseStatm returns the resident set size in pages (field 2 of /proc/PID/statm).
func parseStatm(b []byte) (uint64, error) {
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0, fmt.Errorf("statm: %d fields, want at least 2", len(f))
	}
	v, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("statm: field 2 (resident): %w", err)
	}
	return v, nil
}

// parseNetDev sums received and transmitted bytes over every interface in /proc/PID/net/dev
// except the loopback "lo". The figures are the totals of the process's network namespace, not
// of the process alone: Linux does not account network bytes per process.
func parseNetDev(b []byte) (rx, tx uint64, err error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	line := 0
	for sc.Scan() {
		line++
		if line <= 2 { // two header lines
			continue
		}
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			return 0, 0, fmt.Errorf("net/dev line %d: no ':' after the interface name", line)
		}
		f := strings.Fields(rest)
		if len(f) < 16 {
			return 0, 0, fmt.Errorf("net/dev line %d: %d fields, want 16", line, len(f))
		}
		if strings.TrimSpace(name) == "lo" {
			continue
		}
		r, err1 := strconv.ParseUint(f[0], 10, 64)
		t, err2 := strconv.ParseUint(f[8], 10, 64)
		if err := errors.Join(err1, err2); err != nil {
			return 0, 0, fmt.Errorf("net/dev line %d: %w", line, err)
		}
		rx += r
		tx += t
	}
	return rx, tx, sc.Err()
}

// cpuPercent converts a tick delta over a wall-clock interval into percent of one core
// (100 = one core fully busy; 200 = two cores).
func cpuPercent(deltaTicks uint64, wall time.Duration, clkTck int) float64 {
	if wall <= 0 || clkTck <= 0 {
		return 0
	}
	return float64(deltaTicks) / float64(clkTck) / wall.Seconds() * 100
}

// parseAuxvClkTck finds AT_CLKTCK (17) in the contents of /proc/self/auxv, native word size and
// byte order.
func parseAuxvClkTck(b []byte) (int, bool) {
	const atClkTck = 17
	w := int(unsafe.Sizeof(uintptr(0)))
	word := func(p []byte) uint64 {
		if w == 8 {
			return binary.NativeEndian.Uint64(p)
		}
		return uint64(binary.NativeEndian.Uint32(p))
	}
	for i := 0; i+2*w <= len(b); i += 2 * w {
		k, v := word(b[i:]), word(b[i+w:])
		if k == 0 {
			break
		}
		if k == atClkTck && v > 0 && v < 1_000_000 {
			return int(v), true
		}
	}
	return 0, false
}

// ClockTicks returns the kernel's USER_HZ (sysconf(_SC_CLK_TCK)), read from the AT_CLKTCK entry
// the kernel puts in this process's auxiliary vector, which is where the C library's sysconf
// reads it too. If /proc/self/auxv cannot be read it returns 100, the value on every Linux
// architecture Go supports.
func ClockTicks() int {
	if b, err := os.ReadFile("/proc/self/auxv"); err == nil {
		if v, ok := parseAuxvClkTck(b); ok {
			return v
		}
	}
	return 100
}

// Sample is one reading of a process (and, if asked, its descendants).
type Sample struct {
	PID       int
	StartTime uint64
	Ticks     map[procKey]uint64 // utime+stime per process in the tree
	RSSBytes  uint64
	OpenFiles int
	Threads   int
	NetRx     uint64
	NetTx     uint64
	Procs     int // processes counted (1 without children)
}

type procKey struct {
	pid   int
	start uint64
}

// ExitedError says the watched process is gone (or a zombie awaiting its parent).
type ExitedError struct{ PID int }

func (e *ExitedError) Error() string { return fmt.Sprintf("monitor: process %d has exited", e.PID) }

// ReadSample reads /proc under root (normally "/proc") for pid. With children, it adds every
// descendant process (found by scanning root for parent links). startTime, when non-zero, is the
// start time seen at the first sample: a different one means the PID was reused, which is
// reported as *ExitedError like a missing or zombie process.
func ReadSample(root string, pid int, startTime uint64, children bool) (Sample, error) {
	s := Sample{PID: pid, Ticks: map[procKey]uint64{}}
	dir := filepath.Join(root, strconv.Itoa(pid))
	b, err := os.ReadFile(filepath.Join(dir, "stat"))
	if errors.Is(err, fs.ErrNotExist) {
		return s, &ExitedError{pid}
	}
	if err != nil {
		return s, fmt.Errorf("monitor: %w", err)
	}
	st, err := parseStat(b)
	if err != nil {
		return s, fmt.Errorf("monitor: %s: %w", filepath.Join(dir, "stat"), err)
	}
	if st.State == 'Z' || st.State == 'X' || (startTime != 0 && st.StartTime != startTime) {
		return s, &ExitedError{pid}
	}
	s.StartTime = st.StartTime
	procs := []ProcStat{st}
	if children {
		procs = append(procs, descendants(root, pid)...)
	}
	for _, p := range procs {
		pdir := filepath.Join(root, strconv.Itoa(p.PID))
		if p.PID != pid { // a child that vanished mid-read is skipped, not an error
			if m, err := os.ReadFile(filepath.Join(pdir, "statm")); err == nil {
				if pages, err := parseStatm(m); err == nil {
					s.RSSBytes += pages * uint64(os.Getpagesize())
				}
			}
			if n, err := countDir(filepath.Join(pdir, "fd")); err == nil {
				s.OpenFiles += n
			}
		} else {
			m, err := os.ReadFile(filepath.Join(pdir, "statm"))
			if err != nil {
				return s, exitedOr(pid, err)
			}
			pages, err := parseStatm(m)
			if err != nil {
				return s, fmt.Errorf("monitor: %s: %w", filepath.Join(pdir, "statm"), err)
			}
			s.RSSBytes += pages * uint64(os.Getpagesize())
			n, err := countDir(filepath.Join(pdir, "fd"))
			if err != nil {
				return s, exitedOr(pid, err)
			}
			s.OpenFiles += n
		}
		s.Ticks[procKey{p.PID, p.StartTime}] = p.Ticks
		s.Threads += p.Threads
		s.Procs++
	}
	nd, err := os.ReadFile(filepath.Join(dir, "net", "dev"))
	if err != nil {
		return s, exitedOr(pid, err)
	}
	if s.NetRx, s.NetTx, err = parseNetDev(nd); err != nil {
		return s, fmt.Errorf("monitor: %s: %w", filepath.Join(dir, "net", "dev"), err)
	}
	return s, nil
}

func exitedOr(pid int, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return &ExitedError{pid}
	}
	return fmt.Errorf("monitor: %w", err)
}

func countDir(dir string) (int, error) {
	f, err := os.Open(dir)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	return len(names), err
}

// descendants scans root for every live process whose parent chain leads to pid.
func descendants(root string, pid int) []ProcStat {
	ents, err := os.ReadDir(root)
	if err != nil {
		return nil
	}
	byParent := map[int][]ProcStat{}
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil || n == pid {
			continue
		}
		b, err := os.ReadFile(filepath.Join(root, e.Name(), "stat"))
		if err != nil {
			continue
		}
		st, err := parseStat(b)
		if err != nil || st.State == 'Z' || st.State == 'X' {
			continue
		}
		byParent[st.PPID] = append(byParent[st.PPID], st)
	}
	var out []ProcStat
	queue := []int{pid}
	seen := map[int]bool{pid: true}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range byParent[p] {
			if !seen[c.PID] {
				seen[c.PID] = true
				out = append(out, c)
				queue = append(queue, c.PID)
			}
		}
	}
	return out
}

// cpuTicksDelta sums, over the processes in cur, the ticks used since prev. A process absent from
// prev (born during the interval) counts in full; a process that exited during the interval
// loses its last partial interval.
func cpuTicksDelta(prev, cur map[procKey]uint64) uint64 {
	var d uint64
	for k, v := range cur {
		if p, ok := prev[k]; ok {
			if v >= p {
				d += v - p
			}
		} else {
			d += v
		}
	}
	return d
}

// Events turns a sample into metric events. prev may be nil (first sample): cpu_usage and
// net_bytes need two samples and are then left out.
func Events(prev *Sample, prevAt time.Time, cur Sample, at time.Time, clkTck int) []agent.Event {
	attrs := map[string]string{"pid": strconv.Itoa(cur.PID)}
	if cur.Procs > 1 {
		attrs["processes"] = strconv.Itoa(cur.Procs)
	}
	ev := func(name string, v float64) agent.Event {
		return agent.Event{Kind: "metric", Name: name, Value: v, Attrs: attrs, At: at}
	}
	var out []agent.Event
	if prev != nil {
		out = append(out, ev("cpu_usage", cpuPercent(cpuTicksDelta(prev.Ticks, cur.Ticks), at.Sub(prevAt), clkTck)))
		if rate, ok := netRate(prev, cur, at.Sub(prevAt)); ok {
			out = append(out, ev("net_bytes", rate))
		}
	}
	return append(out,
		ev("memory_bytes", float64(cur.RSSBytes)),
		ev("open_files", float64(cur.OpenFiles)),
		ev("threads", float64(cur.Threads)),
		ev("net_rx_bytes", float64(cur.NetRx)),
		ev("net_tx_bytes", float64(cur.NetTx)),
	)
}

// netRate is the bytes per second received and sent between two samples (the policy's
// net_bytes). A counter that went backwards (the namespace's interfaces changed) gives none.
func netRate(prev *Sample, cur Sample, wall time.Duration) (float64, bool) {
	if wall <= 0 || cur.NetRx < prev.NetRx || cur.NetTx < prev.NetTx {
		return 0, false
	}
	return float64((cur.NetRx-prev.NetRx)+(cur.NetTx-prev.NetTx)) / wall.Seconds(), true
}

// Reporter is where the sampler sends its events; Backend satisfies it.
type Reporter interface {
	Report(ctx context.Context, events ...agent.Event) error
}

// SamplerConfig configures a Sampler.
type SamplerConfig struct {
	PID      int           // the process to watch; required
	Interval time.Duration // between samples; default 10s, at least 100ms
	Children bool          // add the process's descendants to every figure
	ProcRoot string        // default "/proc"
	ClkTck   int           // clock ticks per second; default ClockTicks()
	// OnReportError is called when Report fails (for example while the agent is cut off);
	// sampling goes on. Optional.
	OnReportError func(error)
}

// Validate checks the configuration.
func (c SamplerConfig) Validate() error {
	if c.PID <= 0 {
		return fmt.Errorf("monitor: sampler PID %d: must be positive", c.PID)
	}
	if c.Interval < 100*time.Millisecond {
		return fmt.Errorf("monitor: sampler interval %s: must be at least 100ms", c.Interval)
	}
	return nil
}

// RunSampler samples until ctx ends (returning ctx.Err()) or the process exits (returning
// *ExitedError). The first sample is taken at once; cpu_usage first appears one interval later.
func RunSampler(ctx context.Context, r Reporter, cfg SamplerConfig) error {
	if cfg.Interval == 0 {
		cfg.Interval = 10 * time.Second
	}
	if cfg.ProcRoot == "" {
		cfg.ProcRoot = "/proc"
	}
	if cfg.ClkTck == 0 {
		cfg.ClkTck = ClockTicks()
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	t := time.NewTicker(cfg.Interval)
	defer t.Stop()
	var prev *Sample
	var prevAt time.Time
	var start uint64
	for {
		cur, err := ReadSample(cfg.ProcRoot, cfg.PID, start, cfg.Children)
		at := time.Now()
		if err != nil {
			return err
		}
		start = cur.StartTime
		if err := r.Report(ctx, Events(prev, prevAt, cur, at, cfg.ClkTck)...); err != nil && cfg.OnReportError != nil {
			cfg.OnReportError(err)
		}
		prev, prevAt = &cur, at
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
