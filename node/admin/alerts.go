package admin

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vigil-mesh/vigil/gossip/response"
	"github.com/vigil-mesh/vigil/identity"
	"github.com/vigil-mesh/vigil/node/admin/adminv1"
	"github.com/vigil-mesh/vigil/node/alerts"
)

var (
	errNoAlerts    = errors.New("admin: this server has no alert store")
	errNoDecisions = errors.New("admin: this server has no response decisions")
)

// Limits of ListAlerts.
const (
	alertsDefaultLimit = 100
	alertsMaxLimit     = 10_000
	maxAlertIDLen      = 64
)

func alertPB(a alerts.Alert) *adminv1.Alert {
	ts := func(t interface{ IsZero() bool }) bool { return !t.IsZero() }
	out := &adminv1.Alert{Id: a.ID, Agent: a.Agent, Model: a.Model, Score: a.Score, Evidence: a.Evidence,
		Time: timestamppb.New(a.Time), Action: a.Action, Status: string(a.Status), FalsePositive: a.FalsePositive,
		Shared: a.Shared, AckedBy: a.AckedBy, ResolvedBy: a.ResolvedBy}
	if ts(a.AckedAt) {
		out.AckedAt = timestamppb.New(a.AckedAt)
	}
	if ts(a.ResolvedAt) {
		out.ResolvedAt = timestamppb.New(a.ResolvedAt)
	}
	return out
}

// who names the caller in an alert's record: its peer ID, or "local".
func who(ctx context.Context) string {
	c, ok := CallerFrom(ctx)
	switch {
	case !ok:
		return "unknown"
	case c.Local:
		return "local"
	}
	return c.ID.String()
}

func alertErr(err error) error {
	switch {
	case errors.Is(err, alerts.ErrNotFound):
		return connect.NewError(connect.CodeNotFound, err)
	case errors.Is(err, alerts.ErrTransition):
		return connect.NewError(connect.CodeFailedPrecondition, err)
	}
	return connect.NewError(connect.CodeInternal, err)
}

func (v *service) ListAlerts(_ context.Context, req *connect.Request[adminv1.ListAlertsRequest]) (*connect.Response[adminv1.ListAlertsResponse], error) {
	m := req.Msg
	if len(m.Agent) > maxPrincipalLen {
		return nil, invalidArg(identity.ErrInvalid, "agent", "%d bytes, max %d", len(m.Agent), maxPrincipalLen)
	}
	q := alerts.Query{Agent: m.Agent, Limit: alertsDefaultLimit}
	if m.Status != "" {
		st, err := alerts.ParseStatus(m.Status)
		if err != nil {
			return nil, invalidArg(identity.ErrInvalid, "status", "%q: want open, acked or resolved", m.Status)
		}
		q.Status = st
	}
	if m.Limit > 0 {
		q.Limit = int(min(m.Limit, alertsMaxLimit))
	}
	if m.Since != nil {
		if err := m.Since.CheckValid(); err != nil {
			return nil, invalidArg(identity.ErrInvalid, "since", "%v", err)
		}
		q.Since = m.Since.AsTime()
	}
	if v.s.cfg.Alerts == nil {
		return nil, connect.NewError(connect.CodeUnimplemented, errNoAlerts)
	}
	list, err := v.s.cfg.Alerts.ListAlerts(q)
	if err != nil {
		return nil, alertErr(err)
	}
	out := &adminv1.ListAlertsResponse{}
	if !v.s.cfg.Key.IsZero() {
		out.Node = v.s.cfg.Key.ID().String()
	}
	for _, a := range list {
		out.Alerts = append(out.Alerts, alertPB(a))
	}
	return connect.NewResponse(out), nil
}

func checkAlertID(id string) error {
	if id == "" || len(id) > maxAlertIDLen {
		return invalidArg(identity.ErrInvalid, "id", "required, at most %d bytes", maxAlertIDLen)
	}
	return nil
}

func (v *service) AckAlert(ctx context.Context, req *connect.Request[adminv1.AckAlertRequest]) (*connect.Response[adminv1.AlertResponse], error) {
	if err := checkAlertID(req.Msg.Id); err != nil {
		return nil, err
	}
	if v.s.cfg.Alerts == nil {
		return nil, connect.NewError(connect.CodeUnimplemented, errNoAlerts)
	}
	a, err := v.s.cfg.Alerts.AckAlert(req.Msg.Id, who(ctx))
	if err != nil {
		return nil, alertErr(err)
	}
	return connect.NewResponse(&adminv1.AlertResponse{Alert: alertPB(a)}), nil
}

func (v *service) ResolveAlert(ctx context.Context, req *connect.Request[adminv1.ResolveAlertRequest]) (*connect.Response[adminv1.AlertResponse], error) {
	if err := checkAlertID(req.Msg.Id); err != nil {
		return nil, err
	}
	if v.s.cfg.Alerts == nil {
		return nil, connect.NewError(connect.CodeUnimplemented, errNoAlerts)
	}
	a, err := v.s.cfg.Alerts.ResolveAlert(req.Msg.Id, who(ctx), req.Msg.FalsePositive)
	if err != nil {
		return nil, alertErr(err)
	}
	return connect.NewResponse(&adminv1.AlertResponse{Alert: alertPB(a)}), nil
}

func decisionPB(d alerts.Decision) *adminv1.Decision {
	pb := &adminv1.Decision{Id: d.ID, Time: timestamppb.New(d.Time), Agent: d.Agent, AgentId: d.AgentID, Action: d.Action,
		Reporters: uint32(max(d.Reporters, 0)), Signals: uint32(max(d.Signals, 0)), MaxScore: d.MaxScore,
		Escalated: d.Escalated, DryRun: d.DryRun, EvidenceReporters: d.EvidenceReporters,
		By: d.By, Reason: d.Reason, Lifted: d.Lifted, LiftedId: d.LiftedID,
		Rate: d.Rate, Burst: uint32(max(d.Burst, 0))}
	if !d.Until.IsZero() {
		pb.Until = timestamppb.New(d.Until)
	}
	return pb
}

// decisionErr maps a decision backend error to its connect code; the message says why.
func decisionErr(err error) error {
	switch {
	case errors.Is(err, alerts.ErrNoDecision):
		return connect.NewError(connect.CodeNotFound, err)
	case errors.Is(err, identity.ErrNotFound):
		return toConnect(err)
	case errors.Is(err, response.ErrRevoked):
		return connect.NewError(connect.CodeFailedPrecondition,
			fmt.Errorf("%w; a revocation is not lifted: it is reversed in the registry by M-of-N `vigil agent reinstate`", err))
	case errors.Is(err, response.ErrNothingToLift):
		return connect.NewError(connect.CodeFailedPrecondition, err)
	case errors.Is(err, alerts.ErrInvalid):
		return connect.NewError(connect.CodeInvalidArgument, err)
	}
	return connect.NewError(connect.CodeInternal, err)
}

func (v *service) ListDecisions(_ context.Context, req *connect.Request[adminv1.ListDecisionsRequest]) (*connect.Response[adminv1.ListDecisionsResponse], error) {
	m := req.Msg
	if len(m.Agent) > maxPrincipalLen {
		return nil, invalidArg(identity.ErrInvalid, "agent", "%d bytes, max %d", len(m.Agent), maxPrincipalLen)
	}
	q := alerts.DecisionQuery{Agent: m.Agent, Limit: alertsDefaultLimit}
	if m.Action != "" {
		if _, err := alerts.ParseDecisionAction(m.Action); err != nil {
			return nil, invalidArg(identity.ErrInvalid, "action", "%q: want %s", m.Action, strings.Join(alerts.DecisionActions, ", "))
		}
		q.Action = m.Action
	}
	if m.Limit > 0 {
		q.Limit = int(min(m.Limit, alertsMaxLimit))
	}
	if m.Since != nil {
		if err := m.Since.CheckValid(); err != nil {
			return nil, invalidArg(identity.ErrInvalid, "since", "%v", err)
		}
		q.Since = m.Since.AsTime()
	}
	if v.s.cfg.Decisions == nil {
		return nil, connect.NewError(connect.CodeUnimplemented, errNoDecisions)
	}
	list, err := v.s.cfg.Decisions.ListDecisions(q)
	if err != nil {
		return nil, decisionErr(err)
	}
	out := &adminv1.ListDecisionsResponse{}
	if !v.s.cfg.Key.IsZero() {
		out.Node = v.s.cfg.Key.ID().String()
	}
	for _, d := range list {
		out.Decisions = append(out.Decisions, decisionPB(d))
	}
	return connect.NewResponse(out), nil
}

// LiftDecision checks the request, then has the node lift the agent's throttle or quarantine
// as the caller; with signed_op, on every node as the signing operator (liftAll). The lift's record (who, when, reason) is the audit trail; it is also logged.
func (v *service) LiftDecision(ctx context.Context, req *connect.Request[adminv1.LiftDecisionRequest]) (*connect.Response[adminv1.LiftDecisionResponse], error) {
	m := req.Msg
	switch {
	case (m.Agent == "") == (m.DecisionId == ""):
		return nil, invalidArg(identity.ErrInvalid, "agent, decision_id", "give exactly one")
	case m.Agent != "":
		if err := identity.ValidateName(m.Agent); err != nil {
			return nil, invalidArg(identity.ErrInvalid, "agent", "%v", err)
		}
	default:
		if !isDecisionID(m.DecisionId) {
			return nil, invalidArg(identity.ErrInvalid, "decision_id", "%.80q is not 16 hex digits", m.DecisionId)
		}
	}
	if p := alerts.ReasonProblem(m.Reason); p != "" {
		return nil, invalidArg(identity.ErrInvalid, "reason", "%s", p)
	}
	if len(m.SignedOp) > 0 {
		return v.liftAll(ctx, m)
	}
	if v.s.cfg.Decisions == nil {
		return nil, connect.NewError(connect.CodeUnimplemented, errNoDecisions)
	}
	l := Lift{Agent: m.Agent, DecisionID: m.DecisionId, By: who(ctx), Reason: m.Reason}
	d, err := v.s.cfg.Decisions.LiftDecision(l)
	if err != nil {
		v.s.cfg.Logger.Info("admin: lift refused", "agent", l.Agent, "decision", l.DecisionID, "by", l.By, "err", err)
		return nil, decisionErr(err)
	}
	v.s.cfg.Logger.Info("admin: decision lifted", "agent", d.Agent, "lifted", d.Lifted, "lifted_id", d.LiftedID,
		"by", d.By, "reason", d.Reason, "id", d.ID)
	out := &adminv1.LiftDecisionResponse{Decision: decisionPB(d)}
	if !v.s.cfg.Key.IsZero() {
		out.Node = v.s.cfg.Key.ID().String()
	}
	return connect.NewResponse(out), nil
}

// isDecisionID reports whether id has the shape of a stored decision's ID: 16 lowercase hex
// digits.
func isDecisionID(id string) bool {
	if len(id) != 16 {
		return false
	}
	for i := range len(id) {
		if c := id[i]; !(c >= '0' && c <= '9') && !(c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
