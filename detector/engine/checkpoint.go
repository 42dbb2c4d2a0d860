package engine

import (
	"fmt"
	"math"
	"sort"

	"github.com/vigil-mesh/vigil/detector"
	"github.com/vigil-mesh/vigil/detector/internal/wire"
)

// Checkpoint limits.
const (
	maxModelCheckpoint = 16 << 20
	maxThresholds      = 1100
)

// Checkpoint returns one agent's whole detector state: rule progress, metric and vector
// models, the open feature interval, alert edges and thresholds raised by feedback.
// Not included: the agent's capabilities (they come from the registry: call SetCapabilities
// after Restore), an action session in progress (detector.Session has no checkpoint, so the
// first Event after a restore starts a new session) and the sessions kept for feedback; the
// shared vocabulary, sequence model and baseline are in CheckpointSequence.
func (e *Engine) Checkpoint(agentID string) ([]byte, error) {
	a, ok := e.agents[agentID]
	if !ok {
		return nil, fmt.Errorf("engine: checkpoint of unknown agent %q", agentID)
	}
	var w wire.Writer
	w.Header("VAGT", agentVersion)
	w.Bool(a.rules != nil)
	if a.rules != nil {
		b, _ := a.rules.MarshalBinary()
		w.Blob(b)
	}
	w.Bool(a.seq.above)
	w.U32(uint32(len(a.metrics)))
	for _, m := range a.metrics {
		b, err := m.model.MarshalBinary()
		if err != nil {
			return nil, fmt.Errorf("engine: checkpoint of %s: %w", m.name, err)
		}
		w.String(m.metric)
		w.String(m.name)
		w.Bool(m.above)
		w.Blob(b)
	}
	w.Bool(a.vec != nil)
	if a.vec != nil {
		b, err := a.vec.MarshalBinary()
		if err != nil {
			return nil, fmt.Errorf("engine: checkpoint of %s: %w", a.vecSrc.name, err)
		}
		w.String(a.vecSrc.name)
		w.Bool(a.vecSrc.above)
		w.Blob(b)
	}
	acc := a.acc
	w.I64(acc.index)
	w.Bool(acc.open)
	w.F64s([]float64{acc.messages, acc.bytes, acc.refusals, acc.errors, acc.events, acc.latencySum, acc.latencyN})
	for _, x := range append(acc.peers[:], acc.actions[:]...) {
		w.U64(x)
	}
	names := make([]string, 0, len(a.thresholds))
	for name := range a.thresholds {
		names = append(names, name)
	}
	sort.Strings(names) // the same state always gives the same bytes
	w.U32(uint32(len(names)))
	for _, name := range names {
		w.String(name)
		w.F64(a.thresholds[name])
	}
	return w.Bytes(), nil
}

// Restore replaces agentID's state with a checkpoint taken under the same configuration
// (same rules, same model factories). On error nothing changes.
func (e *Engine) Restore(agentID string, data []byte) error {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("%w: agent %q: %s", detector.ErrCheckpoint, agentID, fmt.Sprintf(format, args...))
	}
	if agentID == "" || len(agentID) > MaxAgentLen {
		return fmt.Errorf("%w: agent name empty or over %d bytes", ErrRecord, MaxAgentLen)
	}
	old := e.agents[agentID]
	delete(e.agents, agentID)
	a, err := e.agent(agentID) // a fresh agent from the factories
	if old != nil {
		e.agents[agentID] = old
	} else {
		delete(e.agents, agentID)
	}
	if err != nil {
		return err
	}
	r := wire.NewReader(data)
	// Version 1 held a per-agent vocabulary, now shared (CheckpointSequence): read past it.
	version := uint8(agentVersion)
	if len(data) > 4 && data[4] == 1 {
		version = 1
	}
	r.Header("VAGT", version)
	hasRules := r.Bool()
	if r.Err() == nil && hasRules != (a.rules != nil) {
		return fail("checkpoint has rules=%v, the engine has rules=%v", hasRules, a.rules != nil)
	}
	if hasRules {
		if err := a.rules.UnmarshalBinary(r.Blob("rule state", maxModelCheckpoint)); r.Err() == nil && err != nil {
			return err
		}
	}
	if version == 1 {
		r.Blob("vocabulary", maxModelCheckpoint)
	}
	a.seq.above = r.Bool()
	n := r.U32()
	if r.Err() == nil && int(n) > e.cfg.MaxMetrics {
		return fail("%d metric models, more than MaxMetrics %d", n, e.cfg.MaxMetrics)
	}
	for i := 0; i < int(n) && r.Err() == nil; i++ {
		metric := r.String("metric name", MaxMetricLen)
		name := r.String("model name", MaxMetricLen+64)
		above := r.Bool()
		blob := r.Blob("metric model", maxModelCheckpoint)
		if r.Err() != nil {
			break
		}
		if e.cfg.Metric == nil {
			return fail("checkpoint has a model for %s, the engine builds none", metric)
		}
		m, err := e.cfg.Metric(metric)
		if err != nil || m == nil {
			return fail("cannot build the model for %s: %v", metric, err)
		}
		if want := "metric:" + metric + ":" + m.Algorithm(); want != name {
			return fail("metric model %s, the engine builds %s", name, want)
		}
		if err := m.UnmarshalBinary(blob); err != nil {
			return fmt.Errorf("engine: agent %q: %s: %w", agentID, name, err)
		}
		a.metrics = append(a.metrics, metricSlot{source: source{name: name, above: above}, metric: metric, model: m})
	}
	hasVec := r.Bool()
	if r.Err() == nil && hasVec != (a.vec != nil) {
		return fail("checkpoint has a vector model=%v, the engine has %v", hasVec, a.vec != nil)
	}
	if hasVec {
		name := r.String("vector model name", 64)
		a.vecSrc.above = r.Bool()
		blob := r.Blob("vector model", maxModelCheckpoint)
		if r.Err() == nil && name != a.vecSrc.name {
			return fail("vector model %s, the engine builds %s", name, a.vecSrc.name)
		}
		if r.Err() == nil {
			if err := a.vec.UnmarshalBinary(blob); err != nil {
				return fmt.Errorf("engine: agent %q: %w", agentID, err)
			}
		}
	}
	a.acc.index = r.I64()
	a.acc.open = r.Bool()
	f := r.F64s("interval", 7)
	if r.Err() == nil && len(f) != 7 {
		return fail("interval has %d sums, want 7", len(f))
	}
	for _, x := range f {
		if math.IsNaN(x) || x < 0 {
			return fail("interval sum %v", x)
		}
	}
	if len(f) == 7 {
		a.acc.messages, a.acc.bytes, a.acc.refusals, a.acc.errors, a.acc.events, a.acc.latencySum, a.acc.latencyN = f[0], f[1], f[2], f[3], f[4], f[5], f[6]
	}
	for i := range a.acc.peers {
		a.acc.peers[i] = r.U64()
	}
	for i := range a.acc.actions {
		a.acc.actions[i] = r.U64()
	}
	nt := r.U32()
	if r.Err() == nil && nt > maxThresholds {
		return fail("%d thresholds, more than %d", nt, maxThresholds)
	}
	for i := 0; i < int(nt) && r.Err() == nil; i++ {
		name := r.String("threshold model", MaxMetricLen+64)
		t := r.F64()
		if r.Err() == nil && !(t > 0 && t <= 1) {
			return fail("threshold %v for %s out of (0, 1]", t, name)
		}
		if a.thresholds == nil {
			a.thresholds = map[string]float64{}
		}
		a.thresholds[name] = t
	}
	if err := r.Done(); err != nil {
		return fail("%v", err)
	}
	if old != nil {
		a.caps = old.caps
		e.dropOpen(old)
	}
	e.agents[agentID] = a
	return nil
}

// agentVersion is the version of Checkpoint's format.
const agentVersion = 2

// CheckpointSequence returns the state of the engine's sequence model: the shared vocabulary,
// the phase, the baseline collected so far (or complete and waiting for its fit) and, once
// fitted, the model. Sessions in progress are not included (see Checkpoint). It must not be
// called while the model handed to FitDone is still being changed elsewhere; the sessions of
// TakeBaseline are only read. Error if the engine has no sequence model.
func (e *Engine) CheckpointSequence() ([]byte, error) {
	if e.phase == PhaseNone {
		return nil, fmt.Errorf("engine: no sequence model to checkpoint")
	}
	var w wire.Writer
	w.Header("VSEQ", 1)
	w.String(e.cfg.Sequence.Algorithm())
	w.U8(uint8(e.phase))
	vb, _ := e.vocab.MarshalBinary()
	w.Blob(vb)
	w.Bool(e.base.started)
	w.I64(e.base.start)
	w.I64(e.base.latest)
	w.U32(uint32(len(e.base.sessions)))
	for _, s := range e.base.sessions {
		w.U32s(s)
	}
	w.I64(e.tuned)
	w.Bool(e.phase == PhaseFitted)
	if e.phase == PhaseFitted {
		b, err := e.seq.MarshalBinary()
		if err != nil {
			return nil, fmt.Errorf("engine: checkpoint of sequence model %s: %w", e.seq.Algorithm(), err)
		}
		w.Blob(b)
	}
	return w.Bytes(), nil
}

// RestoreSequence brings back a CheckpointSequence taken with the same sequence algorithm and
// model shape. A baseline in progress continues under this engine's BaselineConfig (and is
// complete at once if it already holds what that asks for); a complete one is reported by
// PendingFit again; a fitted model scores from the next session of each agent. Refused,
// changing nothing, when the checkpoint is corrupt, of another algorithm or shape, or in a
// baseline while this engine has none.
func (e *Engine) RestoreSequence(data []byte) error {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("%w: sequence: %s", detector.ErrCheckpoint, fmt.Sprintf(format, args...))
	}
	if e.phase == PhaseNone {
		return fail("the engine has no sequence model")
	}
	r := wire.NewReader(data)
	r.Header("VSEQ", 1)
	alg := r.String("sequence algorithm", 64)
	if r.Err() == nil && alg != e.cfg.Sequence.Algorithm() {
		return fail("checkpoint of %s, the engine runs %s", alg, e.cfg.Sequence.Algorithm())
	}
	phase := Phase(r.U8())
	if r.Err() == nil && (phase < PhaseBaseline || phase > PhaseFitted) {
		return fail("phase %d unknown", phase)
	}
	if r.Err() == nil && phase != PhaseFitted && e.cfg.Baseline.Sessions == 0 {
		return fail("checkpoint is in its baseline (%s), the engine has no baseline", phase)
	}
	vocab, _ := detector.NewVocabulary(e.cfg.Vocabulary)
	if vb := r.Blob("vocabulary", maxModelCheckpoint); r.Err() == nil {
		if err := vocab.UnmarshalBinary(vb); err != nil {
			return err
		}
	}
	var b baseline
	b.started, b.start, b.latest = r.Bool(), r.I64(), r.I64()
	n := r.U32()
	if r.Err() == nil && n > maxBaselineSessions {
		return fail("%d baseline sessions, more than %d", n, maxBaselineSessions)
	}
	for i := 0; i < int(n) && r.Err() == nil; i++ {
		s := r.U32s("baseline session", maxBaselineActions-b.held)
		for _, id := range s {
			if int(id) > vocab.Len() {
				return fail("baseline session %d: action %d outside the vocabulary of %d", i, id, vocab.Len())
			}
		}
		if r.Err() == nil && len(s) == 0 {
			return fail("baseline session %d is empty", i)
		}
		b.sessions = append(b.sessions, s)
		b.held += len(s)
	}
	if r.Err() == nil && phase == PhaseFitted && n > 0 {
		return fail("a fitted model with %d baseline sessions", n)
	}
	tuned := r.I64()
	hasModel := r.Bool()
	if r.Err() == nil && hasModel != (phase == PhaseFitted) {
		return fail("phase %s with model=%v", phase, hasModel)
	}
	var model []byte
	if hasModel {
		model = r.Blob("sequence model", maxModelCheckpoint)
	}
	if err := r.Done(); err != nil {
		return fail("%v", err)
	}
	if hasModel {
		// A fresh instance when the engine's own is already fitted and in use.
		if err := e.cfg.Sequence.UnmarshalBinary(model); err != nil {
			return fmt.Errorf("engine: sequence model %s: %w", alg, err)
		}
	}
	// Sessions open now were numbered with the old vocabulary: they end unscored.
	for _, a := range e.agents {
		e.dropOpen(a)
		a.flagged = nil
	}
	e.vocab, e.phase, e.base, e.tuned, e.seq = vocab, phase, b, tuned, nil
	if hasModel {
		e.seq = e.cfg.Sequence
	}
	e.checkComplete()
	return nil
}
