package monitor

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/vigil-mesh/vigil/agent"
)

// TestMain doubles as the busy child process of the CPU tests.
func TestMain(m *testing.M) {
	if os.Getenv("MONITOR_TEST_BUSY") == "1" {
		x := 0
		for {
			x++
		}
	}
	os.Exit(m.Run())
}

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "proc", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseStat(t *testing.T) {
	st, err := parseStat(readTestdata(t, "stat"))
	if err != nil {
		t.Fatal(err)
	}
	want := ProcStat{PID: 4242, Comm: "my (weird) agent", State: 'S', PPID: 1, Ticks: 300, Threads: 7, StartTime: 123456}
	if st != want {
		t.Fatalf("parseStat = %+v, want %+v", st, want)
	}
	for _, tc := range []struct{ file, want string }{
		{"stat_truncated", "fields after comm"},
		{"stat_nocomm", "no (comm) field"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			_, err := parseStat(readTestdata(t, tc.file))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
	if _, err := parseStat([]byte("1 (x) S 1 1 1 0 -1 0 0 0 0 0 NaN 0 0 0 20 0 1 0 1 1 1")); err == nil || !strings.Contains(err.Error(), "field 14") {
		t.Fatalf("bad utime: err = %v, want field 14 named", err)
	}
}

func TestParseStatm(t *testing.T) {
	pages, err := parseStatm(readTestdata(t, "statm"))
	if err != nil || pages != 2560 {
		t.Fatalf("parseStatm = %d, %v; want 2560", pages, err)
	}
	if _, err := parseStatm([]byte("12\n")); err == nil {
		t.Fatal("one field accepted")
	}
}

func TestParseNetDev(t *testing.T) {
	rx, tx, err := parseNetDev(readTestdata(t, "net_dev"))
	if err != nil {
		t.Fatal(err)
	}
	if rx != 1500 || tx != 2700 { // eth0 + wlan0, lo excluded
		t.Fatalf("rx, tx = %d, %d; want 1500, 2700", rx, tx)
	}
	if _, _, err := parseNetDev([]byte("h\nh\neth0 1 2 3\n")); err == nil || !strings.Contains(err.Error(), "line 3") {
		t.Fatalf("err = %v, want line 3 named", err)
	}
}

func TestParseAuxvClkTck(t *testing.T) {
	w := int(unsafe.Sizeof(uintptr(0)))
	put := func(b []byte, vals ...uint64) []byte {
		for _, v := range vals {
			p := make([]byte, w)
			if w == 8 {
				binary.NativeEndian.PutUint64(p, v)
			} else {
				binary.NativeEndian.PutUint32(p, uint32(v))
			}
			b = append(b, p...)
		}
		return b
	}
	b := put(nil, 6, 4096, 17, 250, 0, 0)
	if v, ok := parseAuxvClkTck(b); !ok || v != 250 {
		t.Fatalf("parseAuxvClkTck = %d, %v; want 250", v, ok)
	}
	if _, ok := parseAuxvClkTck(put(nil, 6, 4096, 0, 0, 17, 250)); ok {
		t.Fatal("read past AT_NULL")
	}
	if v := ClockTicks(); v != 100 {
		t.Logf("this kernel's USER_HZ is %d", v) // not an error: the figures use whatever it is
	}
}

func TestCPUPercent(t *testing.T) {
	for _, tc := range []struct {
		ticks uint64
		wall  time.Duration
		hz    int
		want  float64
	}{
		{100, time.Second, 100, 100},     // one core for one second
		{50, time.Second, 100, 50},       // half a core
		{400, 2 * time.Second, 100, 200}, // two cores
		{250, time.Second, 250, 100},     // a kernel with USER_HZ 250
		{0, time.Second, 100, 0},
		{10, 0, 100, 0},
	} {
		if got := cpuPercent(tc.ticks, tc.wall, tc.hz); got != tc.want {
			t.Errorf("cpuPercent(%d, %s, %d) = %v, want %v", tc.ticks, tc.wall, tc.hz, got, tc.want)
		}
	}
}

func TestCPUTicksDelta(t *testing.T) {
	prev := map[procKey]uint64{{1, 10}: 100, {2, 20}: 50, {3, 30}: 70}
	cur := map[procKey]uint64{{1, 10}: 130, {2, 20}: 55, {4, 40}: 8, {3, 31}: 2} // 3 reused with a new start time
	if got := cpuTicksDelta(prev, cur); got != 30+5+8+2 {
		t.Fatalf("delta = %d, want 45", got)
	}
}

// fakeProc writes a /proc tree: pid 10 (the agent), its child 11, grandchild 12, an unrelated 13
// and a zombie child 14.
func fakeProc(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	proc := func(pid, ppid int, state string, ticks, threads, rss, fds int) {
		dir := filepath.Join(root, strconv.Itoa(pid))
		os.MkdirAll(filepath.Join(dir, "fd"), 0o755)
		os.MkdirAll(filepath.Join(dir, "net"), 0o755)
		stat := fmt.Sprintf("%d (p%d) %s %d 1 1 0 -1 0 0 0 0 0 %d 0 0 0 20 0 %d 0 %d 1 1 0 0\n", pid, pid, state, ppid, ticks, threads, 1000+pid)
		os.WriteFile(filepath.Join(dir, "stat"), []byte(stat), 0o644)
		os.WriteFile(filepath.Join(dir, "statm"), []byte(fmt.Sprintf("100 %d 0 0 0 0 0\n", rss)), 0o644)
		for i := range fds {
			os.WriteFile(filepath.Join(dir, "fd", strconv.Itoa(i)), nil, 0o644)
		}
		os.WriteFile(filepath.Join(dir, "net", "dev"), readTestdata(t, "net_dev"), 0o644)
	}
	proc(10, 1, "S", 100, 3, 10, 4)
	proc(11, 10, "R", 40, 2, 5, 3)
	proc(12, 11, "S", 7, 1, 1, 1)
	proc(13, 1, "S", 999, 9, 99, 9)
	proc(14, 10, "Z", 5, 1, 0, 0)
	os.MkdirAll(filepath.Join(root, "self"), 0o755)
	return root
}

func TestReadSampleFakeProc(t *testing.T) {
	root := fakeProc(t)
	page := uint64(os.Getpagesize())
	s, err := ReadSample(root, 10, 0, false)
	if err != nil {
		t.Fatal(err)
	}
	if s.Procs != 1 || s.RSSBytes != 10*page || s.OpenFiles != 4 || s.Threads != 3 || s.NetRx != 1500 || s.NetTx != 2700 || s.StartTime != 1010 {
		t.Fatalf("sample = %+v", s)
	}
	s, err = ReadSample(root, 10, 1010, true)
	if err != nil {
		t.Fatal(err)
	}
	if s.Procs != 3 || s.RSSBytes != 16*page || s.OpenFiles != 8 || s.Threads != 6 || cpuTicksDelta(nil, s.Ticks) != 147 {
		t.Fatalf("sample with children = %+v", s)
	}
	// A different start time means the PID was reused: the watched process is gone.
	var ee *ExitedError
	if _, err := ReadSample(root, 10, 999, false); !errors.As(err, &ee) || ee.PID != 10 {
		t.Fatalf("reused PID: err = %v, want *ExitedError", err)
	}
	if _, err := ReadSample(root, 14, 0, false); !errors.As(err, &ee) {
		t.Fatalf("zombie: err = %v, want *ExitedError", err)
	}
	if _, err := ReadSample(root, 77, 0, false); !errors.As(err, &ee) || err.Error() != "monitor: process 77 has exited" {
		t.Fatalf("missing: err = %v", err)
	}
	os.WriteFile(filepath.Join(root, "10", "statm"), []byte("x"), 0o644)
	if _, err := ReadSample(root, 10, 0, false); err == nil || !strings.Contains(err.Error(), "statm") {
		t.Fatalf("bad statm: err = %v, want the file named", err)
	}
}

// startBusy starts a child that keeps one core busy.
func startBusy(t *testing.T) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "MONITOR_TEST_BUSY=1", "GOMAXPROCS=1")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd
}

// schedNS reads the on-CPU time in nanoseconds from /proc/PID/schedstat, a source independent of
// the clock-tick unit the sampler uses.
func schedNS(t *testing.T, pid int) (uint64, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/schedstat", pid))
	if err != nil {
		return 0, false
	}
	f := strings.Fields(string(b))
	if len(f) < 1 {
		return 0, false
	}
	v, err := strconv.ParseUint(f[0], 10, 64)
	return v, err == nil
}

// TestCPUUsageOfBusyChild measures a child spinning on one core. The machine is shared, so the
// child may get less than a full core; the figure must agree with the kernel's nanosecond
// accounting (schedstat) and lie in a band that a wrong unit (a fraction 0..1, or per-mille, or
// ticks not divided by USER_HZ) cannot reach.
func TestCPUUsageOfBusyChild(t *testing.T) {
	cmd := startBusy(t)
	pid := cmd.Process.Pid
	time.Sleep(200 * time.Millisecond)
	hz := ClockTicks()
	s0, err := ReadSample("/proc", pid, 0, false)
	if err != nil {
		t.Fatal(err)
	}
	ns0, haveSched := schedNS(t, pid)
	t0 := time.Now()
	time.Sleep(1500 * time.Millisecond)
	s1, err := ReadSample("/proc", pid, s0.StartTime, false)
	if err != nil {
		t.Fatal(err)
	}
	ns1, _ := schedNS(t, pid)
	wall := time.Since(t0)
	evs := Events(&s0, t0, s1, t0.Add(wall), hz)
	if evs[0].Name != "cpu_usage" {
		t.Fatalf("first event %q, want cpu_usage", evs[0].Name)
	}
	got := evs[0].Value
	t.Logf("cpu_usage = %.1f%% of one core (USER_HZ %d, wall %s)", got, hz, wall)
	if got < 10 || got > 115 {
		t.Fatalf("cpu_usage = %.2f, want a percent of one core in [10, 115] for a single busy thread", got)
	}
	if haveSched {
		ref := float64(ns1-ns0) / float64(wall.Nanoseconds()) * 100
		t.Logf("schedstat says %.1f%%", ref)
		// Ticks are sampled at USER_HZ, so allow 3 ticks of quantisation plus 15% of the figure.
		slack := 3*100/float64(hz)/wall.Seconds() + 0.15*ref
		if got < ref-slack || got > ref+slack {
			t.Fatalf("cpu_usage %.1f disagrees with schedstat %.1f (slack %.1f)", got, ref, slack)
		}
	}
}

func TestRunSamplerReportsAndSeesExit(t *testing.T) {
	mesh := newTestMesh(t)
	b := mesh.add(t, "a")
	cmd := startBusy(t)
	done := make(chan error, 1)
	go func() {
		done <- RunSampler(context.Background(), b, SamplerConfig{PID: cmd.Process.Pid, Interval: 100 * time.Millisecond})
	}()
	evs := b.waitEvents(t, 20*time.Second, "cpu_usage", func(evs []agent.Event) bool {
		for _, e := range evs {
			if e.Name == "cpu_usage" {
				return true
			}
		}
		return false
	})
	by := map[string]agent.Event{}
	for _, e := range evs {
		if e.Kind != "metric" || e.Attrs["pid"] != strconv.Itoa(cmd.Process.Pid) || e.At.IsZero() {
			t.Fatalf("event %+v: want kind metric, the pid attribute and a time", e)
		}
		by[e.Name] = e
	}
	for _, name := range []string{"cpu_usage", "memory_bytes", "open_files", "threads", "net_rx_bytes", "net_tx_bytes"} {
		if _, ok := by[name]; !ok {
			t.Fatalf("no %s event in %v", name, evs)
		}
	}
	if by["memory_bytes"].Value < 1<<20 || by["open_files"].Value < 3 || by["threads"].Value < 1 {
		t.Fatalf("implausible figures: memory %v, open files %v, threads %v", by["memory_bytes"].Value, by["open_files"].Value, by["threads"].Value)
	}
	cmd.Process.Kill() // not reaped yet: a zombie, which the sampler must treat as exited
	select {
	case err := <-done:
		var ee *ExitedError
		if !errors.As(err, &ee) || ee.PID != cmd.Process.Pid {
			t.Fatalf("RunSampler = %v, want *ExitedError for %d", err, cmd.Process.Pid)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the sampler did not notice the exit")
	}
}

func TestSamplerConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg  SamplerConfig
		want string
	}{
		{SamplerConfig{PID: 0, Interval: time.Second}, "PID 0"},
		{SamplerConfig{PID: 1, Interval: 50 * time.Millisecond}, "interval 50ms"},
	} {
		if err := tc.cfg.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%+v) = %v, want %q", tc.cfg, err, tc.want)
		}
	}
}

// TestReadSampleChildrenReal counts a real process tree: a shell and its two sleeping children.
func TestReadSampleChildrenReal(t *testing.T) {
	cmd := exec.Command("sh", "-c", "sleep 30 & sleep 30 & wait")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // its own group, ended as a whole below
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		s, err := ReadSample("/proc", cmd.Process.Pid, 0, true)
		if err != nil {
			t.Fatal(err)
		}
		if s.Procs == 3 {
			alone, err := ReadSample("/proc", cmd.Process.Pid, 0, false)
			if err != nil {
				t.Fatal(err)
			}
			if alone.Procs != 1 || s.RSSBytes <= alone.RSSBytes || s.Threads < 3 || s.OpenFiles <= alone.OpenFiles {
				t.Fatalf("tree %+v vs alone %+v", s, alone)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("saw %d processes, want 3 (the shell and two sleeps)", s.Procs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestNetBytesRate: net_bytes is the bytes per second received and sent between two samples,
// left out on the first sample and when a counter went backwards.
func TestNetBytesRate(t *testing.T) {
	t0 := time.Unix(1000, 0)
	s0 := Sample{PID: 7, NetRx: 1000, NetTx: 500}
	s1 := Sample{PID: 7, NetRx: 5000, NetTx: 2500}
	find := func(evs []agent.Event) (float64, bool) {
		for _, e := range evs {
			if e.Name == "net_bytes" {
				return e.Value, true
			}
		}
		return 0, false
	}
	if _, ok := find(Events(nil, time.Time{}, s0, t0, 100)); ok {
		t.Fatal("net_bytes on the first sample")
	}
	if v, ok := find(Events(&s0, t0, s1, t0.Add(2*time.Second), 100)); !ok || v != 3000 {
		t.Fatalf("net_bytes = %v %v, want 3000 bytes/s", v, ok)
	}
	if _, ok := find(Events(&s1, t0, s0, t0.Add(2*time.Second), 100)); ok {
		t.Fatal("net_bytes from a counter that went backwards")
	}
}
