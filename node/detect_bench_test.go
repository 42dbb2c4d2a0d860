package node

import (
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-mesh/vigil/detector/engine"
	"github.com/vigil-mesh/vigil/identity/policy"
	"github.com/vigil-mesh/vigil/node/telemetry"
)

// benchTelemetry is 64 agents' sends and metric events, 1 ms apart.
func benchTelemetry(n int) []telemetry.Record {
	t0 := time.Unix(1_700_000_000, 0)
	out := make([]telemetry.Record, n)
	for i := range out {
		r := telemetry.Record{Time: t0.Add(time.Duration(i) * time.Millisecond), Agent: fmt.Sprintf("agent-%d", i%64),
			Kind: telemetry.KindSend, Action: "ask:worker", Peer: "worker", Bytes: 1000, Latency: 20 * time.Millisecond,
			Outcome: telemetry.OutcomeOK}
		if i%4 == 0 {
			r.Kind, r.Action, r.Value, r.Peer = telemetry.KindEvent, "metric:cpu_usage", float64(i%70), ""
		}
		out[i] = r
	}
	return out
}

func benchEngine(b *testing.B) *engine.Engine {
	doc, err := policy.Parse([]byte("monitoring:\n  policies:\n    - {metric: cpu_usage, threshold: 80%, action: alert}\n" +
		"threat_detection:\n  models:\n    - {type: anomaly_detection, algorithm: hst}\n"))
	if err != nil {
		b.Fatal(err)
	}
	cfg, _, err := engineConfig(doc, func(string, ...any) {})
	if err != nil {
		b.Fatal(err)
	}
	e, err := engine.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	return e
}

// BenchmarkDetectShell: one telemetry record through the node's shell (mapping, lock, engine)
// against the same records, mapped beforehand, straight into the engine (the baseline).
func BenchmarkDetectShell(b *testing.B) {
	recs := benchTelemetry(1 << 16)
	b.Run("engine-only", func(b *testing.B) {
		e := benchEngine(b)
		mapped := make([][]engine.Record, len(recs)) // per telemetry record, as the shell maps it
		for i, r := range recs {
			mapped[i] = records(r, nil)
		}
		var out []engine.Alert
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			for _, r := range mapped[i%len(mapped)] {
				r.Time += int64(i/len(mapped)) * int64(time.Hour)
				out, _ = e.Observe(r, out[:0])
			}
		}
	})
	b.Run("shell", func(b *testing.B) {
		d := &detection{eng: benchEngine(b), caps: map[string]time.Time{}, unfit: map[string]bool{},
			failed: prometheus.NewCounter(prometheus.CounterOpts{Name: "x"})}
		for i := range 64 {
			d.caps[fmt.Sprintf("agent-%d", i)] = time.Now()
		}
		var out []engine.Alert
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			r := recs[i%len(recs)]
			r.Time = r.Time.Add(time.Duration(i/len(recs)) * time.Hour)
			out = d.observe(r, out[:0])
		}
	})
}
