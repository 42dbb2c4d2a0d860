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

// ErrInvalidConfig is wrapped by every Config.Validate error.
var ErrInvalidConfig = errors.New("invalid response config")

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

type agentState struct {
	subject     identity.SignalSubject
	byReporter  map[identity.PublicKey][]entry
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
		if !slices.ContainsFunc(list, func(e entry) bool { return e.sig.Nonce == s.Nonce }) {
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

// Prune forgets every agent with no fresh signal and no running throttle or quarantine.
func (a *Aggregator) Prune(now time.Time) {
	for k, st := range a.agents {
		if r, _, _, _ := a.tally(st, now); r == 0 && !now.Before(st.until) {
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
