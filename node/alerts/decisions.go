package alerts

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/dgraph-io/badger/v4"
)

// ActionLift is the action of a decision that records an operator lifting an agent's throttle
// or quarantine on this node.
const ActionLift = "lift"

// DecisionActions are the actions a stored decision can have: the response ladder's steps, then
// an operator's lift.
var DecisionActions = []string{"alert", "throttle", "quarantine", "revoke", ActionLift}

// Limits of a stored decision.
const (
	MaxAgentLen  = 255  // bytes of Decision.Agent and Decision.AgentID
	MaxReasonLen = 1024 // bytes of a lift's reason (identity.MaxReasonLen, like a revocation's)
	MaxByLen     = 128  // bytes of Decision.By
	MaxReporters = 64   // Decision.EvidenceReporters (identity.MaxAutoRevokeSignals is smaller)
)

// Decision is one stored collective-response decision: a step of the ladder the node's
// aggregator took for an agent (alert, throttle, quarantine, revoke), or an operator's lift of
// a throttle or quarantine, which records who lifted, when and why.
type Decision struct {
	ID      string    `json:"id"`
	Time    time.Time `json:"time"`     // when the node took it
	Agent   string    `json:"agent"`    // the agent's name
	AgentID string    `json:"agent_id"` // the peer ID of the agent's key when decided
	Action  string    `json:"action"`   // one of DecisionActions
	// The aggregation behind a ladder step.
	Reporters         int       `json:"reporters,omitempty"` // distinct nodes whose signals counted
	Signals           int       `json:"signals,omitempty"`
	MaxScore          float64   `json:"max_score,omitempty"`
	Until             time.Time `json:"until,omitzero"`  // end of a throttle or quarantine
	Rate              float64   `json:"rate,omitempty"`  // a throttle: messages per second allowed
	Burst             int       `json:"burst,omitempty"` // a throttle: messages allowed at once
	Escalated         bool      `json:"escalated,omitempty"`
	DryRun            bool      `json:"dry_run,omitempty"`
	EvidenceReporters []string  `json:"evidence_reporters,omitempty"` // peer IDs (revoke)
	// A lift: who lifted (the operator's peer ID, or "local" for the node's Unix socket), why,
	// the step it ended and the newest decision about the agent before it ("" if none held).
	By       string `json:"by,omitempty"`
	Reason   string `json:"reason,omitempty"`
	Lifted   string `json:"lifted,omitempty"`
	LiftedID string `json:"lifted_id,omitempty"`
}

// DecisionQuery selects decisions: Agent exact ("" = all), Action exact ("" = all), Time at or
// after Since, the newest Limit (0 = all), newest first.
type DecisionQuery struct {
	Agent  string
	Action string
	Since  time.Time
	Limit  int
}

func invalidf(field, format string, args ...any) error {
	return fmt.Errorf("%w: decision %s: %s", ErrInvalid, field, fmt.Sprintf(format, args...))
}

// ParseDecisionAction checks s is one of DecisionActions.
func ParseDecisionAction(s string) (string, error) {
	if !slices.Contains(DecisionActions, s) {
		return "", invalidf("action", "%q: want %s", s, strings.Join(DecisionActions, ", "))
	}
	return s, nil
}

// CheckReason checks a lift's reason: required, at most MaxReasonLen bytes of UTF-8, no control
// characters (it is printed in tables and logs).
func CheckReason(reason string) error {
	if p := ReasonProblem(reason); p != "" {
		return invalidf("reason", "%s", p)
	}
	return nil
}

// ReasonProblem is what CheckReason finds wrong with reason, or "".
func ReasonProblem(reason string) string {
	switch {
	case strings.TrimSpace(reason) == "":
		return "required"
	case len(reason) > MaxReasonLen:
		return fmt.Sprintf("%d bytes, max %d", len(reason), MaxReasonLen)
	case !utf8.ValidString(reason):
		return "not valid UTF-8"
	case strings.ContainsFunc(reason, unicode.IsControl):
		return "contains a control character"
	}
	return ""
}

// Validate checks a decision before it is stored; the error names the field.
func (d *Decision) Validate() error {
	if d.Agent == "" || len(d.Agent) > MaxAgentLen {
		return invalidf("agent", "required, at most %d bytes", MaxAgentLen)
	}
	if len(d.AgentID) > MaxAgentLen {
		return invalidf("agent_id", "%d bytes, max %d", len(d.AgentID), MaxAgentLen)
	}
	if _, err := ParseDecisionAction(d.Action); err != nil {
		return err
	}
	if d.Time.IsZero() {
		return invalidf("time", "required")
	}
	if d.Reporters < 0 || d.Signals < 0 || len(d.EvidenceReporters) > MaxReporters {
		return invalidf("reporters", "negative counts or more than %d evidence reporters", MaxReporters)
	}
	if d.Action == ActionLift {
		if d.By == "" || len(d.By) > MaxByLen {
			return invalidf("by", "a lift needs who lifted, at most %d bytes", MaxByLen)
		}
		if err := CheckReason(d.Reason); err != nil {
			return err
		}
	} else if d.By != "" || d.Reason != "" || d.Lifted != "" || d.LiftedID != "" {
		return invalidf("by", "only a lift records who, why and what it lifted")
	}
	return nil
}

// Check validates a query; the error names the field.
func (q DecisionQuery) Check() error {
	if q.Limit < 0 {
		return invalidf("limit", "%d is negative", q.Limit)
	}
	if q.Action != "" {
		if _, err := ParseDecisionAction(q.Action); err != nil {
			return err
		}
	}
	return nil
}

// AddDecision validates d, stores it with a new ID and its time in UTC, and drops the oldest
// decisions beyond MaxDecisions. A refused decision changes nothing.
func (s *Store) AddDecision(d Decision) (Decision, error) {
	if err := d.Validate(); err != nil {
		return Decision{}, err
	}
	d.Time = d.Time.UTC()
	if !d.Until.IsZero() {
		d.Until = d.Until.UTC()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d.ID = idOf(s.decisions.next)
	v, err := json.Marshal(d)
	if err != nil {
		return Decision{}, fmt.Errorf("alerts: %w", err)
	}
	if err := s.decisions.append(s.db, v); err != nil {
		return Decision{}, fmt.Errorf("alerts: add decision: %w", err)
	}
	return d, nil
}

// DecisionsLen is the number of decisions held.
func (s *Store) DecisionsLen() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.decisions.count
}

func decodeDecision(key, v []byte) (Decision, error) {
	var d Decision
	if err := json.Unmarshal(v, &d); err != nil {
		return Decision{}, fmt.Errorf("alerts: decision record %x does not decode: %w", key, err)
	}
	return d, nil
}

// GetDecision returns the decision with id; ErrNoDecision when none is held.
func (s *Store) GetDecision(id string) (Decision, error) {
	seq, err := seqOfID(id, ErrNoDecision)
	if err != nil {
		return Decision{}, err
	}
	var d Decision
	err = s.db.View(func(txn *badger.Txn) error {
		it, err := txn.Get(s.decisions.key(seq))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return fmt.Errorf("%w: %s", ErrNoDecision, id)
		}
		if err != nil {
			return err
		}
		return it.Value(func(v []byte) error { d, err = decodeDecision(it.Key(), v); return err })
	})
	return d, err
}

// ListDecisions returns the decisions q selects, newest first (as List does alerts).
func (s *Store) ListDecisions(q DecisionQuery) ([]Decision, error) {
	if err := q.Check(); err != nil {
		return nil, err
	}
	out := []Decision{}
	err := s.decisions.newestFirst(s.db, func(key, v []byte) (bool, error) {
		d, err := decodeDecision(key, v)
		if err != nil {
			return false, err
		}
		if (!q.Since.IsZero() && d.Time.Before(q.Since)) || (q.Agent != "" && d.Agent != q.Agent) ||
			(q.Action != "" && d.Action != q.Action) {
			return true, nil
		}
		out = append(out, d)
		return q.Limit <= 0 || len(out) < q.Limit, nil
	})
	return out, err
}
