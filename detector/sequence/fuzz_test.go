package sequence

import (
	"bytes"
	"errors"
	"testing"

	"github.com/vigil-mesh/vigil/detector"
)

// fuzzCheckpoint feeds arbitrary bytes to a model's decoder: it must refuse them with
// ErrCheckpoint or accept them; an accepted checkpoint re-encodes to the same bytes and scores
// without panicking.
func fuzzCheckpoint(f *testing.F, fresh func() detector.SequenceModel, seeds ...[]byte) {
	for _, s := range seeds {
		f.Add(s)
		if len(s) > 8 {
			f.Add(s[:len(s)/2])
			c := bytes.Clone(s)
			c[len(c)/3] ^= 0xff
			f.Add(c)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m := fresh()
		err := m.UnmarshalBinary(b)
		if err != nil {
			if !errors.Is(err, ErrCheckpoint) {
				t.Fatalf("error not ErrCheckpoint: %v", err)
			}
			return
		}
		out, err := m.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("accepted checkpoint re-encodes differently")
		}
		s := m.Start()
		for _, a := range []detector.Action{0, 1, 2, 3, 7, 1 << 31} {
			if v := s.Observe(a); !(v >= 0 && v <= 1) {
				t.Fatalf("score %v out of [0,1]", v)
			}
		}
		if v := s.(Ender).End(); !(v >= 0 && v <= 1) {
			t.Fatalf("end score %v out of [0,1]", v)
		}
	})
}

func FuzzNGramCheckpoint(f *testing.F) {
	cfg := DefaultNGramConfig()
	cfg.MaxContexts = 4096
	fresh := func() detector.SequenceModel { m, _ := NewNGram(cfg); return m }
	m := fresh()
	empty, _ := m.MarshalBinary()
	_ = m.Fit(corpus(20, 1))
	full, _ := m.MarshalBinary()
	fuzzCheckpoint(f, fresh, empty, full)
}

func FuzzLSTMCheckpoint(f *testing.F) {
	cfg := DefaultLSTMConfig()
	cfg.Hidden, cfg.Epochs, cfg.MaxVocab = 2, 1, 16
	fresh := func() detector.SequenceModel { m, _ := NewLSTM(cfg); return m }
	m := fresh()
	empty, _ := m.MarshalBinary()
	_ = m.Fit([][]detector.Action{{1, 2, 3}})
	full, _ := m.MarshalBinary()
	fuzzCheckpoint(f, fresh, empty, full)
}

func FuzzCoverCheckpoint(f *testing.F) {
	cfg := DefaultCoverConfig()
	cfg.MaxActions = 4096
	fresh := func() detector.SequenceModel { m, _ := NewCover(cfg); return m }
	m := fresh()
	empty, _ := m.MarshalBinary()
	_ = m.Fit(append(corpus(20, 1), []detector.Action{0, 3, 1 << 31}))
	full, _ := m.MarshalBinary()
	fuzzCheckpoint(f, fresh, empty, full)
}
