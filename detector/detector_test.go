package detector

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestVocabulary(t *testing.T) {
	v, err := NewVocabulary(VocabularyConfig{MaxSize: 2, MaxLen: 4})
	if err != nil {
		t.Fatal(err)
	}
	if a := v.Add("read"); a != 1 {
		t.Fatalf("first id = %d", a)
	}
	if a := v.Add("write"); a != 2 { // cut to "writ"
		t.Fatalf("second id = %d", a)
	}
	if a := v.Add("exec"); a != Unseen {
		t.Fatalf("over MaxSize got %d, want Unseen", a)
	}
	if v.Lookup("writable") != 2 || v.Lookup("nope") != Unseen || v.Name(2) != "writ" || v.Name(9) != "" {
		t.Fatal("lookup/name wrong")
	}
	data, _ := v.MarshalBinary()
	w, _ := NewVocabulary(VocabularyConfig{MaxSize: 2, MaxLen: 4})
	if err := w.UnmarshalBinary(data); err != nil {
		t.Fatal(err)
	}
	if w.Lookup("read") != 1 || w.Lookup("writ") != 2 || w.Add("exec") != Unseen {
		t.Fatal("restored vocabulary differs")
	}
	small, _ := NewVocabulary(VocabularyConfig{MaxSize: 1, MaxLen: 4})
	if err := small.UnmarshalBinary(data); !errors.Is(err, ErrCheckpoint) || !strings.Contains(err.Error(), "MaxSize") {
		t.Fatalf("oversized checkpoint: %v", err)
	}
	if small.Len() != 0 {
		t.Fatal("failed restore changed the vocabulary")
	}
}

func TestVocabularyConfigRefused(t *testing.T) {
	for name, cfg := range map[string]VocabularyConfig{
		"MaxSize": {MaxSize: 0, MaxLen: 4},
		"MaxLen":  {MaxSize: 4, MaxLen: 0},
	} {
		if _, err := NewVocabulary(cfg); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
}

func TestCalibratorBodyAndTail(t *testing.T) {
	c, _ := NewCalibrator(CalibratorConfig{Window: 100, MinCount: 10, TailQuantile: 0.9})
	if c.Score(5) != 0 {
		t.Fatal("scored during warm-up")
	}
	for i := range 99 {
		c.Add(float64(i % 50)) // uniform 0..49
	}
	mid := c.Peek(25)
	if mid < 0.4 || mid > 0.6 {
		t.Fatalf("median value calibrates to %v", mid)
	}
	near, far := c.Peek(50), c.Peek(500)
	if !(near > 0.9 && far > near && far > 0.999) {
		t.Fatalf("tail: 50→%v 500→%v", near, far)
	}
	if c.Peek(-1) != 0 {
		t.Fatalf("below everything = %v", c.Peek(-1))
	}
}

func TestCalibratorFlatThenSpike(t *testing.T) {
	c, _ := NewCalibrator(DefaultCalibratorConfig())
	for range 200 {
		c.Score(1)
	}
	if s := c.Peek(1); s != 0.5 {
		t.Fatalf("flat value = %v, want 0.5", s)
	}
	if s := c.Peek(2); s < 0.99 {
		t.Fatalf("spike after flat = %v", s)
	}
}

func TestCalibratorCheckpoint(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	c, _ := NewCalibrator(DefaultCalibratorConfig())
	for range 300 {
		c.Score(rng.NormFloat64())
	}
	data, _ := c.MarshalBinary()
	d, _ := NewCalibrator(DefaultCalibratorConfig())
	if err := d.UnmarshalBinary(data); err != nil {
		t.Fatal(err)
	}
	for range 500 {
		x := rng.ExpFloat64()
		if a, b := c.Score(x), d.Score(x); a != b {
			t.Fatalf("restored calibrator scores %v, original %v", b, a)
		}
	}
	again, _ := d.MarshalBinary()
	now, _ := c.MarshalBinary()
	if !bytes.Equal(again, now) {
		t.Fatal("checkpoints differ after identical input")
	}
}

func TestCalibratorConfigRefused(t *testing.T) {
	for field, cfg := range map[string]CalibratorConfig{
		"Window":       {Window: 2, MinCount: 1, TailQuantile: 0.9},
		"MinCount":     {Window: 8, MinCount: 9, TailQuantile: 0.9},
		"TailQuantile": {Window: 8, MinCount: 1, TailQuantile: 1},
	} {
		if _, err := NewCalibrator(cfg); err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("%s: err = %v", field, err)
		}
	}
}

func FuzzVocabularyCheckpoint(f *testing.F) {
	v, _ := NewVocabulary(DefaultVocabularyConfig())
	v.Add("a")
	v.Add("bb")
	seed, _ := v.MarshalBinary()
	f.Add(seed)
	f.Fuzz(func(t *testing.T, data []byte) {
		w, _ := NewVocabulary(VocabularyConfig{MaxSize: 16, MaxLen: 16})
		if err := w.UnmarshalBinary(data); err != nil {
			return
		}
		again, _ := w.MarshalBinary()
		if !bytes.Equal(again, data) {
			t.Fatalf("accepted checkpoint does not round-trip")
		}
	})
}

func FuzzCalibratorCheckpoint(f *testing.F) {
	c, _ := NewCalibrator(CalibratorConfig{Window: 8, MinCount: 1, TailQuantile: 0.9})
	c.Score(1)
	c.Score(2)
	seed, _ := c.MarshalBinary()
	f.Add(seed)
	f.Fuzz(func(t *testing.T, data []byte) {
		d, _ := NewCalibrator(CalibratorConfig{Window: 8, MinCount: 1, TailQuantile: 0.9})
		if err := d.UnmarshalBinary(data); err != nil {
			return
		}
		s := d.Score(3)
		if s < 0 || s > 1 {
			t.Fatalf("score %v out of [0,1]", s)
		}
	})
}
