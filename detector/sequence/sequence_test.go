package sequence

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/vigil-mesh/vigil/detector"
)

// corpus returns normal sessions of a small grammar: 1 2 3 (4 5){1..4} 6 7, and sometimes
// 1 2 8 3 … (a second opening), drawn from a seeded source.
func corpus(n int, seed uint64) [][]detector.Action {
	r := rand.New(rand.NewPCG(seed, 1))
	out := make([][]detector.Action, n)
	for i := range out {
		s := []detector.Action{1, 2, 3}
		if r.IntN(4) == 0 {
			s = []detector.Action{1, 2, 8, 3}
		}
		for k := 1 + r.IntN(4); k > 0; k-- {
			s = append(s, 4, 5)
		}
		out[i] = append(s, 6, 7)
	}
	return out
}

// impl is one model under the conformance suite.
type impl struct {
	name string
	make func(t testing.TB) detector.SequenceModel
}

func testNGram(t testing.TB) detector.SequenceModel {
	c := DefaultNGramConfig()
	c.TopG = 2
	m, err := NewNGram(c)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func testLSTM(t testing.TB) detector.SequenceModel {
	c := DefaultLSTMConfig()
	c.Hidden, c.TopG, c.Epochs, c.BatchSize = 16, 2, 40, 1
	m, err := NewLSTM(c)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

var impls = []impl{{"ngram", testNGram}, {"lstm", testLSTM}}

// allImpls adds the models whose per-action scores follow other rules (Cover scores whole
// sessions) for the tests that hold for every model: checkpoints, allocations, untrained.
var allImpls = append(slices.Clip(impls), impl{"cover", testCover})

func scores(m detector.SequenceModel, s []detector.Action, end bool) []float64 {
	sess := m.Start()
	out := make([]float64, 0, len(s)+1)
	for _, a := range s {
		out = append(out, sess.Observe(a))
	}
	if end {
		out = append(out, sess.(Ender).End())
	}
	return out
}

func fitted(t *testing.T, im impl) detector.SequenceModel {
	m := im.make(t)
	if err := m.Fit(corpus(300, 1)); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestKnownLowForeignHigh: every action of a normal session (and its end) is a candidate; a
// foreign action, an out-of-order pair, and a premature end are not.
func TestKnownLowForeignHigh(t *testing.T) {
	for _, im := range impls {
		t.Run(im.name, func(t *testing.T) {
			m := fitted(t, im)
			for _, s := range corpus(20, 2) {
				for i, v := range scores(m, s, true) {
					if v < 0 || v >= 0.5 {
						t.Fatalf("normal session %v: step %d scored %v, want [0,0.5)", s, i, v)
					}
				}
			}
			cases := []struct {
				name string
				s    []detector.Action
				at   int // index of the step that must score ≥ 0.5 (len(s) = the end)
				want float64
			}{
				{"foreign action", []detector.Action{1, 2, 99}, 2, 1},
				{"action id 0", []detector.Action{1, 0}, 1, 1},
				{"out-of-order pair", []detector.Action{1, 3, 2}, 1, 0.5},
				{"swapped pair later", []detector.Action{1, 2, 3, 5, 4}, 3, 0.5},
				{"premature end", []detector.Action{1, 2, 3, 4}, 4, 0.5},
			}
			for _, c := range cases {
				got := scores(m, c.s, true)
				if got[c.at] < c.want || got[c.at] > 1 {
					t.Errorf("%s %v: step %d scored %v, want ≥ %v (all: %v)", c.name, c.s, c.at, got[c.at], c.want, got)
				}
			}
		})
	}
}

// TestCheckpointRestoresScores: a restored model scores exactly as the original, including
// sessions with foreign actions.
func TestCheckpointRestoresScores(t *testing.T) {
	for _, im := range allImpls {
		t.Run(im.name, func(t *testing.T) {
			m := fitted(t, im)
			b, err := m.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			m2 := im.make(t)
			if err := m2.UnmarshalBinary(b); err != nil {
				t.Fatal(err)
			}
			b2, _ := m2.MarshalBinary()
			if !bytes.Equal(b, b2) {
				t.Fatal("checkpoint of the restored model differs")
			}
			r := rand.New(rand.NewPCG(5, 5))
			for i := 0; i < 50; i++ {
				s := make([]detector.Action, 1+r.IntN(30))
				for j := range s {
					s[j] = detector.Action(r.IntN(11))
				}
				if i%2 == 0 {
					s = corpus(1, uint64(i))[0]
				}
				a, b := scores(m, s, true), scores(m2, s, true)
				for j := range a {
					if a[j] != b[j] {
						t.Fatalf("session %v step %d: original %v restored %v", s, j, a[j], b[j])
					}
				}
			}
		})
	}
}

// TestCheckpointRefusesBadInput: every truncation, a flipped magic, trailing bytes and a
// model of another shape are refused, and a refused checkpoint leaves the model as it was.
func TestCheckpointRefusesBadInput(t *testing.T) {
	for _, im := range allImpls {
		t.Run(im.name, func(t *testing.T) {
			m := fitted(t, im)
			good, _ := m.MarshalBinary()
			target := fitted(t, im)
			before, _ := target.MarshalBinary()
			step := max(1, len(good)/500)
			for n := 0; n < len(good); n += step {
				if err := target.UnmarshalBinary(good[:n]); !errors.Is(err, ErrCheckpoint) {
					t.Fatalf("truncated to %d of %d bytes: err %v, want ErrCheckpoint", n, len(good), err)
				}
			}
			bad := append([]byte("XXXX"), good[4:]...)
			if err := target.UnmarshalBinary(bad); !errors.Is(err, ErrCheckpoint) {
				t.Fatalf("bad magic: %v", err)
			}
			if err := target.UnmarshalBinary(append(bytes.Clone(good), 0)); err == nil || !strings.Contains(err.Error(), "trailing") {
				t.Fatalf("trailing byte: %v", err)
			}
			after, _ := target.MarshalBinary()
			if !bytes.Equal(before, after) {
				t.Fatal("a refused checkpoint changed the model")
			}
		})
	}
	// another shape, named in the error
	l, _ := NewLSTM(DefaultLSTMConfig())
	if err := l.Fit(corpus(10, 1)); err != nil {
		t.Fatal(err)
	}
	b, _ := l.MarshalBinary()
	c := DefaultLSTMConfig()
	c.Hidden = 16
	l2, _ := NewLSTM(c)
	if err := l2.UnmarshalBinary(b); !errors.Is(err, ErrCheckpoint) || !strings.Contains(err.Error(), "Hidden") {
		t.Fatalf("Hidden mismatch: %v", err)
	}
	n, _ := NewNGram(DefaultNGramConfig())
	if err := n.Fit(corpus(10, 1)); err != nil {
		t.Fatal(err)
	}
	b, _ = n.MarshalBinary()
	nc := DefaultNGramConfig()
	nc.N = 4
	n2, _ := NewNGram(nc)
	if err := n2.UnmarshalBinary(b); !errors.Is(err, ErrCheckpoint) || !strings.Contains(err.Error(), "N:") {
		t.Fatalf("N mismatch: %v", err)
	}
}

// TestLSTMFitDeterministic: the same Seed (and Workers) gives the same weights bit for bit; a
// different Seed does not.
func TestLSTMFitDeterministic(t *testing.T) {
	train := func(seed uint64, workers int) []byte {
		c := DefaultLSTMConfig()
		c.Hidden, c.Epochs, c.Seed, c.Workers = 8, 3, seed, workers
		m, err := NewLSTM(c)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Fit(corpus(100, 3)); err != nil {
			t.Fatal(err)
		}
		b, _ := m.MarshalBinary()
		return b
	}
	if !bytes.Equal(train(1, 1), train(1, 1)) {
		t.Error("two fits with Seed 1 differ")
	}
	if !bytes.Equal(train(1, 3), train(1, 3)) {
		t.Error("two fits with Seed 1, Workers 3 differ")
	}
	if bytes.Equal(train(1, 1), train(2, 1)) {
		t.Error("Seed 1 and Seed 2 gave the same weights")
	}
}

// TestNGramFitOrderIndependent: counts do not depend on the order sessions arrive in.
func TestNGramFitOrderIndependent(t *testing.T) {
	c := corpus(200, 4)
	a, _ := NewNGram(DefaultNGramConfig())
	b, _ := NewNGram(DefaultNGramConfig())
	_ = a.Fit(c)
	rev := make([][]detector.Action, len(c))
	for i := range c {
		rev[len(c)-1-i] = c[i]
	}
	_ = b.Fit(rev)
	for _, s := range corpus(50, 9) {
		x, y := scores(a, s, true), scores(b, s, true)
		for i := range x {
			if x[i] != y[i] {
				t.Fatalf("%v step %d: %v vs %v", s, i, x[i], y[i])
			}
		}
	}
}

// TestFeedbackLearnsFalsePositive: a session that was flagged scores below 0.5 after Feedback.
func TestFeedbackLearnsFalsePositive(t *testing.T) {
	// (a known action in a new place: a foreign action stays unknown to the LSTM, whose
	// vocabulary is fixed by its first Fit)
	fp := []detector.Action{1, 2, 3, 4, 5, 6, 3, 7}
	for _, im := range impls {
		t.Run(im.name, func(t *testing.T) {
			m := fitted(t, im)
			if Max(scores(m, fp, true)) < 0.5 {
				t.Fatalf("%v not flagged before feedback", fp)
			}
			fb := m.(interface {
				Feedback([]detector.Action) error
			})
			for i := 0; i < 20 && Max(scores(m, fp, true)) >= 0.5; i++ {
				if err := fb.Feedback(fp); err != nil {
					t.Fatal(err)
				}
			}
			if got := scores(m, fp, true); Max(got) >= 0.5 {
				t.Fatalf("still flagged after feedback: %v", got)
			}
			// and a normal session is still normal
			if got := scores(m, corpus(1, 7)[0], true); Max(got) >= 0.5 {
				t.Fatalf("feedback broke a normal session: %v", got)
			}
		})
	}
}

// Max is the largest value.
func Max(v []float64) float64 {
	m := 0.0
	for _, x := range v {
		m = max(m, x)
	}
	return m
}

// TestNGramOnline: with Online set the model learns a new transition from what it observes.
func TestNGramOnline(t *testing.T) {
	c := DefaultNGramConfig()
	c.TopG, c.Online = 2, true
	m, _ := NewNGram(c)
	_ = m.Fit(corpus(100, 1))
	s := []detector.Action{1, 2, 3, 4, 5, 6, 9}
	if v := scores(m, s, false)[6]; v < 0.5 {
		t.Fatalf("9 after 6 scored %v before it was seen", v)
	}
	for i := 0; i < 3; i++ {
		scores(m, s, false)
	}
	if v := scores(m, s, false)[6]; v >= 0.5 {
		t.Fatalf("9 after 6 scored %v after it was seen online", v)
	}
	off, _ := NewNGram(DefaultNGramConfig())
	_ = off.Fit(corpus(100, 1))
	b1, _ := off.MarshalBinary()
	scores(off, s, true)
	b2, _ := off.MarshalBinary()
	if !bytes.Equal(b1, b2) {
		t.Fatal("a model without Online changed while scoring")
	}
}

// TestObserveAllocatesNothing: the scoring path is allocation-free once a session exists.
func TestObserveAllocatesNothing(t *testing.T) {
	for _, im := range allImpls {
		t.Run(im.name, func(t *testing.T) {
			m := fitted(t, im)
			s := corpus(1, 11)[0]
			sess := m.Start()
			for _, a := range s {
				sess.Observe(a)
			}
			i := 0
			allocs := testing.AllocsPerRun(1000, func() {
				sess.Observe(s[i%len(s)])
				i++
			})
			if allocs != 0 {
				t.Fatalf("%v allocations per Observe", allocs)
			}
		})
	}
}

// TestUntrained: an untrained model scores everything 1 and checkpoints.
func TestUntrained(t *testing.T) {
	for _, im := range allImpls {
		m := im.make(t)
		if v := scores(m, []detector.Action{1, 2}, true); v[0] != 1 || v[1] != 1 || v[2] != 1 {
			t.Errorf("%s untrained: %v", im.name, v)
		}
		b, _ := m.MarshalBinary()
		if err := im.make(t).UnmarshalBinary(b); err != nil {
			t.Errorf("%s untrained checkpoint: %v", im.name, err)
		}
	}
}

// TestConfigValidate: each bad field is refused by name, and New refuses it too.
func TestConfigValidate(t *testing.T) {
	ng := []struct {
		field string
		mod   func(*NGramConfig)
	}{
		{"N", func(c *NGramConfig) { c.N = 0 }},
		{"N", func(c *NGramConfig) { c.N = 17 }},
		{"TopG", func(c *NGramConfig) { c.TopG = 0 }},
		{"Alpha", func(c *NGramConfig) { c.Alpha = 0 }},
		{"MaxContexts", func(c *NGramConfig) { c.MaxContexts = 0 }},
	}
	for _, c := range ng {
		cfg := DefaultNGramConfig()
		c.mod(&cfg)
		_, err := NewNGram(cfg)
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), c.field+"=") {
			t.Errorf("ngram %s: %v", c.field, err)
		}
	}
	ls := []struct {
		field string
		mod   func(*LSTMConfig)
	}{
		{"Hidden", func(c *LSTMConfig) { c.Hidden = 0 }},
		{"Layers", func(c *LSTMConfig) { c.Layers = 5 }},
		{"TopG", func(c *LSTMConfig) { c.TopG = 0 }},
		{"MaxVocab", func(c *LSTMConfig) { c.MaxVocab = 0 }},
		{"BPTT", func(c *LSTMConfig) { c.BPTT = 0 }},
		{"Epochs", func(c *LSTMConfig) { c.Epochs = 0 }},
		{"BatchSize", func(c *LSTMConfig) { c.BatchSize = 0 }},
		{"LearnRate", func(c *LSTMConfig) { c.LearnRate = 2 }},
		{"ClipNorm", func(c *LSTMConfig) { c.ClipNorm = 0 }},
		{"Workers", func(c *LSTMConfig) { c.Workers = 0 }},
		{"FeedbackSteps", func(c *LSTMConfig) { c.FeedbackSteps = 0 }},
	}
	for _, c := range ls {
		cfg := DefaultLSTMConfig()
		c.mod(&cfg)
		_, err := NewLSTM(cfg)
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), c.field+"=") {
			t.Errorf("lstm %s: %v", c.field, err)
		}
	}
	if err := DefaultNGramConfig().Validate(); err != nil {
		t.Error(err)
	}
	if err := DefaultLSTMConfig().Validate(); err != nil {
		t.Error(err)
	}
}

// TestLimits: a vocabulary or context count over its limit is refused and changes nothing.
func TestLimits(t *testing.T) {
	c := DefaultLSTMConfig()
	c.MaxVocab = 5
	m, _ := NewLSTM(c)
	if err := m.Fit(corpus(10, 1)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("vocabulary over MaxVocab: %v", err)
	}
	if m.Vocabulary() != 0 {
		t.Fatal("refused Fit left a vocabulary")
	}
	nc := DefaultNGramConfig()
	nc.MaxContexts = 5
	n, _ := NewNGram(nc)
	if err := n.Fit(corpus(10, 1)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("contexts over MaxContexts: %v", err)
	}
	if n.Contexts() != 1 {
		t.Fatalf("refused Fit left %d contexts", n.Contexts())
	}
}

// TestLSTMSessionAcrossRestore: a session started before the model is restored to a smaller
// vocabulary keeps working (its previous token is treated as unknown).
func TestLSTMSessionAcrossRestore(t *testing.T) {
	c := DefaultLSTMConfig()
	c.Hidden, c.Epochs = 4, 1
	big, _ := NewLSTM(c)
	_ = big.Fit([][]detector.Action{{1, 2, 3, 4, 5, 6, 7, 8, 9}})
	small, _ := NewLSTM(c)
	_ = small.Fit([][]detector.Action{{1, 2}})
	cp, _ := small.MarshalBinary()
	s := big.Start()
	for _, a := range []detector.Action{1, 9, 9} {
		s.Observe(a)
	}
	if err := big.UnmarshalBinary(cp); err != nil {
		t.Fatal(err)
	}
	if v := s.Observe(1); !(v >= 0 && v <= 1) {
		t.Fatalf("score %v", v)
	}
}

// TestLSTMFeedbackAfterRestore: the checkpoint carries the optimiser's state, so feedback and
// further training after a restore give exactly what they give on the original.
func TestLSTMFeedbackAfterRestore(t *testing.T) {
	a := fitted(t, impls[1]).(*LSTM)
	cp, _ := a.MarshalBinary()
	b := testLSTM(t).(*LSTM)
	if err := b.UnmarshalBinary(cp); err != nil {
		t.Fatal(err)
	}
	fp := []detector.Action{1, 2, 3, 4, 5, 6, 3, 7}
	for _, m := range []*LSTM{a, b} {
		if err := m.Feedback(fp); err != nil {
			t.Fatal(err)
		}
		if err := m.Fit(corpus(20, 9)); err != nil {
			t.Fatal(err)
		}
	}
	x, _ := a.MarshalBinary()
	y, _ := b.MarshalBinary()
	if !bytes.Equal(x, y) {
		t.Fatal("feedback and training after a restore diverge from the original")
	}
}
