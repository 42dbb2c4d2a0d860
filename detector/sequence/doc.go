// Package sequence holds Vigil's sequence models of an agent's actions: an n-gram model
// (NGram, "ngram"), a DeepLog-style LSTM (LSTM, "lstm") and a sequence-covering model (Cover,
// "cover"). All implement detector.SequenceModel: Fit learns from normal sessions, Start
// begins a session, and Session.Observe scores each next action in [0,1] carrying the
// session's state forward (one step per action). Their sessions also implement Ender, which
// scores the end of a session.
//
// NGram and LSTM judge each next action (the top-g rule below). Cover judges whole sessions:
// how many stretches copied from training sessions it takes to cover the session, calibrated
// against held-out training sessions; its End is the session's verdict and Observe a running
// estimate of it.
//
//	m, err := sequence.NewLSTM(sequence.DefaultLSTMConfig())
//	if err != nil { … }
//	if err := m.Fit(normalSessions); err != nil { … }
//	s := m.Start()
//	for _, a := range actions {
//		if s.Observe(a) >= 0.5 { … } // not among the top-g candidates: DeepLog's anomaly
//	}
//	if s.(sequence.Ender).End() >= 0.5 { … } // the session stopped where normal ones do not
//
// Scores of NGram and LSTM (score.go): an action among the TopG most likely next actions
// scores in [0, 0.5), one outside them in [0.5, 1], one never seen in training exactly 1;
// within each band the score grows as the action's likelihood falls relative to the top (or
// the g-th) candidate. Scores of Cover (cover.go): 0.5 is a typical held-out normal session,
// near 1 one more broken than nearly all of them.
//
// Invariants:
//   - Pure core: no IO, no clock, no goroutines while scoring. LSTM training may use Workers
//     goroutines and is deterministic for its Seed and Workers (on one platform).
//   - A model is not safe for concurrent use: sessions of one model share its scratch space,
//     so the caller serialises calls per model (per agent).
//   - Observe allocates nothing. An LSTM session holds 2·Layers·Hidden float32; an n-gram
//     session N−1 context symbols; a Cover session a range of its suffix array and two counts.
//   - MarshalBinary then UnmarshalBinary, on a model with the same shape, restores exactly the
//     same scores. The decoders refuse truncated, corrupt, oversized or mismatched input with
//     ErrCheckpoint, naming the part, and leave the model unchanged.
//   - Online learning: NGram learns from every observation when Config.Online is set; all
//     models take Feedback(session) (DeepLog's feedback on a false positive). The LSTM's
//     vocabulary is fixed by its first Fit: actions first seen later score 1 until it is
//     retrained.
package sequence
