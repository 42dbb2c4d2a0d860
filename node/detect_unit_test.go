package node

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vigil-mesh/vigil/detector/engine"
	"github.com/vigil-mesh/vigil/identity/policy"
	"github.com/vigil-mesh/vigil/node/telemetry"
)

func TestDetectEngineConfigFromPolicy(t *testing.T) {
	doc, err := policy.Parse([]byte(`monitoring:
  interval: 2s
  policies:
    - {metric: cpu_usage, threshold: 80%, for: 30s, action: quarantine}
    - {metric: messages_per_minute, threshold: 100/m, action: alert}
threat_detection:
  models:
    - {type: anomaly_detection, algorithm: ewma}
    - {type: anomaly_detection, algorithm: rrcf, params: {trees: 8}}
    - {type: anomaly_detection, algorithm: hst}
    - {type: anomaly_detection, algorithm: ngram, params: {online: true}}
`))
	if err != nil {
		t.Fatal(err)
	}
	var warned []string
	cfg, newSeq, err := engineConfig(doc, func(msg string, args ...any) { warned = append(warned, msg) })
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Interval != 2*time.Second || cfg.Rules == nil || cfg.Rules.Len() != 2 || cfg.Metric == nil {
		t.Fatalf("config: interval %v rules %v metric %v", cfg.Interval, cfg.Rules, cfg.Metric != nil)
	}
	if m, err := cfg.Metric("cpu_usage"); err != nil || m.Algorithm() != "ewma" {
		t.Fatalf("metric model: %v %v", m, err)
	}
	v, err := cfg.Vector()
	if err != nil || v.Algorithm() != "rrcf" {
		t.Fatalf("vector model: %v %v", v, err)
	}
	if cfg.Sequence == nil || cfg.Sequence.Algorithm() != "ngram" || newSeq == nil {
		t.Fatalf("sequence model: %v", cfg.Sequence)
	}
	if fresh, err := newSeq(); err != nil || fresh == cfg.Sequence || fresh.Algorithm() != "ngram" {
		t.Fatalf("the factory of models to fit: %v %v", fresh, err)
	}
	if cfg.Baseline != engine.DefaultBaselineConfig() || cfg.SessionGap != 5*time.Minute {
		t.Fatalf("baseline %+v, session gap %v: want the defaults", cfg.Baseline, cfg.SessionGap)
	}
	// hst is a second vector model: skipped with a warning.
	if len(warned) != 1 {
		t.Fatalf("warnings: %q", warned)
	}
	if _, err := engine.New(cfg); err != nil {
		t.Fatal(err)
	}

	bad, err := policy.Parse([]byte(`threat_detection:
  models:
    - {type: anomaly_detection, algorithm: hst, params: {trees: 0}}
`))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := engineConfig(bad, func(string, ...any) {}); err == nil || !strings.Contains(err.Error(), "threat_detection.models[0]") {
		t.Fatalf("bad params: %v", err)
	}
}

// TestDetectSequenceParams: the sequence model's params set the engine's baseline, session gap
// and fine-tuning; bad values are refused naming the field.
func TestDetectSequenceParams(t *testing.T) {
	parse := func(params string) (engine.Config, error) {
		t.Helper()
		doc, err := policy.Parse([]byte("threat_detection:\n  models:\n    - {type: anomaly_detection, algorithm: hst}\n" +
			"    - {type: anomaly_detection, algorithm: lstm, params: {" + params + "}}\n"))
		if err != nil {
			t.Fatal(err)
		}
		cfg, _, err := engineConfig(doc, func(string, ...any) {})
		return cfg, err
	}
	cfg, err := parse("hidden: 16, baseline_sessions: 20, baseline_min_sessions: 5, baseline_duration: 2h, baseline_actions: 5000, session_gap: 30s, tune_interval: 10m")
	if err != nil {
		t.Fatal(err)
	}
	want := engine.BaselineConfig{Sessions: 20, MinSessions: 5, Duration: 2 * time.Hour, MaxActions: 5000}
	if cfg.Baseline != want || cfg.SessionGap != 30*time.Second || cfg.TuneInterval != 10*time.Minute || cfg.Sequence.Algorithm() != "lstm" {
		t.Fatalf("baseline %+v gap %v tune %v", cfg.Baseline, cfg.SessionGap, cfg.TuneInterval)
	}
	if _, err := engine.New(cfg); err != nil {
		t.Fatal(err)
	}
	// The covering model takes the same baseline params and its own.
	doc, err := policy.Parse([]byte("threat_detection:\n  models:\n    - {type: anomaly_detection, algorithm: cover, params: {baseline_sessions: 30, folds: 4}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg, _, err := engineConfig(doc, func(string, ...any) {}); err != nil || cfg.Sequence.Algorithm() != "cover" || cfg.Baseline.Sessions != 30 {
		t.Fatalf("cover: %v %+v", err, cfg.Baseline)
	} else if _, err := engine.New(cfg); err != nil {
		t.Fatal(err)
	}
	for params, msg := range map[string]string{
		"baseline_sessions: -1":       "threat_detection.models[1].params.baseline_sessions: -1 is not in 0..1000000",
		"baseline_sessions: many":     "threat_detection.models[1].params.baseline_sessions: many is not an integer",
		"baseline_min_sessions: 0":    "threat_detection.models[1].params.baseline_min_sessions: 0 is not in 1..1000000",
		"baseline_duration: 0s":       "threat_detection.models[1].params.baseline_duration: 0s is not a positive duration",
		"baseline_duration: 3":        "threat_detection.models[1].params.baseline_duration: 3 is not a duration",
		"baseline_actions: 100000000": "threat_detection.models[1].params.baseline_actions: 100000000 is not in 1..10000000",
		"session_gap: -1m":            "threat_detection.models[1].params.session_gap: -1m is not a positive duration",
		"tune_interval: soon":         "threat_detection.models[1].params.tune_interval: soon is not a duration",
		"baseline_sessions: 0":        "threat_detection.models[1].params.baseline_sessions: 0 (no baseline) needs a model that learns online",
		"hidden: 0":                   "threat_detection.models[1]: lstm: sequence: invalid config: Hidden=0",
	} {
		if _, err := parse(params); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("%s: %v, want %q", params, err, msg)
		}
	}
}

func TestDetectRecordMapping(t *testing.T) {
	now := time.Unix(100, 0)
	cases := []struct {
		in   telemetry.Record
		want string
	}{
		{telemetry.Record{Time: now, Agent: "a", Kind: telemetry.KindSend, Action: "ask:b", Peer: "b", Bytes: 3, Outcome: telemetry.OutcomeOK}, "message//b event/ask:b+/"},
		{telemetry.Record{Time: now, Agent: "a", Kind: telemetry.KindSend, Action: "tell:b", Peer: "b", Outcome: "no_capability"}, "refusal//b event/tell:b/"},
		{telemetry.Record{Time: now, Agent: "a", Kind: telemetry.KindSend, Action: "ask", Peer: "b", Outcome: "destination_inactive"}, "refusal//b event/ask+/"},
		{telemetry.Record{Time: now, Agent: "a", Kind: telemetry.KindEvent, Action: "metric:cpu_usage", Value: 95}, "metric/cpu_usage/"},
		{telemetry.Record{Time: now, Agent: "a", Kind: telemetry.KindEvent, Action: "tool_call:search"}, "event//"},
		{telemetry.Record{Time: now, Agent: "a", Kind: telemetry.KindReceive, Action: "ask:a"}, ""},
	}
	for _, c := range cases {
		var got []string
		for _, r := range records(c.in, nil) {
			if r.Agent != "a" || r.Time != now.UnixNano() {
				t.Fatalf("%+v: agent/time not carried: %+v", c.in, r)
			}
			x := r.Action
			if r.Kind == engine.Metric {
				x = r.Metric
				if r.Value != 95 {
					t.Fatalf("metric value %v", r.Value)
				}
			}
			if r.Kind == engine.Event && r.Authorized {
				x += "+"
			}
			got = append(got, r.Kind.String()+"/"+x+"/"+r.Peer)
		}
		if strings.Join(got, " ") != c.want {
			t.Errorf("%s %s: got %q, want %q", c.in.Kind, c.in.Action, strings.Join(got, " "), c.want)
		}
	}
}

func TestDetectSignalDetectorName(t *testing.T) {
	got := signalDetector("rule:cpu_usage > 80%")
	if got != "rule:cpu_usage_>_80%" {
		t.Fatalf("got %q", got)
	}
	if l := len(signalDetector(strings.Repeat("x", 300))); l != 64 {
		t.Fatalf("length %d", l)
	}
	if modelClass("metric:cpu_usage:ewma") != "metric" || modelClass("hst") != "hst" {
		t.Fatal("model class")
	}
}

// TestSignalDue: one signal per agent and model per signalEvery; other agents and models are
// independent; memory stays bounded.
func TestSignalDue(t *testing.T) {
	d := &detection{}
	now := time.Unix(1000, 0)
	if !d.signalDue("a", "capability", now) || d.signalDue("a", "capability", now.Add(signalEvery-time.Millisecond)) {
		t.Fatal("second signal within signalEvery")
	}
	if !d.signalDue("a", "rule:cpu", now) || !d.signalDue("b", "capability", now) {
		t.Fatal("another model or agent held back")
	}
	if !d.signalDue("a", "capability", now.Add(signalEvery)) {
		t.Fatal("signal after signalEvery held back")
	}
	for i := range maxSignalMemory + 10 {
		d.signalDue(fmt.Sprint("agent-", i), "capability", now.Add(time.Duration(i)*time.Millisecond))
	}
	if len(d.signaled) > maxSignalMemory {
		t.Fatalf("%d pairs remembered, cap %d", len(d.signaled), maxSignalMemory)
	}
}
