package detector

import "encoding"

// Model is the pure core of one detector for one agent (or one series). It owns no goroutines
// and never reads the clock: time, when a model needs it, is passed in by the caller. A model is
// not safe for concurrent use; the caller serialises calls per agent.
//
// MarshalBinary writes a checkpoint; UnmarshalBinary on a model built with the same
// configuration restores it, after which the model returns exactly the scores the original
// would have returned for the same inputs.
type Model interface {
	// Algorithm is the name the policy uses for this model ("ewma", "ngram", "lstm", …).
	Algorithm() string
	encoding.BinaryMarshaler
	encoding.BinaryUnmarshaler
}

// MetricModel scores one numeric stream (cpu_usage, bytes per second, latency, an NAB series).
type MetricModel interface {
	Model
	// Observe takes the value v observed at t (Unix nanoseconds, non-decreasing) and returns an
	// anomaly score in [0,1] for it: 0 is entirely ordinary, 1 is as unusual as the model can say.
	Observe(t int64, v float64) float64
}

// VectorModel scores a feature vector per observation (an agent's per-interval features).
type VectorModel interface {
	Model
	// Dim is the length every observed vector must have.
	Dim() int
	// Observe takes the vector x observed at t and returns an anomaly score in [0,1]. x is not
	// retained after the call.
	Observe(t int64, x []float64) float64
}

// Action is an agent's action (a capability used, a tool called, a system call) as an id from a
// Vocabulary. Id 0 is reserved for "never seen before".
type Action = uint32

// SequenceModel scores an agent's actions in order within sessions. Fit learns what normal
// sessions look like (a baseline period); a model keeps learning online only where its
// documentation says so.
type SequenceModel interface {
	Model
	// Fit learns from normal sessions. It may be called again with more sessions.
	Fit(sessions [][]Action) error
	// Start begins a session. The returned session carries its state forward: scoring an action
	// costs one step, not a re-run over a window.
	Start() Session
}

// Session is one session's state in a SequenceModel.
type Session interface {
	// Observe scores the next action given the actions before it in this session, in [0,1].
	Observe(a Action) float64
}

// Ender is optionally implemented by a Session: End scores the end of the session the way
// Observe scores an action, in [0,1] (a session that stops where normal sessions never stop
// scores high). A caller that sees a session end (a new session id, a gap) type-asserts for it;
// a Session without it has no end-of-session score. sequence.Ender is the same interface.
type Ender interface {
	End() float64
}
