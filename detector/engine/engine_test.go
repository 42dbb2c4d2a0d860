package engine

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vigil-mesh/vigil/detector"
	"github.com/vigil-mesh/vigil/detector/rules"
)

const sec = int64(time.Second)

func mustRule(t testing.TB, metric, th string, action rules.Action) rules.Rule {
	t.Helper()
	x, err := rules.ParseThreshold(th)
	if err != nil {
		t.Fatal(err)
	}
	return rules.Rule{Metric: metric, Threshold: x, Action: action}
}

func newEngine(t testing.TB, mut func(*Config)) *Engine {
	t.Helper()
	cfg := DefaultConfig()
	if mut != nil {
		mut(&cfg)
	}
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func observe(t testing.TB, e *Engine, r Record) []Alert {
	t.Helper()
	out, err := e.Observe(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestRuleAlert(t *testing.T) {
	set, err := rules.NewSet([]rules.Rule{mustRule(t, "messages_per_minute", "100", rules.Throttle)})
	if err != nil {
		t.Fatal(err)
	}
	e := newEngine(t, func(c *Config) { c.Rules = set; c.Vector = nil })
	var alerts []Alert
	for i := range 150 {
		alerts = append(alerts, observe(t, e, Record{Agent: "a1", Time: int64(i) * sec / 10, Kind: Message, Peer: "p"})...)
	}
	if len(alerts) != 1 {
		t.Fatalf("want one alert on the rising edge, got %d: %+v", len(alerts), alerts)
	}
	a := alerts[0]
	if a.Agent != "a1" || a.Action != rules.Throttle || a.Score != 1 || !strings.HasPrefix(a.Model, "rule:messages_per_minute") || !strings.Contains(a.Evidence, "101") {
		t.Fatalf("alert %+v", a)
	}
	if err := e.Feedback("a1", a); err == nil || !strings.Contains(err.Error(), "policy") {
		t.Fatalf("feedback on a rule alert: %v", err)
	}
}

func TestCapabilityAlert(t *testing.T) {
	e := newEngine(t, func(c *Config) { c.Vector = nil; c.CapabilityAction = rules.Quarantine })
	if got := observe(t, e, Record{Agent: "a", Time: 1, Kind: Event, Action: "tool:shell"}); len(got) != 0 {
		t.Fatal("capability checked before capabilities were known")
	}
	if err := e.SetCapabilities("a", []string{"tool:search"}); err != nil {
		t.Fatal(err)
	}
	if got := observe(t, e, Record{Agent: "a", Time: 2, Kind: Event, Action: "tool:search"}); len(got) != 0 {
		t.Fatalf("held capability alerted: %+v", got)
	}
	got := observe(t, e, Record{Agent: "a", Time: 3, Kind: Event, Action: "tool:shell"})
	if len(got) != 1 || got[0].Model != "capability" || got[0].Action != rules.Quarantine || !strings.Contains(got[0].Evidence, "tool:shell") {
		t.Fatalf("unheld capability: %+v", got)
	}
	// A use the mesh already authorised (the verb of an allowed send) is not checked again.
	if got := observe(t, e, Record{Agent: "a", Time: 4, Kind: Event, Action: "ask", Authorized: true}); len(got) != 0 {
		t.Fatalf("authorised use alerted: %+v", got)
	}
}

// traffic feeds one agent's ordinary traffic for n intervals of 10 s starting at interval
// from, and returns the alerts.
func traffic(t testing.TB, e *Engine, agent string, rng *rand.Rand, from, n int) []Alert {
	var out []Alert
	for iv := from; iv < from+n; iv++ {
		base := int64(iv) * 10 * sec
		msgs := 8 + rng.IntN(5)
		for m := range msgs {
			r := Record{Agent: agent, Time: base + int64(m)*sec/2, Kind: Message, Peer: fmt.Sprintf("peer-%d", rng.IntN(3)),
				Bytes: int64(900 + rng.IntN(200)), Latency: time.Duration(20+rng.IntN(10)) * time.Millisecond}
			var err error
			out, err = e.Observe(r, out)
			if err != nil {
				t.Fatal(err)
			}
		}
		var err error
		out, err = e.Observe(Record{Agent: agent, Time: base + 7*sec, Kind: Event, Action: []string{"read", "search"}[rng.IntN(2)]}, out)
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func burst(t testing.TB, e *Engine, agent string, iv int) []Alert {
	var out []Alert
	base := int64(iv) * 10 * sec
	for m := range 400 {
		var err error
		out, err = e.Observe(Record{Agent: agent, Time: base + int64(m)*sec/50, Kind: Message, Peer: fmt.Sprintf("victim-%d", m),
			Bytes: 50_000, Outcome: Error}, out)
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func TestVectorModelAlertsOnBurst(t *testing.T) {
	e := newEngine(t, nil)
	rng := rand.New(rand.NewPCG(1, 1))
	if got := traffic(t, e, "a", rng, 0, 800); len(got) > 2 {
		t.Fatalf("%d alerts on 800 ordinary intervals: %+v", len(got), got[0])
	}
	burst(t, e, "a", 800)
	got := traffic(t, e, "a", rng, 801, 1) // closes the burst interval
	if len(got) != 1 || got[0].Model != "hst" || got[0].Score < 0.999 || got[0].Time != 801*10*sec ||
		!strings.Contains(got[0].Evidence, "messages=400") {
		t.Fatalf("burst: %+v", got)
	}
	// Feedback raises the threshold modestly and the model learns.
	before := e.Threshold("a", "hst")
	if err := e.Feedback("a", got[0]); err != nil {
		t.Fatal(err)
	}
	if after := e.Threshold("a", "hst"); !(after > before && after < 1 && after-before < 0.01) {
		t.Fatalf("threshold %v → %v", before, after)
	}
	if e.Threshold("b", "hst") != before {
		t.Fatal("feedback for one agent changed another's threshold")
	}
}

func TestMetricModels(t *testing.T) {
	e := newEngine(t, func(c *Config) {
		c.Vector = nil
		c.MaxMetrics = 1
		c.Metric = func(string) (detector.MetricModel, error) {
			return rules.NewModel(rules.ModelConfig{Threshold: "80"})
		}
	})
	if got := observe(t, e, Record{Agent: "a", Time: 1, Kind: Metric, Metric: "cpu", Value: 50}); len(got) != 0 {
		t.Fatal(got)
	}
	got := observe(t, e, Record{Agent: "a", Time: 2, Kind: Metric, Metric: "cpu", Value: 95})
	if len(got) != 1 || got[0].Model != "metric:cpu:threshold" || !strings.Contains(got[0].Evidence, "cpu = 95") {
		t.Fatalf("%+v", got)
	}
	if got := observe(t, e, Record{Agent: "a", Time: 3, Kind: Metric, Metric: "mem", Value: 95}); len(got) != 0 {
		t.Fatal("a metric beyond MaxMetrics got a model")
	}
}

// transitions is a small first-order sequence model used to exercise the engine's session
// wiring: an action scores 1 if it never followed the previous action in the fitted sessions.
type transitions struct{ seen map[[2]detector.Action]bool }

func (m *transitions) Algorithm() string              { return "transitions" }
func (m *transitions) MarshalBinary() ([]byte, error) { return nil, nil }
func (m *transitions) UnmarshalBinary([]byte) error   { return nil }
func (m *transitions) Fit(ss [][]detector.Action) error {
	for _, s := range ss {
		prev := detector.Unseen
		for _, a := range s {
			m.seen[[2]detector.Action{prev, a}] = true
			prev = a
		}
	}
	return nil
}
func (m *transitions) Start() detector.Session { return &transSession{m: m} }

type transSession struct {
	m    *transitions
	prev detector.Action
}

func (s *transSession) Observe(a detector.Action) float64 {
	k := [2]detector.Action{s.prev, a}
	s.prev = a
	if s.m.seen[k] {
		return 0
	}
	return 1
}

func TestSequenceSessions(t *testing.T) {
	m := &transitions{seen: map[[2]detector.Action]bool{}}
	// The engine's vocabulary gives ids in order of first sight: read=1, write=2.
	_ = m.Fit([][]detector.Action{{1, 2, 1, 2}})
	e := newEngine(t, func(c *Config) { c.Vector = nil; c.Sequence = m; c.Baseline.Sessions = 0 })
	var got []Alert
	for i, act := range []string{"read", "write", "read", "write"} {
		got = append(got, observe(t, e, Record{Agent: "a", Time: int64(i) * sec, Kind: Event, Action: act, Session: "s1"})...)
	}
	if len(got) != 0 {
		t.Fatalf("normal session alerted: %+v", got)
	}
	got = observe(t, e, Record{Agent: "a", Time: 5 * sec, Kind: Event, Action: "exec", Session: "s1"})
	if len(got) != 1 || got[0].Model != "sequence:transitions" {
		t.Fatalf("unseen action: %+v", got)
	}
	// A new session starts from the beginning: "read" first is normal again.
	if got := observe(t, e, Record{Agent: "a", Time: 6 * sec, Kind: Event, Action: "read", Session: "s2"}); len(got) != 0 {
		t.Fatalf("new session: %+v", got)
	}
}

func TestBadRecordsRefused(t *testing.T) {
	e := newEngine(t, nil)
	for want, r := range map[string]Record{
		"agent is empty": {Kind: Message},
		"kind 9 unknown": {Agent: "a", Kind: 9},
		"not finite":     {Agent: "a", Kind: Metric, Metric: "cpu", Value: nan()},
		"metric name":    {Agent: "a", Kind: Metric},
		"negative bytes": {Agent: "a", Kind: Message, Bytes: -1},
		"more than 256":  {Agent: strings.Repeat("x", 257), Kind: Message},
	} {
		if _, err := e.Observe(r, nil); !errors.Is(err, ErrRecord) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v", want, err)
		}
	}
	if e.Agents() != 0 {
		t.Fatal("a refused record created agent state")
	}
}

func nan() float64 { var z float64; return z / z }

func TestConfigRefused(t *testing.T) {
	for field, mut := range map[string]func(*Config){
		"Interval":       func(c *Config) { c.Interval = 0 },
		"MaxMetrics":     func(c *Config) { c.MaxMetrics = -1 },
		"SessionGap":     func(c *Config) { c.SessionGap = 0 },
		"AlertThreshold": func(c *Config) { c.AlertThreshold = 1.5 },
		"FeedbackStep":   func(c *Config) { c.FeedbackStep = 1 },
		"Vocabulary":     func(c *Config) { c.Vocabulary.MaxSize = 0 },
	} {
		cfg := DefaultConfig()
		mut(&cfg)
		if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("%s: %v", field, err)
		}
	}
}

func checkpointConfig(t testing.TB) func(*Config) {
	set, err := rules.NewSet([]rules.Rule{mustRule(t, "refusals_per_minute", "5", rules.Alert), mustRule(t, "cpu", "90", rules.Alert)})
	if err != nil {
		t.Fatal(err)
	}
	return func(c *Config) {
		c.Rules = set
		c.Metric = func(string) (detector.MetricModel, error) {
			inner, _ := rules.NewModel(rules.ModelConfig{Threshold: "70", For: 20 * time.Second})
			cfg := DefaultEnsembleConfig()
			cfg.Members = []string{"threshold"}
			return NewEnsemble(cfg, []detector.MetricModel{inner})
		}
	}
}

func TestCheckpointRestoreIdentical(t *testing.T) {
	mut := checkpointConfig(t)
	a, b := newEngine(t, mut), newEngine(t, mut)
	rngA := rand.New(rand.NewPCG(5, 5))
	traffic(t, a, "x", rngA, 0, 400)
	for i := range 50 {
		observe(t, a, Record{Agent: "x", Time: 4000*sec + int64(i)*sec, Kind: Metric, Metric: "cpu", Value: float64(50 + i%30)})
	}
	observe(t, a, Record{Agent: "x", Time: 4060 * sec, Kind: Refusal})
	// Raised thresholds are part of the state (several, so their order must not matter).
	a.agents["x"].thresholds = map[string]float64{"hst": 0.9995, "metric:cpu:ensemble": 0.9992, "zzz": 0.9991}
	data, err := a.Checkpoint("x")
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if again, _ := a.Checkpoint("x"); !bytes.Equal(again, data) {
			t.Fatal("two checkpoints of the same state differ")
		}
	}
	if err := b.Restore("x", data); err != nil {
		t.Fatal(err)
	}
	again, _ := b.Checkpoint("x")
	if !bytes.Equal(again, data) {
		t.Fatal("checkpoint of the restored agent differs")
	}
	rngA = rand.New(rand.NewPCG(8, 8))
	rngB := rand.New(rand.NewPCG(8, 8))
	var alertsA, alertsB []Alert
	alertsA = append(alertsA, traffic(t, a, "x", rngA, 407, 300)...)
	alertsB = append(alertsB, traffic(t, b, "x", rngB, 407, 300)...)
	for i := range 40 {
		r := Record{Agent: "x", Time: 7100*sec + int64(i)*sec, Kind: Refusal}
		m := Record{Agent: "x", Time: 7100*sec + int64(i)*sec, Kind: Metric, Metric: "cpu", Value: float64(60 + i)}
		alertsA = append(alertsA, observe(t, a, r)...)
		alertsA = append(alertsA, observe(t, a, m)...)
		alertsB = append(alertsB, observe(t, b, r)...)
		alertsB = append(alertsB, observe(t, b, m)...)
	}
	alertsA = append(alertsA, burst(t, a, "x", 720)...)
	alertsB = append(alertsB, burst(t, b, "x", 720)...)
	alertsA = append(alertsA, traffic(t, a, "x", rngA, 721, 2)...)
	alertsB = append(alertsB, traffic(t, b, "x", rngB, 721, 2)...)
	if len(alertsA) < 3 {
		t.Fatalf("the suffix raised only %d alerts; the test needs rule, metric and vector alerts", len(alertsA))
	}
	if !reflect.DeepEqual(alertsA, alertsB) {
		t.Fatalf("restored engine diverged:\n%+v\n%+v", alertsA, alertsB)
	}
	// A checkpoint under other rules is refused and leaves the agent as it was.
	other := newEngine(t, nil)
	observe(t, other, Record{Agent: "x", Time: 1, Kind: Message})
	before, _ := other.Checkpoint("x")
	if err := other.Restore("x", data); !errors.Is(err, detector.ErrCheckpoint) {
		t.Fatalf("mismatched config: %v", err)
	}
	after, _ := other.Checkpoint("x")
	if !bytes.Equal(before, after) {
		t.Fatal("a refused restore changed the agent")
	}
}

func FuzzRestore(f *testing.F) {
	mut := checkpointConfig(f)
	e := newEngine(f, mut)
	rng := rand.New(rand.NewPCG(1, 2))
	traffic(f, e, "x", rng, 0, 3)
	observe(f, e, Record{Agent: "x", Time: 40 * sec, Kind: Metric, Metric: "cpu", Value: 80})
	seed, _ := e.Checkpoint("x")
	f.Add(seed)
	f.Fuzz(func(t *testing.T, data []byte) {
		d := newEngine(t, mut)
		if err := d.Restore("x", data); err != nil {
			if d.Agents() != 0 {
				t.Fatal("failed restore left state")
			}
			return
		}
		traffic(t, d, "x", rand.New(rand.NewPCG(3, 4)), 10, 2)
	})
}

// TestOrdinaryTrafficAlertRate counts rising-edge HST alerts on 5,000 ordinary intervals at
// three thresholds (the figures quoted in Config.AlertThreshold) and checks the default keeps
// false alerts rare while a burst still alerts.
func TestOrdinaryTrafficAlertRate(t *testing.T) {
	counts := map[float64]int{}
	for _, th := range []float64{0.99, 0.999} {
		e := newEngine(t, func(c *Config) { c.AlertThreshold = th })
		counts[th] = len(traffic(t, e, "a", rand.New(rand.NewPCG(1, 1)), 0, 5000))
		t.Logf("threshold %v: %d alerts in 5000 ordinary intervals", th, counts[th])
	}
	if !(counts[0.999] < counts[0.99] && counts[0.999] <= 10) {
		t.Fatalf("alerts per 5000 ordinary intervals: %v", counts)
	}
}

func TestFeedbackOnMetricModel(t *testing.T) {
	e := newEngine(t, checkpointConfig(t))
	var alerts []Alert
	for i := range 40 {
		alerts = append(alerts, observe(t, e, Record{Agent: "a", Time: int64(i) * sec, Kind: Metric, Metric: "cpu", Value: 50})...)
	}
	for i := 40; i < 70; i++ {
		alerts = append(alerts, observe(t, e, Record{Agent: "a", Time: int64(i) * sec, Kind: Metric, Metric: "cpu", Value: 75})...)
	}
	var model *Alert
	for i := range alerts {
		if alerts[i].Model == "metric:cpu:ensemble" {
			model = &alerts[i]
		}
	}
	if model == nil {
		t.Fatalf("no metric alert in %+v", alerts)
	}
	if err := e.Feedback("a", *model); err != nil {
		t.Fatal(err)
	}
	if th := e.Threshold("a", model.Model); !(th > 0.999 && th < 1) {
		t.Fatalf("threshold after feedback %v", th)
	}
	if err := e.Feedback("a", Alert{Model: "metric:mem:ewma"}); err == nil || !strings.Contains(err.Error(), "not a model") {
		t.Fatalf("feedback for a model the agent lacks: %v", err)
	}
	if err := e.Feedback("nobody", *model); err == nil || !strings.Contains(err.Error(), "unknown agent") {
		t.Fatalf("feedback for an unknown agent: %v", err)
	}
}

// TestIntervalsAndQuietGap: features are scored when a later record closes the interval, at
// the interval's end; a long silence adds exactly one all-zero interval.
func TestIntervalsAndQuietGap(t *testing.T) {
	var got [][]float64
	var times []int64
	e := newEngine(t, func(c *Config) {
		c.Vector = func() (detector.VectorModel, error) { return &recorder{got: &got, times: &times}, nil }
	})
	observe(t, e, Record{Agent: "a", Time: 1 * sec, Kind: Message, Peer: "p1", Bytes: 100, Latency: 9 * time.Millisecond})
	observe(t, e, Record{Agent: "a", Time: 2 * sec, Kind: Message, Peer: "p2", Bytes: 100, Outcome: Error})
	observe(t, e, Record{Agent: "a", Time: 3 * sec, Kind: Refusal})
	observe(t, e, Record{Agent: "a", Time: 4 * sec, Kind: Event, Action: "x"})
	if len(got) != 0 {
		t.Fatal("scored before the interval closed")
	}
	observe(t, e, Record{Agent: "a", Time: 15 * sec, Kind: Message}) // closes [0,10s)
	observe(t, e, Record{Agent: "a", Time: 95 * sec, Kind: Message}) // closes [10,20s) and adds one quiet interval
	if len(got) != 3 {
		t.Fatalf("%d vectors, want 3", len(got))
	}
	f := got[0]
	if f[0] != 2 || f[1] != math.Log1p(200) || f[2] < 1.9 || f[2] > 2.1 || f[3] != 1 || f[4] != 1 || f[5] != 1 ||
		f[6] != math.Log1p(9) || f[7] < 0.9 || f[7] > 1.1 {
		t.Fatalf("first interval features %v", f)
	}
	if times[0] != 10*sec || times[1] != 20*sec || times[2] != 30*sec {
		t.Fatalf("scored at %v", times)
	}
	for _, v := range got[2] {
		if v != 0 {
			t.Fatalf("quiet interval %v", got[2])
		}
	}
}

// recorder is a VectorModel that keeps what it is given (to check the engine's features).
type recorder struct {
	got   *[][]float64
	times *[]int64
}

func (r *recorder) Algorithm() string              { return "recorder" }
func (r *recorder) Dim() int                       { return len(Features) }
func (r *recorder) MarshalBinary() ([]byte, error) { return nil, nil }
func (r *recorder) UnmarshalBinary([]byte) error   { return nil }
func (r *recorder) Observe(t int64, x []float64) float64 {
	*r.got = append(*r.got, append([]float64(nil), x...))
	*r.times = append(*r.times, t)
	return 0
}

// TestVectorScenarios: after ordinary traffic, an interval that is ordinary but for one
// feature — 100× the bytes (exfiltration), every message to a new peer (scanning), refusals
// piling up — alerts.
func TestVectorScenarios(t *testing.T) {
	for name, odd := range map[string]func(i int, r *Record) []Record{
		"exfiltration": func(_ int, r *Record) []Record { r.Bytes *= 100; return nil },
		"scanning":     func(i int, r *Record) []Record { r.Peer = fmt.Sprintf("new-%d", i); return nil },
		"refusals": func(_ int, r *Record) []Record {
			return []Record{{Agent: r.Agent, Time: r.Time, Kind: Refusal}, {Agent: r.Agent, Time: r.Time, Kind: Refusal}}
		},
	} {
		e := newEngine(t, nil)
		rng := rand.New(rand.NewPCG(2, 2))
		traffic(t, e, "a", rng, 0, 600)
		base := int64(600) * 10 * sec
		for i := range 10 {
			r := Record{Agent: "a", Time: base + int64(i)*sec/2, Kind: Message, Peer: fmt.Sprintf("peer-%d", i%3),
				Bytes: 1000, Latency: 25 * time.Millisecond}
			extra := odd(i, &r)
			observe(t, e, r)
			for _, x := range extra {
				observe(t, e, x)
			}
		}
		observe(t, e, Record{Agent: "a", Time: base + 7*sec, Kind: Event, Action: "read"})
		got := traffic(t, e, "a", rng, 601, 1)
		if len(got) != 1 || got[0].Model != "hst" || got[0].Time != 601*10*sec {
			t.Errorf("%s: alerts %+v", name, got)
		}
	}
	// The same interval with nothing odd does not alert.
	e := newEngine(t, nil)
	rng := rand.New(rand.NewPCG(2, 2))
	traffic(t, e, "a", rng, 0, 600)
	for i := range 10 {
		observe(t, e, Record{Agent: "a", Time: 6000*sec + int64(i)*sec/2, Kind: Message, Peer: fmt.Sprintf("peer-%d", i%3),
			Bytes: 1000, Latency: 25 * time.Millisecond})
	}
	observe(t, e, Record{Agent: "a", Time: 6007 * sec, Kind: Event, Action: "read"})
	if got := traffic(t, e, "a", rng, 601, 1); len(got) != 0 {
		t.Errorf("ordinary interval alerted: %+v", got)
	}
}
