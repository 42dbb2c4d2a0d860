package response

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/vigil-mesh/vigil/identity"
)

// Action is a step of the response ladder, in increasing severity.
type Action int

const (
	None Action = iota
	Alert
	Throttle
	Quarantine
	Revoke
)

var actionNames = [...]string{"none", "alert", "throttle", "quarantine", "revoke"}

func (a Action) String() string {
	if a >= None && a <= Revoke {
		return actionNames[a]
	}
	return fmt.Sprintf("action(%d)", int(a))
}

// ParseAction parses "alert", "throttle", "quarantine" or "revoke".
func ParseAction(s string) (Action, error) {
	for i, n := range actionNames[1:] {
		if n == s {
			return Action(i + 1), nil
		}
	}
	return None, fmt.Errorf("response: action %q: want alert, throttle, quarantine or revoke: %w", s, ErrInvalidConfig)
}

// Errors. Test with errors.Is.
var (
	// ErrInvalidConfig is wrapped by every Config.Validate error.
	ErrInvalidConfig = errors.New("invalid response config")
	// ErrRevoked: Lift refused because the agent's last decision was Revoke. A revocation is
	// reversed in the registry (M-of-N reinstatement), never by forgetting signals.
	ErrRevoked = errors.New("response: the agent's last decision is revoke")
	// ErrNothingToLift: Lift found no signal and no step held for the agent (callers also use it
	// when no throttle or quarantine is running).
	ErrNothingToLift = errors.New("response: nothing to lift")
)

// Step is one rung of the ladder: it applies once at least Reporters distinct admitted nodes
// and at least Signals distinct signals in all name the agent within the window.
type Step struct {
	Action    Action
	Reporters int
	Signals   int
}

// Config is the policy's response section as plain values (ResponseConfig in the issue).
type Config struct {
	// Window is how long a signal counts after it was observed. Default 5m.
	Window time.Duration
	// MaxSkew is how far in the future ObservedAt may be. Default 1m.
	MaxSkew time.Duration
	// MinScore is the score below which a signal is ignored. Default 0.5.
	MinScore float64
	// Ladder lists the steps, in increasing severity (Action strictly increasing). The highest
	// step whose thresholds are met is the decision. Default: alert at 1 reporter and 1 signal,
	// throttle at 1 reporter and 3 signals, quarantine at 2 reporters, revoke at RevokeQuorum.
	Ladder []Step
	// QuarantineTTL is how long a quarantine lasts unless renewed. Default 15m.
	QuarantineTTL time.Duration
	// ThrottleTTL is how long a throttle lasts unless renewed; 0 means QuarantineTTL.
	// Default 0.
	ThrottleTTL time.Duration
	// ThrottleRate is the messages per second a throttled agent may send (a token bucket at
	// its node). Default 1.
	ThrottleRate float64
	// ThrottleBurst is the bucket's size: the messages a throttled agent may send at once
	// before the rate applies. Default 5.
	ThrottleBurst int
	// EscalateAfter: once an agent has been quarantined this many times (a new quarantine is
	// counted when the previous one had expired), the next decision with at least RevokeQuorum
	// reporters is Revoke even if the ladder's revoke step asks for more. 0 disables.
	// Default 3.
	EscalateAfter int
	// RevokeQuorum is the registry's revoke_quorum: distinct reporters needed to revoke (the
	// FSM enforces it again). Default identity.DefaultRevokeQuorum.
	RevokeQuorum int
	// DryRun marks decisions as not to be carried out. Default false.
	DryRun bool
	// MaxAgents bounds the agents tracked. Default 65536.
	MaxAgents int
	// MaxPerReporter bounds the signals kept per reporter and agent. Default 8.
	MaxPerReporter int
}

// DefaultConfig returns the defaults documented on Config.
func DefaultConfig() Config {
	q := identity.DefaultRevokeQuorum
	return Config{
		Window: 5 * time.Minute, MaxSkew: time.Minute, MinScore: 0.5,
		Ladder: []Step{
			{Alert, 1, 1}, {Throttle, 1, 3}, {Quarantine, 2, 2}, {Revoke, q, q},
		},
		QuarantineTTL: 15 * time.Minute, EscalateAfter: 3, RevokeQuorum: q,
		ThrottleRate: 1, ThrottleBurst: 5,
		MaxAgents: 1 << 16, MaxPerReporter: 8,
	}
}

func invalid(field, format string, args ...any) error {
	return fmt.Errorf("response: %s: %s: %w", field, fmt.Sprintf(format, args...), ErrInvalidConfig)
}

// Bounds of a throttle: at least one message an hour, at most MaxThrottleRate a second, and
// bursts of 1..MaxThrottleBurst messages.
const (
	MinThrottleRate  = 1.0 / 3600
	MaxThrottleRate  = 10000
	MaxThrottleBurst = 10000
)

// throttleTTL is ThrottleTTL, or QuarantineTTL when it is 0.
func (c *Config) throttleTTL() time.Duration {
	if c.ThrottleTTL > 0 {
		return c.ThrottleTTL
	}
	return c.QuarantineTTL
}

// Validate checks each field; the error names it.
func (c *Config) Validate() error {
	if c.Window <= 0 || c.Window > 24*time.Hour {
		return invalid("window", "%s not in (0, 24h]", c.Window)
	}
	if c.MaxSkew < 0 || c.MaxSkew > time.Hour {
		return invalid("max_skew", "%s not in [0, 1h]", c.MaxSkew)
	}
	if !(c.MinScore >= 0 && c.MinScore <= 1) {
		return invalid("min_score", "%v not in [0, 1]", c.MinScore)
	}
	if c.RevokeQuorum < 1 || c.RevokeQuorum > identity.MaxAutoRevokeSignals {
		return invalid("revoke_quorum", "%d not in 1..%d", c.RevokeQuorum, identity.MaxAutoRevokeSignals)
	}
	if len(c.Ladder) == 0 {
		return invalid("ladder", "empty")
	}
	for i, s := range c.Ladder {
		f := fmt.Sprintf("ladder[%d]", i)
		if s.Action < Alert || s.Action > Revoke {
			return invalid(f+".action", "%s is not a ladder step", s.Action)
		}
		if i > 0 && s.Action <= c.Ladder[i-1].Action {
			return invalid(f+".action", "%s after %s: steps must increase in severity", s.Action, c.Ladder[i-1].Action)
		}
		if s.Reporters < 1 || s.Signals < 1 {
			return invalid(f, "reporters and signals must be at least 1")
		}
		if s.Action == Revoke && s.Reporters < c.RevokeQuorum {
			return invalid(f+".reporters", "revoke at %d reporters is below revoke_quorum %d", s.Reporters, c.RevokeQuorum)
		}
	}
	if c.QuarantineTTL <= 0 || c.QuarantineTTL > 30*24*time.Hour {
		return invalid("quarantine_ttl", "%s not in (0, 720h]", c.QuarantineTTL)
	}
	if c.ThrottleTTL < 0 || c.ThrottleTTL > 30*24*time.Hour {
		return invalid("throttle_ttl", "%s not in [0, 720h] (0: quarantine_ttl)", c.ThrottleTTL)
	}
	if !(c.ThrottleRate >= MinThrottleRate && c.ThrottleRate <= MaxThrottleRate) {
		return invalid("throttle_rate", "%v messages/s not in [1/3600, %v]", c.ThrottleRate, float64(MaxThrottleRate))
	}
	if c.ThrottleBurst < 1 || c.ThrottleBurst > MaxThrottleBurst {
		return invalid("throttle_burst", "%d not in 1..%d", c.ThrottleBurst, MaxThrottleBurst)
	}
	if c.EscalateAfter < 0 || c.EscalateAfter > 1000 {
		return invalid("escalate_after", "%d not in 0..1000", c.EscalateAfter)
	}
	if c.MaxAgents < 1 || c.MaxAgents > 1<<24 {
		return invalid("max_agents", "%d not in 1..%d", c.MaxAgents, 1<<24)
	}
	if c.MaxPerReporter < 1 || c.MaxPerReporter > 1024 {
		return invalid("max_per_reporter", "%d not in 1..1024", c.MaxPerReporter)
	}
	return nil
}

// Decision is what the aggregator decides for one agent at one instant.
type Decision struct {
	Agent     identity.SignalSubject
	Action    Action
	Reporters int       // distinct reporters with a fresh signal
	Signals   int       // fresh signals in all
	MaxScore  float64   // highest fresh score
	Until     time.Time // end of a throttle or quarantine; zero otherwise
	// Rate (messages per second) and Burst of a throttle (Config.ThrottleRate and
	// ThrottleBurst); zero otherwise.
	Rate      float64
	Burst     int
	Escalated bool // revoke reached by EscalateAfter quarantines
	Changed   bool // Action differs from the previous decision (or a quarantine renewed after expiry)
	DryRun    bool
	// Evidence is set when Action is Revoke: the freshest signal of each distinct reporter,
	// at most identity.MaxAutoRevokeSignals, for an AutoRevokeAgent command.
	Evidence []identity.Signal
}

type entry struct {
	sig identity.Signal
}

// spentSig is a signal forgotten by Lift, kept until it leaves the window so that a replay of it
// is still a duplicate.
type spentSig struct {
	nonce      [16]byte
	observedAt time.Time
}

type agentState struct {
	subject     identity.SignalSubject
	byReporter  map[identity.PublicKey][]entry
	spent       map[identity.PublicKey][]spentSig // signals lifted, while they are fresh
	last        Action
	until       time.Time
	quarantines int
	touched     time.Time
}

// Aggregator holds the signals per agent. See the package invariants.
type Aggregator struct {
	cfg    Config
	agents map[identity.SignalSubject]*agentState
}

// New returns an empty aggregator.
func New(cfg Config) (*Aggregator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.Ladder = slices.Clone(cfg.Ladder)
	return &Aggregator{cfg: cfg, agents: map[identity.SignalSubject]*agentState{}}, nil
}

// Config returns the aggregator's configuration.
func (a *Aggregator) Config() Config { return a.cfg }

func (a *Aggregator) fresh(s *identity.Signal, now time.Time) bool {
	return !s.ObservedAt.Before(now.Add(-a.cfg.Window)) && !s.ObservedAt.After(now.Add(a.cfg.MaxSkew))
}

// Observe adds a verified signal from an admitted node and returns the agent's decision. A
// signal below MinScore, outside the window, or already seen (same reporter and nonce) changes
// nothing.
func (a *Aggregator) Observe(s identity.Signal, now time.Time) Decision {
	st := a.agents[s.Subject]
	if s.Score >= a.cfg.MinScore && a.fresh(&s, now) {
		if st == nil {
			a.makeRoom(now)
			st = &agentState{subject: s.Subject, byReporter: map[identity.PublicKey][]entry{}}
			a.agents[s.Subject] = st
		}
		list := st.byReporter[s.Reporter]
		if !slices.ContainsFunc(list, func(e entry) bool { return e.sig.Nonce == s.Nonce }) &&
			!slices.ContainsFunc(st.spent[s.Reporter], func(x spentSig) bool { return x.nonce == s.Nonce }) {
			list = append(list, entry{s.Clone()})
			if len(list) > a.cfg.MaxPerReporter { // keep the freshest
				slices.SortFunc(list, func(x, y entry) int { return x.sig.ObservedAt.Compare(y.sig.ObservedAt) })
				list = list[len(list)-a.cfg.MaxPerReporter:]
			}
			st.byReporter[s.Reporter] = list
		}
		st.touched = now
	}
	if st == nil {
		return Decision{Agent: s.Subject, DryRun: a.cfg.DryRun}
	}
	return a.decide(st, now)
}

// Evaluate returns the agent's decision at now without adding anything (signals age out).
func (a *Aggregator) Evaluate(subject identity.SignalSubject, now time.Time) Decision {
	st := a.agents[subject]
	if st == nil {
		return Decision{Agent: subject, DryRun: a.cfg.DryRun}
	}
	return a.decide(st, now)
}

// tally drops signals that left the window and counts what remains; freshest holds each
// reporter's latest signal.
func (a *Aggregator) tally(st *agentState, now time.Time) (reporters, signals int, maxScore float64, freshest []identity.Signal) {
	for rep, list := range st.spent {
		list = slices.DeleteFunc(list, func(x spentSig) bool { return x.observedAt.Before(now.Add(-a.cfg.Window)) })
		if len(list) == 0 {
			delete(st.spent, rep)
		} else {
			st.spent[rep] = list
		}
	}
	for rep, list := range st.byReporter {
		keep := list[:0]
		for i := range list {
			if a.fresh(&list[i].sig, now) {
				keep = append(keep, list[i])
			}
		}
		if len(keep) == 0 {
			delete(st.byReporter, rep)
			continue
		}
		best := &keep[0].sig
		for i := range keep {
			if keep[i].sig.ObservedAt.After(best.ObservedAt) {
				best = &keep[i].sig
			}
			maxScore = max(maxScore, keep[i].sig.Score)
		}
		st.byReporter[rep] = keep
		reporters++
		signals += len(keep)
		freshest = append(freshest, best.Clone())
	}
	return
}

func (a *Aggregator) decide(st *agentState, now time.Time) Decision {
	d := Decision{Agent: st.subject, DryRun: a.cfg.DryRun}
	var freshest []identity.Signal
	d.Reporters, d.Signals, d.MaxScore, freshest = a.tally(st, now)
	for _, step := range a.cfg.Ladder {
		if d.Reporters >= step.Reporters && d.Signals >= step.Signals {
			d.Action = step.Action
		}
	}
	if d.Action < Revoke && a.cfg.EscalateAfter > 0 && st.quarantines >= a.cfg.EscalateAfter &&
		d.Reporters >= a.cfg.RevokeQuorum && d.Action >= Quarantine {
		d.Action, d.Escalated = Revoke, true
	}
	switch d.Action {
	case Throttle, Quarantine:
		renew := st.last != d.Action || !now.Before(st.until)
		if renew {
			ttl := a.cfg.QuarantineTTL
			if d.Action == Throttle {
				ttl = a.cfg.throttleTTL()
			} else {
				st.quarantines++
			}
			st.until = now.Add(ttl)
		}
		d.Until = st.until
		d.Changed = renew
		if d.Action == Throttle {
			d.Rate, d.Burst = a.cfg.ThrottleRate, a.cfg.ThrottleBurst
		}
	case Revoke:
		// Deterministic order: freshest first, then by reporter key bytes.
		slices.SortFunc(freshest, func(x, y identity.Signal) int {
			if c := y.ObservedAt.Compare(x.ObservedAt); c != 0 {
				return c
			}
			return slices.Compare(x.Reporter.Bytes(), y.Reporter.Bytes())
		})
		d.Evidence = freshest[:min(len(freshest), identity.MaxAutoRevokeSignals)]
		d.Changed = st.last != Revoke
	default:
		d.Changed = st.last != d.Action
	}
	st.last = d.Action
	return d
}

// makeRoom forgets agents with no fresh signal, then, if still full, the least recently seen.
func (a *Aggregator) makeRoom(now time.Time) {
	if len(a.agents) < a.cfg.MaxAgents {
		return
	}
	a.Prune(now)
	for len(a.agents) >= a.cfg.MaxAgents {
		var oldest identity.SignalSubject
		var t time.Time
		first := true
		for k, st := range a.agents {
			if first || st.touched.Before(t) {
				oldest, t, first = k, st.touched, false
			}
		}
		delete(a.agents, oldest)
	}
}

// Prune forgets every agent with no fresh signal, no running throttle or quarantine and no
// lifted signal still inside the window.
func (a *Aggregator) Prune(now time.Time) {
	for k, st := range a.agents {
		if r, _, _, _ := a.tally(st, now); r == 0 && !now.Before(st.until) && len(st.spent) == 0 {
			delete(a.agents, k)
		}
	}
}

// Len returns how many agents are tracked.
func (a *Aggregator) Len() int { return len(a.agents) }

// SetRevokeQuorum follows a change of the registry's revoke_quorum: the revoke step then needs
// at least q reporters and signals. Decisions already made are not revisited.
func (a *Aggregator) SetRevokeQuorum(q int) error {
	c := a.cfg
	c.Ladder = slices.Clone(c.Ladder)
	c.RevokeQuorum = q
	for i := range c.Ladder {
		if c.Ladder[i].Action == Revoke {
			c.Ladder[i].Reporters = max(c.Ladder[i].Reporters, q)
			c.Ladder[i].Signals = max(c.Ladder[i].Signals, q)
		}
	}
	if err := c.Validate(); err != nil {
		return err
	}
	a.cfg = c
	return nil
}

// State is an agent's response state at an instant, as State reads it.
type State struct {
	Action  Action    // the last step decided; None when the agent is not tracked
	Until   time.Time // end of the last throttle or quarantine; zero otherwise
	Running bool      // Action is Throttle or Quarantine and Until is after now
	Signals int       // signals held for the agent (including any that left the window since the last decision)
}

// State returns subject's state at now and changes nothing (Evaluate, unlike it, renews an
// expired quarantine whose signals are still fresh).
func (a *Aggregator) State(subject identity.SignalSubject, now time.Time) State {
	st := a.agents[subject]
	if st == nil {
		return State{}
	}
	out := State{Action: st.last, Until: st.until}
	out.Running = (st.last == Throttle || st.last == Quarantine) && now.Before(st.until)
	for _, list := range st.byReporter {
		out.Signals += len(list)
	}
	return out
}

// Lift is an operator's reversal of subject's response at now: it forgets every signal counted
// for the agent, ends its throttle or quarantine, and resets its quarantine count, so the next
// decision starts at the bottom of the ladder and a fresh quorum of fresh signals is needed to
// climb it again. A lifted signal is remembered (reporter and nonce) while it is inside the
// window, so a replay of it is still a duplicate. Lift returns the state before the lift.
//
// Refused, changing nothing: ErrRevoked when the last decision was Revoke (its evidence stays),
// ErrNothingToLift when the aggregator holds nothing for the agent. Whether a lift is warranted
// (a running throttle or quarantine) is the caller's policy: see State.
func (a *Aggregator) Lift(subject identity.SignalSubject, now time.Time) (State, error) {
	st := a.agents[subject]
	if st == nil {
		return State{}, fmt.Errorf("%w: %s", ErrNothingToLift, subject.Name)
	}
	before := a.State(subject, now)
	if st.last == Revoke {
		return before, fmt.Errorf("%w: %s", ErrRevoked, subject.Name)
	}
	if st.spent == nil {
		st.spent = map[identity.PublicKey][]spentSig{}
	}
	for rep, list := range st.byReporter {
		for _, e := range list {
			if !e.sig.ObservedAt.Before(now.Add(-a.cfg.Window)) {
				st.spent[rep] = append(st.spent[rep], spentSig{nonce: e.sig.Nonce, observedAt: e.sig.ObservedAt})
			}
		}
		// Bound: several lifts inside one window keep the newest 4 × MaxPerReporter per reporter.
		if sp := st.spent[rep]; len(sp) > 4*a.cfg.MaxPerReporter {
			slices.SortFunc(sp, func(x, y spentSig) int { return x.observedAt.Compare(y.observedAt) })
			st.spent[rep] = slices.Clone(sp[len(sp)-4*a.cfg.MaxPerReporter:])
		}
	}
	clear(st.byReporter)
	st.last, st.until, st.quarantines, st.touched = None, time.Time{}, 0, now
	return before, nil
}
