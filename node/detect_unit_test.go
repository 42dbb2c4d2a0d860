package node

import (
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
	cfg, seq, err := engineConfig(doc, func(msg string, args ...any) { warned = append(warned, msg) })
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
	if seq == nil || seq.Algorithm() != "ngram" || cfg.Sequence != seq {
		t.Fatalf("sequence model: %v", seq)
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
