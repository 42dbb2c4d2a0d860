package engine

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/vigil-mesh/vigil/detector"
	"github.com/vigil-mesh/vigil/detector/rules"
	"github.com/vigil-mesh/vigil/detector/sequence"
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

// agentSessions makes n sessions of agent-like work: 12 task shapes over 40 tools (a third of
// them with one step swapped or dropped), 4 to 14 actions each, as engine action ids.
func agentSessions(n int, seed uint64) [][]detector.Action {
	rng := rand.New(rand.NewPCG(seed, 9))
	shapes := make([][]detector.Action, 12)
	for i := range shapes {
		s := make([]detector.Action, 4+rng.IntN(11))
		for j := range s {
			s[j] = detector.Action(1 + rng.IntN(40))
		}
		shapes[i] = s
	}
	out := make([][]detector.Action, n)
	for i := range out {
		s := slices.Clone(shapes[rng.IntN(len(shapes))])
		switch rng.IntN(6) {
		case 0:
			j := rng.IntN(len(s) - 1)
			s[j], s[j+1] = s[j+1], s[j]
		case 1:
			j := rng.IntN(len(s))
			s = slices.Delete(s, j, j+1)
		}
		out[i] = s
	}
	return out
}

func benchSeqModel(b *testing.B, alg string) detector.SequenceModel {
	var (
		m   detector.SequenceModel
		err error
	)
	if alg == "lstm" {
		m, err = sequence.NewLSTM(sequence.DefaultLSTMConfig())
	} else {
		m, err = sequence.NewNGram(sequence.DefaultNGramConfig())
	}
	if err != nil {
		b.Fatal(err)
	}
	return m
}

// BenchmarkBaselineFit measures fitting a fresh model (default config) on a baseline of 200
// and 2,000 sessions, as the node does off its telemetry path once the baseline is complete.
func BenchmarkBaselineFit(b *testing.B) {
	for _, alg := range []string{"ngram", "lstm"} {
		for _, n := range []int{200, 2000} {
			ss := agentSessions(n, 1)
			b.Run(fmt.Sprintf("%s/%d", alg, n), func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					if err := benchSeqModel(b, alg).Fit(ss); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkSequenceScore measures one Event through the engine after the fit (1,000 agents,
// each in its own session of the 2,000-session baseline's shapes): the engine without a
// sequence model (baseline), with the fitted n-gram, with the fitted LSTM, and the LSTM's
// fine-tuning on one session (an operator's false positive).
func BenchmarkSequenceScore(b *testing.B) {
	ss := agentSessions(2000, 1)
	test := agentSessions(4000, 2)
	names := make([]string, 42)
	for i := range names {
		names[i] = fmt.Sprintf("tool:%02d", i)
	}
	var rs []Record
	at := int64(0)
	for i, s := range test {
		agent := fmt.Sprintf("agent-%04d", i%1000)
		for _, a := range s {
			at += int64(time.Millisecond)
			rs = append(rs, Record{Agent: agent, Time: at, Kind: Event, Action: names[a], Session: fmt.Sprint(i)})
		}
	}
	for _, alg := range []string{"none", "ngram", "lstm"} {
		b.Run(alg, func(b *testing.B) {
			cfg := DefaultConfig()
			cfg.Vector = nil
			if alg != "none" {
				cfg.Sequence = benchSeqModel(b, alg)
			}
			e, err := New(cfg)
			if err != nil {
				b.Fatal(err)
			}
			for _, n := range names {
				e.vocab.Add(n) // tool:NN has id NN+1, as in the fitted sessions' shapes
			}
			if alg != "none" {
				m := benchSeqModel(b, alg)
				if err := m.Fit(ss); err != nil {
					b.Fatal(err)
				}
				e.phase, e.base.taken = PhaseFitting, true
				if err := e.FitDone(m); err != nil {
					b.Fatal(err)
				}
			}
			var out []Alert
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				r := rs[i%len(rs)]
				r.Time += int64(i/len(rs)) * at
				out, _ = e.Observe(r, out[:0])
			}
		})
	}
	b.Run("lstm-feedback", func(b *testing.B) {
		m := benchSeqModel(b, "lstm").(*sequence.LSTM)
		if err := m.Fit(ss); err != nil {
			b.Fatal(err)
		}
		for i := 0; i < b.N; i++ {
			if err := m.Feedback(test[i%len(test)]); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkSequenceModelMemory reports the heap a fitted shared model takes (default config,
// the 2,000-session baseline), against which one model per agent would be multiplied.
func BenchmarkSequenceModelMemory(b *testing.B) {
	ss := agentSessions(2000, 1)
	for _, alg := range []string{"ngram", "lstm"} {
		b.Run(alg, func(b *testing.B) {
			var bytes uint64
			for i := 0; i < b.N; i++ {
				before := heap()
				m := benchSeqModel(b, alg)
				if err := m.Fit(ss); err != nil {
					b.Fatal(err)
				}
				bytes = heap() - before
				runtime.KeepAlive(m)
			}
			b.ReportMetric(float64(bytes)/1024, "KiB/model")
		})
	}
}
