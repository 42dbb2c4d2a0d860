package policy

import (
	"testing"

	"go.yaml.in/yaml/v3"
)

// BenchmarkParse is what every replica pays per applied policy document; the baseline is a
// plain yaml.Unmarshal of the same bytes into a generic map (no checks).
func BenchmarkParse(b *testing.B) {
	doc := []byte(full)
	b.Run("policy.Parse", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(doc)))
		for b.Loop() {
			if _, err := Parse(doc); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("baseline=yaml.Unmarshal", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(doc)))
		for b.Loop() {
			var m map[string]any
			if err := yaml.Unmarshal(doc, &m); err != nil {
				b.Fatal(err)
			}
		}
	})
}
