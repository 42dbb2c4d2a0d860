package metric

import (
	"runtime"
	"testing"

	"github.com/vigil-mesh/vigil/detector"
)

// benchStream is the seasonal test stream, cycled.
func benchStream(b *testing.B) stream { return loadStream(b, "seasonal.csv") }

// BenchmarkBaselineSum is the floor: reading the same points and summing them.
func BenchmarkBaselineSum(b *testing.B) {
	s := benchStream(b)
	sum := 0.0
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		j := i % len(s.v)
		sum += s.v[j] + float64(s.t[j]&1)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "points/s")
	if sum == 0 {
		b.Fatal("sum")
	}
}

func benchModel(b *testing.B, m detector.MetricModel) {
	s := benchStream(b)
	sum := 0.0
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		j := i % len(s.v)
		sum += m.Observe(s.t[j], s.v[j])
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "points/s")
	_ = sum
}

func BenchmarkEWMA(b *testing.B) {
	m, _ := NewEWMA(DefaultEWMAConfig())
	benchModel(b, m)
}

func BenchmarkGaussian(b *testing.B) {
	m, _ := NewGaussian(DefaultGaussianConfig())
	benchModel(b, m)
}

func BenchmarkGaussianNAB(b *testing.B) {
	m, _ := NewGaussian(NABGaussianConfig())
	benchModel(b, m)
}

// BenchmarkCAD runs CAD over the seasonal stream with the range [0, 100]; its cost grows with
// what it has learned, so this is one figure among many (nabbench reports the corpus rate).
func BenchmarkCAD(b *testing.B) {
	cfg := DefaultCADConfig()
	cfg.RestPeriod = 60
	m, _ := NewCAD(cfg)
	benchModel(b, m)
}

// BenchmarkMemory reports the heap bytes one model instance holds after 3,000 points of the
// seasonal stream (bytes per agent per model).
func BenchmarkMemory(b *testing.B) {
	s := benchStream(b)
	for _, mc := range models {
		b.Run(mc.name, func(b *testing.B) {
			const n = 50
			var before, after runtime.MemStats
			keep := make([]detector.MetricModel, n)
			runtime.GC()
			runtime.ReadMemStats(&before)
			for k := range keep {
				m, _ := mc.new()
				for i := range s.v {
					m.Observe(s.t[i], s.v[i])
				}
				keep[k] = m
			}
			runtime.GC()
			runtime.ReadMemStats(&after)
			b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "bytes/model")
			runtime.KeepAlive(keep)
			for i := 0; i < b.N; i++ {
			}
		})
	}
}
