package metric

import (
	"testing"
)

// FuzzUnmarshalBinary feeds arbitrary bytes (seeded with real checkpoints) to every model's
// UnmarshalBinary: it must never panic, a refused checkpoint must leave the model unchanged, and
// an accepted one must leave a model that scores in [0,1] without panicking.
func FuzzUnmarshalBinary(f *testing.F) {
	s := loadStream(f, "seasonal.csv")
	all := append(models, liveModels...)
	for k, mc := range all {
		m, err := mc.new()
		if err != nil {
			f.Fatal(err)
		}
		for i := range 400 {
			m.Observe(s.t[i], s.v[i])
		}
		snap, err := m.MarshalBinary()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(uint8(k), snap)
	}
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		mc := all[int(which)%len(all)]
		m, _ := mc.new()
		for i := range 350 {
			m.Observe(s.t[i], s.v[i])
		}
		before, _ := m.MarshalBinary()
		if err := m.UnmarshalBinary(data); err != nil {
			after, _ := m.MarshalBinary()
			if string(before) != string(after) {
				t.Fatalf("%s: refused checkpoint changed the model: %v", mc.name, err)
			}
			return
		}
		for i := 350; i < 450; i++ {
			if x := m.Observe(s.t[i], s.v[i]); !(x >= 0 && x <= 1) {
				t.Fatalf("%s: score %v after a restored checkpoint", mc.name, x)
			}
		}
	})
}
