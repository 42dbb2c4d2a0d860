// Package seqbench measures the sequence models of detector/sequence on public data: HDFS log-key
// sessions (DeepLog's benchmark) and ADFA-LD system-call traces. It reads the data (from
// ../shared/data beside the repository; never copied into it), runs the protocols of that data's
// README, and computes precision/recall/F1, ROC AUC and detection rate at a fixed false-positive
// rate. It also holds trace-level scorers to compare with them (trace.go: k-nearest neighbours
// over bags of n-grams, a local-outlier ratio, the fraction of unseen n-grams) and ways to
// combine scorers (RankAverage, ECDF with MeanOf).
//
//	dir, err := seqbench.DataDir(".")            // ErrNoData when the data is absent
//	normal, _ := seqbench.ReadSessions(dir + "/hdfs/hdfs_train")
//	res, _ := seqbench.HDFS(newModel, normal, abnormal, 5, 0.5, true)
//	knn, _ := seqbench.NewKNN(seqbench.BagConfig{Orders: []int{1, 2, 3}, Weight: "count", IDF: true, Unseen: true}, adfa.Train)
//	r := seqbench.ScoreADFA(adfa, func(s []detector.Action) float64 { return knn.Distance(s, 1) }).Result()
//
// The benchmark tests run reduced by default (a few seconds each) and in full with
// VIGIL_BENCH_SEQ=1 (make bench-detect-seq); both skip when the data is absent.
//
// Invariants: readers cap every line and zip member before allocating for it and report bad
// input with the file and line (or zip member) and field. Scores are computed through the
// detector.SequenceModel contract only (plus sequence.Ender for session ends).
package seqbench
