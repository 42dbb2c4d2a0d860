package sequence

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/vigil-mesh/vigil/detector"
)

// randomSessions draws n sessions of actions 1..vocab, each following a random successor table
// (three likely successors per action) so that models have structure to learn.
func randomSessions(n, vocab int, seed uint64) [][]detector.Action {
	r := rand.New(rand.NewPCG(seed, 2))
	succ := make([][3]detector.Action, vocab+1)
	for i := range succ {
		for j := range succ[i] {
			succ[i][j] = detector.Action(1 + r.IntN(vocab))
		}
	}
	out := make([][]detector.Action, n)
	for i := range out {
		s := make([]detector.Action, 20+r.IntN(40))
		a := detector.Action(1 + r.IntN(vocab))
		for j := range s {
			s[j] = a
			if r.IntN(10) == 0 {
				a = detector.Action(1 + r.IntN(vocab))
			} else {
				a = succ[a][r.IntN(3)]
			}
		}
		out[i] = s
	}
	return out
}

// bigramSession is the trivial baseline: a table lookup of "was this pair seen in training".
type bigramSession struct {
	seen []bool
	v    int
	prev int
}

func (s *bigramSession) Observe(a detector.Action) float64 {
	i := int(a)
	if i >= s.v {
		i = 0
	}
	hit := s.seen[s.prev*s.v+i]
	s.prev = i
	if hit {
		return 0
	}
	return 1
}

type benchCase struct {
	name  string
	vocab int
	model func(b *testing.B, train [][]detector.Action) detector.SequenceModel
}

func lstmCase(h, l int) func(*testing.B, [][]detector.Action) detector.SequenceModel {
	return func(b *testing.B, train [][]detector.Action) detector.SequenceModel {
		c := DefaultLSTMConfig()
		c.Hidden, c.Layers, c.Epochs = h, l, 1
		m, err := NewLSTM(c)
		if err != nil {
			b.Fatal(err)
		}
		if err := m.Fit(train); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(m.Params()), "params")
		return m
	}
}

func ngramCase(n int) func(*testing.B, [][]detector.Action) detector.SequenceModel {
	return func(b *testing.B, train [][]detector.Action) detector.SequenceModel {
		c := DefaultNGramConfig()
		c.N = n
		m, err := NewNGram(c)
		if err != nil {
			b.Fatal(err)
		}
		if err := m.Fit(train); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(m.Contexts()), "contexts")
		return m
	}
}

func coverCase(b *testing.B, train [][]detector.Action) detector.SequenceModel {
	m, err := NewCover(DefaultCoverConfig())
	if err != nil {
		b.Fatal(err)
	}
	if err := m.Fit(train); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(len(m.idx.sa)), "indexed")
	return m
}

func benchCases() []benchCase {
	var cs []benchCase
	for _, v := range []int{28, 175} { // HDFS log keys; ADFA-LD system calls
		cs = append(cs,
			benchCase{fmt.Sprintf("baseline-bigram/V=%d", v), v, nil},
			benchCase{fmt.Sprintf("ngram-N3/V=%d", v), v, ngramCase(3)},
			benchCase{fmt.Sprintf("ngram-N5/V=%d", v), v, ngramCase(5)},
			benchCase{fmt.Sprintf("lstm-H32-L1/V=%d", v), v, lstmCase(32, 1)},
			benchCase{fmt.Sprintf("lstm-H64-L1/V=%d", v), v, lstmCase(64, 1)},
			benchCase{fmt.Sprintf("lstm-H64-L2/V=%d", v), v, lstmCase(64, 2)},
			benchCase{fmt.Sprintf("cover/V=%d", v), v, coverCase},
		)
	}
	return cs
}

// BenchmarkObserve measures the scoring path: one Observe per action, state carried forward,
// over held-out sessions of the same generator. The baseline is a seen-bigram table lookup.
// Reported: actions/s on one goroutine.
func BenchmarkObserve(b *testing.B) {
	for _, bc := range benchCases() {
		b.Run(bc.name, func(b *testing.B) {
			train := randomSessions(300, bc.vocab, 1)
			test := randomSessions(50, bc.vocab, 2)
			var start func() detector.Session
			if bc.model == nil {
				v := bc.vocab + 1
				seen := make([]bool, v*v)
				for _, s := range train {
					p := 0
					for _, a := range s {
						seen[p*v+int(a)] = true
						p = int(a)
					}
				}
				start = func() detector.Session { return &bigramSession{seen: seen, v: v} }
			} else {
				m := bc.model(b, train)
				start = m.Start
			}
			sess := start()
			si, ai := 0, 0
			var sink float64
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				s := test[si]
				sink += sess.Observe(s[ai])
				ai++
				if ai == len(s) {
					ai = 0
					si = (si + 1) % len(test)
					sess = start()
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "actions/s")
			_ = sink
		})
	}
}

// BenchmarkStart measures a session's memory (B/op is the state one session holds).
func BenchmarkStart(b *testing.B) {
	for _, bc := range benchCases() {
		if bc.model == nil {
			continue
		}
		b.Run(bc.name, func(b *testing.B) {
			m := bc.model(b, randomSessions(100, bc.vocab, 1))
			b.ReportAllocs()
			b.ResetTimer()
			var keep detector.Session
			for i := 0; i < b.N; i++ {
				keep = m.Start()
			}
			_ = keep
		})
	}
}
