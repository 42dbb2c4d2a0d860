package engine

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"time"

	"github.com/vigil-mesh/vigil/detector"
)

// Phase is where the engine's sequence model stands.
type Phase uint8

const (
	// PhaseNone: the engine has no sequence model.
	PhaseNone Phase = iota
	// PhaseBaseline: the engine collects completed action sessions; the sequence model scores
	// nothing yet (every other model runs as usual).
	PhaseBaseline
	// PhaseFitting: the baseline is complete. PendingFit reports it until the caller takes the
	// sessions (TakeBaseline); the caller fits a model and hands it back (FitDone).
	PhaseFitting
	// PhaseFitted: the fitted model scores every session that begins from now on.
	PhaseFitted
)

func (p Phase) String() string {
	switch p {
	case PhaseNone:
		return "none"
	case PhaseBaseline:
		return "baseline"
	case PhaseFitting:
		return "fitting"
	case PhaseFitted:
		return "fitted"
	}
	return fmt.Sprintf("Phase(%d)", uint8(p))
}

// BaselineConfig bounds the baseline period of the sequence model: the engine collects the
// sessions that complete during it, and the model is fitted on them. The baseline is complete
// when at least MinSessions sessions are collected and Sessions sessions are collected or
// Duration has passed — or, whatever the count, when MaxActions actions are held (the memory
// bound; the open sessions are then cut where they are).
type BaselineConfig struct {
	// Sessions is the number of completed sessions that completes the baseline. Default 200;
	// 0..1,000,000. 0 = no baseline: the model is used as given from the first action (a model
	// fitted beforehand, or one that learns online).
	Sessions int
	// MinSessions is the fewest sessions a Duration may complete the baseline with (a quiet
	// day does not fit a model on three sessions). Default 20; 1..1,000,000; used as
	// min(MinSessions, Sessions).
	MinSessions int
	// Duration completes the baseline this long in record time after its first action (once
	// MinSessions are collected). Default 24 h; > 0.
	Duration time.Duration
	// MaxActions caps the actions held for the baseline, in completed and open sessions
	// (4 bytes each). Default 100,000; 1..10,000,000.
	MaxActions int
}

// DefaultBaselineConfig returns Sessions 200, MinSessions 20, Duration 24 h, MaxActions 100,000.
func DefaultBaselineConfig() BaselineConfig {
	return BaselineConfig{Sessions: 200, MinSessions: 20, Duration: 24 * time.Hour, MaxActions: 100_000}
}

// Limits of a baseline.
const (
	maxBaselineSessions = 1_000_000
	maxBaselineActions  = 10_000_000
	// maxKeptActions is how many actions of a session in progress the engine keeps after the
	// fit, for feedback and fine-tuning (1 KiB per agent at most).
	maxKeptActions = 256
	// maxFlagged is how many completed sessions that raised a sequence alert an agent keeps
	// for the operator's feedback.
	maxFlagged = 2
	// neverTuned is Engine.tuned before the first fine-tuning on a normal session.
	neverTuned = math.MinInt64
)

// Validate checks the fields, naming the one that is wrong.
func (b BaselineConfig) Validate() error {
	switch {
	case b.Sessions < 0 || b.Sessions > maxBaselineSessions:
		return fmt.Errorf("engine: Baseline.Sessions %d out of range [0, %d]", b.Sessions, maxBaselineSessions)
	case b.Sessions == 0:
		return nil // no baseline: the other fields are not used
	case b.MinSessions < 1 || b.MinSessions > maxBaselineSessions:
		return fmt.Errorf("engine: Baseline.MinSessions %d out of range [1, %d]", b.MinSessions, maxBaselineSessions)
	case b.Duration <= 0:
		return fmt.Errorf("engine: Baseline.Duration %v must be positive", b.Duration)
	case b.MaxActions < 1 || b.MaxActions > maxBaselineActions:
		return fmt.Errorf("engine: Baseline.MaxActions %d out of range [1, %d]", b.MaxActions, maxBaselineActions)
	}
	return nil
}

func (b BaselineConfig) minSessions() int { return min(b.MinSessions, b.Sessions) }

// baseline is what the engine has collected.
type baseline struct {
	sessions [][]detector.Action // completed sessions, in the order they completed
	held     int                 // actions in sessions and in the agents' open baseline sessions
	started  bool                // an action has been collected
	start    int64               // record time of the first collected action
	latest   int64               // the latest record time seen while collecting
	taken    bool                // TakeBaseline handed the sessions out (PhaseFitting)
}

// keptSession is a completed session that raised a sequence alert, kept for feedback.
type keptSession struct {
	start, end int64
	actions    []detector.Action
}

// sessionLearner is a sequence model that can be fine-tuned on one session judged normal
// (sequence.NGram and sequence.LSTM: DeepLog's feedback).
type sessionLearner interface {
	Feedback(session []detector.Action) error
}

// onlineLearner is a sequence model that may say it learns from every action it scores.
type onlineLearner interface {
	LearnsOnline() bool
}

// SequenceStatus is the state of the engine's sequence model.
type SequenceStatus struct {
	Phase Phase
	// Sessions and Actions are what the baseline holds (completed sessions; actions in them and
	// in open sessions); zero outside PhaseBaseline and PhaseFitting.
	Sessions, Actions int
	// Start is the record time of the baseline's first action (0 before it).
	Start int64
}

// SequenceStatus reports the sequence model's phase and the baseline's progress.
func (e *Engine) SequenceStatus() SequenceStatus {
	s := SequenceStatus{Phase: e.phase, Sessions: len(e.base.sessions), Actions: e.base.held}
	if e.base.started {
		s.Start = e.base.start
	}
	return s
}

// PendingFit reports that the baseline is complete and its sessions wait to be taken. It is
// true from the record (or EndIdle) that completed the baseline until TakeBaseline.
func (e *Engine) PendingFit() bool { return e.phase == PhaseFitting && !e.base.taken }

// TakeBaseline hands out the baseline's sessions (action ids of the engine's vocabulary) for
// the caller to fit a model on, off the engine's path; nil unless PendingFit. The engine keeps
// them (for its checkpoint) until FitDone or FitFailed and never changes them: the caller must
// not change them either. Records keep flowing meanwhile; the sequence model scores nothing
// until FitDone.
func (e *Engine) TakeBaseline() [][]detector.Action {
	if !e.PendingFit() {
		return nil
	}
	e.base.taken = true
	return e.base.sessions
}

// FitDone installs m, fitted on the sessions TakeBaseline handed out, as the model that
// scores; it must be the configured algorithm. Sessions open at this moment began before the
// model was ready: they are not scored; each agent's next session is.
func (e *Engine) FitDone(m detector.SequenceModel) error {
	if e.phase != PhaseFitting || !e.base.taken {
		return fmt.Errorf("engine: FitDone: no fit pending (phase %s)", e.phase)
	}
	if m == nil || m.Algorithm() != e.cfg.Sequence.Algorithm() {
		return fmt.Errorf("engine: FitDone: the model is not a fitted %s", e.cfg.Sequence.Algorithm())
	}
	e.seq, e.phase, e.base = m, PhaseFitted, baseline{}
	return nil
}

// FitFailed reports that fitting the taken sessions failed: the baseline starts afresh.
func (e *Engine) FitFailed() error {
	if e.phase != PhaseFitting || !e.base.taken {
		return fmt.Errorf("engine: FitFailed: no fit pending (phase %s)", e.phase)
	}
	e.phase, e.base = PhaseBaseline, baseline{}
	return nil
}

// EndIdle ends every session whose last Event is more than SessionGap before now (record
// time: the caller's clock, e.g. the node's tick), and lets the baseline's Duration run to now.
// Sessions otherwise end only when the agent's next Event comes.
func (e *Engine) EndIdle(now int64) {
	var idle []*agent
	for _, a := range e.agents {
		if a.inSession && now-a.lastEvent > int64(e.cfg.SessionGap) {
			idle = append(idle, a)
		}
	}
	// The baseline's sessions are kept in the order they end: make it independent of the map.
	sort.Slice(idle, func(i, j int) bool {
		if idle[i].lastEvent != idle[j].lastEvent {
			return idle[i].lastEvent < idle[j].lastEvent
		}
		return idle[i].id < idle[j].id
	})
	for _, a := range idle {
		e.endSession(a, a.lastEvent)
	}
	if e.phase == PhaseBaseline && e.base.started && now > e.base.latest {
		e.base.latest = now
	}
	e.checkComplete()
}

// End ends agentID's session now (it disconnected, or its task finished).
func (e *Engine) End(agentID string) {
	if a, ok := e.agents[agentID]; ok && a.inSession {
		e.endSession(a, a.lastEvent)
		e.checkComplete()
	}
}

// sequence runs an Event with an action through the agent's session.
func (e *Engine) sequence(a *agent, r Record, out []Alert) []Alert {
	if !a.inSession || r.Session != a.sessionID || r.Time-a.lastEvent > int64(e.cfg.SessionGap) {
		if a.inSession {
			e.endSession(a, a.lastEvent)
		}
		e.startSession(a, r)
	}
	a.lastEvent = r.Time
	id := e.vocab.Add(r.Action)
	switch {
	case e.phase == PhaseBaseline && a.collecting():
		a.cur = append(a.cur, id)
		e.base.held++
		e.seen(r.Time)
		if e.base.held >= e.cfg.Baseline.MaxActions {
			e.cutOpen()
			e.complete()
		}
		e.checkComplete()
	case a.session != nil:
		if len(a.cur) < maxKeptActions {
			a.cur = append(a.cur, id)
		} else {
			a.curCut = true
		}
		s := a.session.Observe(id)
		out = e.judge(a, &a.seq, r.Time, s, func() string {
			return fmt.Sprintf("action %q in session %q", r.Action, r.Session)
		}, out)
		a.curAlerted = a.curAlerted || a.seq.above
	}
	return out
}

// collecting reports that the agent's open session belongs to the baseline: it began in the
// baseline phase, and the baseline was not complete or cut since.
func (a *agent) collecting() bool { return a.inSession && a.collect }

func (e *Engine) startSession(a *agent, r Record) {
	a.inSession, a.sessionID, a.curStart = true, r.Session, r.Time
	a.cur, a.curCut, a.curAlerted = a.cur[:0], false, false
	a.seq.above = false
	a.session, a.collect = nil, false
	switch e.phase {
	case PhaseBaseline:
		a.cur, a.collect = nil, true // a fresh slice: the completed one belongs to the baseline
	case PhaseFitted:
		a.session = e.seq.Start()
	}
}

// endSession ends the agent's open session, whose last action was at `at`.
func (e *Engine) endSession(a *agent, at int64) {
	switch {
	case a.collecting():
		if len(a.cur) > 0 {
			e.base.sessions = append(e.base.sessions, a.cur)
		}
		a.cur = nil
		e.seen(at)
	case a.session != nil && a.curAlerted:
		a.flagged = append(a.flagged, keptSession{start: a.curStart, end: at, actions: slices.Clone(a.cur)})
		if len(a.flagged) > maxFlagged {
			a.flagged = slices.Delete(a.flagged, 0, 1)
		}
	case a.session != nil && e.cfg.TuneInterval > 0 && !a.curCut && len(a.cur) > 0 && (e.tuned == neverTuned || at-e.tuned >= int64(e.cfg.TuneInterval)):
		if l, ok := e.seq.(sessionLearner); ok && l.Feedback(a.cur) == nil {
			e.tuned = at
		}
	}
	a.inSession, a.session, a.collect = false, nil, false
	a.cur = a.cur[:0]
}

// dropOpen takes back what an agent's open session added to the baseline (the agent is
// forgotten or replaced).
func (e *Engine) dropOpen(a *agent) {
	if e.phase == PhaseBaseline && a.collecting() {
		e.base.held -= len(a.cur)
	}
	a.inSession, a.session, a.collect, a.cur = false, nil, false, nil
}

func (e *Engine) seen(t int64) {
	if !e.base.started {
		e.base.started, e.base.start, e.base.latest = true, t, t
	}
	e.base.latest = max(e.base.latest, t)
}

// checkComplete ends the baseline when it has what BaselineConfig asks for.
func (e *Engine) checkComplete() {
	if e.phase != PhaseBaseline {
		return
	}
	b := e.cfg.Baseline
	n := len(e.base.sessions)
	if e.base.held >= b.MaxActions && n > 0 {
		e.complete()
		return
	}
	if n < b.minSessions() {
		return
	}
	if n >= b.Sessions || (e.base.started && e.base.latest-e.base.start >= int64(b.Duration)) {
		e.complete()
	}
}

// cutOpen ends every open baseline session where it is (MaxActions reached), in agent order.
func (e *Engine) cutOpen() {
	ids := make([]string, 0, len(e.agents))
	for id, a := range e.agents {
		if a.collecting() && len(a.cur) > 0 {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	for _, id := range ids {
		a := e.agents[id]
		e.base.sessions = append(e.base.sessions, a.cur)
		a.cur, a.collect = nil, false
	}
}

// complete moves to PhaseFitting: open sessions are no longer collected (their actions are
// let go) and stay unscored until they end.
func (e *Engine) complete() {
	for _, a := range e.agents {
		if a.collecting() {
			e.base.held -= len(a.cur)
			a.cur, a.collect = nil, false
		}
	}
	e.phase, e.base.taken = PhaseFitting, false
}

// sequenceFeedback fine-tunes the fitted model on the session of agent a that was open at
// time t (the alert's), if the engine still holds it.
func (e *Engine) sequenceFeedback(a *agent, t int64) error {
	if e.phase != PhaseFitted {
		return nil
	}
	l, ok := e.seq.(sessionLearner)
	if !ok {
		return nil
	}
	var s []detector.Action
	if a.session != nil && t >= a.curStart {
		s = a.cur
	} else {
		for i := len(a.flagged) - 1; i >= 0; i-- {
			if k := a.flagged[i]; k.start <= t && t <= k.end {
				s = k.actions
				break
			}
		}
	}
	if len(s) == 0 {
		return nil
	}
	if err := l.Feedback(s); err != nil {
		return fmt.Errorf("engine: feedback to %s: %w", e.seq.Algorithm(), err)
	}
	return nil
}
