package nab

import "testing"

// BenchmarkEvaluate is one threshold optimisation and scoring of the whole corpus (numenta's
// published scores, standard profile).
func BenchmarkEvaluate(b *testing.B) {
	c, root := loadCorpus(b)
	scores := referenceScores(b, c, root, "numenta")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := Evaluate(c, scores, Profiles()[0]); err != nil {
			b.Fatal(err)
		}
	}
}
