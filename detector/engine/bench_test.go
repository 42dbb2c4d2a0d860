package engine

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"github.com/vigil-mesh/vigil/detector/rules"
)

func benchRecords(n, agents int) []Record {
	rng := rand.New(rand.NewPCG(1, 2))
	names := make([]string, agents)
	for i := range names {
		names[i] = fmt.Sprintf("agent-%05d", i)
	}
	rs := make([]Record, n)
	for i := range rs {
		r := Record{Agent: names[rng.IntN(agents)], Time: int64(i) * int64(time.Millisecond), Kind: Message,
			Peer: names[rng.IntN(agents)], Bytes: int64(rng.IntN(4096)), Latency: time.Duration(rng.IntN(50)) * time.Millisecond}
		switch rng.IntN(10) {
		case 0:
			r.Kind, r.Action = Event, "tool:search"
		case 1:
			r.Kind = Refusal
		case 2:
			r.Kind, r.Metric, r.Value = Metric, "cpu_usage", rng.Float64()*100
		}
		rs[i] = r
	}
	return rs
}

func benchRules(b *testing.B) *rules.Set {
	var rs []rules.Rule
	for _, x := range [][2]string{{"cpu_usage", "80%"}, {"messages_per_minute", "600"}, {"refusals_per_minute", "30"}} {
		th, _ := rules.ParseThreshold(x[1])
		rs = append(rs, rules.Rule{Metric: x[0], Threshold: th, For: 30 * time.Second})
	}
	set, err := rules.NewSet(rs)
	if err != nil {
		b.Fatal(err)
	}
	return set
}

// BenchmarkEngineRecords measures records/s through the engine (default config plus three
// rules) over 100 agents, beside a baseline that only counts records per agent in a map.
func BenchmarkEngineRecords(b *testing.B) {
	rs := benchRecords(1<<16, 100)
	b.Run("engine", func(b *testing.B) {
		cfg := DefaultConfig()
		cfg.Rules = benchRules(b)
		e, _ := New(cfg)
		var out []Alert
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			r := rs[i%len(rs)]
			r.Time += int64(i/len(rs)) * int64(len(rs)) * int64(time.Millisecond)
			out, _ = e.Observe(r, out[:0])
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
	})
	b.Run("baseline-count-per-agent", func(b *testing.B) {
		counts := map[string]int{}
		for i := 0; i < b.N; i++ {
			counts[rs[i%len(rs)].Agent]++
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
	})
}

func heap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkEngine10kAgents reports the heap bytes per agent with 10,000 agents on one engine
// (default config: HST over 8 features, three rules, a vocabulary), after each agent has seen
// 40 intervals (still in the HST bootstrap, which buffers its first 256 vectors) and after 300
// (bootstrapped). Baseline: the same agents with rules only (Vector nil).
func BenchmarkEngine10kAgents(b *testing.B) {
	const agents = 10_000
	names := make([]string, agents)
	for i := range names {
		names[i] = fmt.Sprintf("agent-%05d", i)
	}
	run := func(b *testing.B, vector bool, intervals int) {
		for n := 0; n < b.N; n++ {
			base := heap()
			cfg := DefaultConfig()
			cfg.Rules = benchRules(b)
			if !vector {
				cfg.Vector = nil
			}
			e, _ := New(cfg)
			var out []Alert
			for iv := range intervals {
				t0 := int64(iv) * int64(cfg.Interval)
				for i, a := range names {
					r := Record{Agent: a, Time: t0 + int64(i%1000)*int64(time.Millisecond), Kind: Message,
						Peer: names[(i+iv)%agents], Bytes: int64(100 + (i*iv)%900)}
					out, _ = e.Observe(r, out[:0])
					if i%3 == 0 {
						out, _ = e.Observe(Record{Agent: a, Time: r.Time + 1, Kind: Event, Action: "tool:search"}, out[:0])
					}
				}
			}
			per := float64(heap()-base) / agents
			b.ReportMetric(per, "bytes/agent")
			runtime.KeepAlive(e)
		}
	}
	b.Run("default-40-intervals", func(b *testing.B) { run(b, true, 40) })
	b.Run("default-250-intervals", func(b *testing.B) { run(b, true, 250) })
	b.Run("default-300-intervals", func(b *testing.B) { run(b, true, 300) })
	b.Run("baseline-rules-only-40-intervals", func(b *testing.B) { run(b, false, 40) })
}
