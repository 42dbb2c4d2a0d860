// Package nab scores anomaly detectors on the Numenta Anomaly Benchmark (NAB v1.1) exactly as
// NAB's own Python scorer does (nab/sweeper.py, nab/optimizer.py, nab/scorer.py and the
// normalisation in nab/runner.py), so that a Vigil model's figure can be put beside NAB's
// published scoreboard.
//
// Scoring, in NAB's words and in this package:
//   - each file has labelled anomaly windows (labels/combined_windows.json);
//   - the first 15% of each file, at most 750 rows, is a probationary period that is not scored;
//   - inside a window only the earliest detection counts, rewarded along a scaled sigmoid of its
//     position (earlier is better, at most tpWeight); a window without detection costs fnWeight;
//   - a detection outside every window costs fpWeight times a scaled sigmoid of its distance past
//     the previous window (fpWeight in full before the first window);
//   - one threshold per detector and profile is optimised over the whole corpus by sweeping every
//     distinct score from the highest down (a point is a detection when score >= threshold);
//   - the corpus score is normalised 100·(raw − null)/(perfect − null), null being the score of a
//     detector that detects nothing and perfect numWindows·tpWeight.
//
// Usage:
//
//	c, err := nab.LoadCorpus("../shared/data/nab")        // data + windows
//	profiles, err := nab.LoadProfiles("../shared/data/nab/config/profiles.json")
//	scores := [][]float64{...}                              // one score per row, per c.Files
//	res, err := nab.Evaluate(c, scores, profiles[0])        // optimised threshold, per-file rows
//	fmt.Println(res.Normalized)
//
// Run a model over the corpus with cmd/nabbench, which writes NAB's results layout and prints
// the three profiles beside the published scoreboard.
//
// Invariants: the scorer is a pure function of the corpus, the scores and the profile; it reads
// no clock and starts no goroutine. Files are processed in the corpus's sorted order, so results
// are reproducible bit for bit.
package nab
