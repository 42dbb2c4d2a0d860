package admin

import (
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-mesh/vigil/identity"
	"github.com/vigil-mesh/vigil/node/alerts"
	"github.com/vigil-mesh/vigil/node/telemetry"
)

// Config configures the admin server. Zero values are not defaults: start from DefaultConfig().
type Config struct {
	// Key is the node key: the server's TLS certificate is derived from it (go-libp2p's TLS
	// identity), so clients pin the node's peer ID. Required by ServeTLS; the Unix socket and
	// Handler need none.
	Key identity.PrivateKey

	// Activity answers AgentActivity from the node's telemetry (telemetry.Buffer.Query). Nil:
	// the RPC answers Unimplemented.
	Activity func(telemetry.Query) []telemetry.Record

	// Alerts answers ListAlerts, AckAlert and ResolveAlert from the node's alert store. Nil: the
	// RPCs answer Unimplemented.
	Alerts AlertBackend

	// Decisions answers ListDecisions and LiftDecision from the node's stored collective-response
	// decisions. Nil: the RPCs answer Unimplemented.
	Decisions DecisionBackend
	// Gossip answers the gossip columns of ListMembers and the keyring methods (GossipKeys,
	// ChangeGossipKey). Nil when gossip is off: members show gossip_state "off" and the keyring
	// methods answer FailedPrecondition.
	Gossip GossipBackend

	// Ready says why the node cannot serve yet (its registry is being replayed, it is joining,
	// it was removed), or nil. While it returns an error, a caller the registry cannot classify
	// (role unknown) is answered Unavailable with that reason instead of PermissionDenied, since
	// the registry may not hold its key yet; when the error wraps consensus.ErrRemoved, every
	// call is answered FailedPrecondition with it. Must not block. Default nil: always ready.
	Ready func() error

	// Logger receives the server's structured logs. Default slog.Default().
	Logger *slog.Logger

	// Now is the clock used for agent status (expired) and principal roles. Default time.Now.
	Now func() time.Time

	// MaxRequestBytes caps one request message (connect.WithReadMaxBytes); a larger request is
	// refused with ResourceExhausted before it is decoded. Default 1 MiB. A signed command is at
	// most identity.MaxCommandSize (64 KiB), so the default leaves room for the envelope.
	MaxRequestBytes int

	// AuditDefaultLimit is the number of audit entries returned when a request sets no limit.
	// Default 100.
	AuditDefaultLimit int
	// AuditMaxLimit caps the limit of one audit request (bounds the response). Default 1000.
	AuditMaxLimit int

	// ListDefaultLimit is the number of agents returned when a request sets no limit.
	// Default 1000.
	ListDefaultLimit int
	// ListMaxLimit caps the limit of one agent list request. Default 10000.
	ListMaxLimit int

	// ReadHeaderTimeout bounds reading a request's headers (slowloris). Default 10 s.
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes idle keep-alive connections. Default 2 min.
	IdleTimeout time.Duration

	// Metrics, when set, receives vigil_admin_calls_total{method,code} and
	// vigil_admin_call_duration_seconds{method}. Default nil: no metrics.
	Metrics prometheus.Registerer
}

// DefaultConfig returns the defaults documented on Config; the caller sets Key to serve TLS.
func DefaultConfig() Config {
	return Config{
		Logger:            slog.Default(),
		Now:               time.Now,
		MaxRequestBytes:   1 << 20,
		AuditDefaultLimit: 100,
		AuditMaxLimit:     1000,
		ListDefaultLimit:  1000,
		ListMaxLimit:      10000,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
}

// Validate checks every field and the cross-field rules. Key is checked by ServeTLS only.
func (c Config) Validate() error {
	switch {
	case c.Logger == nil:
		return errf(ErrInvalidConfig, "logger: required")
	case c.Now == nil:
		return errf(ErrInvalidConfig, "now: required")
	case c.MaxRequestBytes < identity.MaxCommandSize+64:
		return errf(ErrInvalidConfig, "max_request_bytes: %d cannot hold a signed command of %d bytes", c.MaxRequestBytes, identity.MaxCommandSize)
	case c.AuditDefaultLimit <= 0 || c.AuditMaxLimit < c.AuditDefaultLimit:
		return errf(ErrInvalidConfig, "audit_default_limit, audit_max_limit: need 0 < default (%d) <= max (%d)", c.AuditDefaultLimit, c.AuditMaxLimit)
	case c.ListDefaultLimit <= 0 || c.ListMaxLimit < c.ListDefaultLimit:
		return errf(ErrInvalidConfig, "list_default_limit, list_max_limit: need 0 < default (%d) <= max (%d)", c.ListDefaultLimit, c.ListMaxLimit)
	case c.ReadHeaderTimeout <= 0:
		return errf(ErrInvalidConfig, "read_header_timeout: must be positive")
	case c.IdleTimeout <= 0:
		return errf(ErrInvalidConfig, "idle_timeout: must be positive")
	}
	return nil
}

// AlertBackend is what the alert RPCs need from the node. who is the caller: its peer ID, or
// "local" for the Unix socket.
type AlertBackend interface {
	ListAlerts(q alerts.Query) ([]alerts.Alert, error)
	AckAlert(id, who string) (alerts.Alert, error)
	ResolveAlert(id, who string, falsePositive bool) (alerts.Alert, error)
}

// DecisionBackend is what the decision RPCs need from the node. Both methods may be called
// concurrently and block on the node's decision store (a lift writes its record with an fsync).
// The returned slice belongs to the caller.
type DecisionBackend interface {
	// ListDecisions returns the stored decisions q selects, newest first; q has been checked
	// (DecisionQuery.Check).
	ListDecisions(q alerts.DecisionQuery) ([]alerts.Decision, error)
	// LiftDecision ends the throttle or quarantine of the agent l names on this node, forgets
	// the signals counted for it, and records the lift (action "lift", l.By, l.Reason) as a
	// decision, which it returns. l has been checked. Errors: alerts.ErrNoDecision or
	// identity.ErrNotFound (no such decision or agent); response.ErrRevoked (the agent is
	// revoked, or the decision is a revoke); response.ErrNothingToLift (no throttle or
	// quarantine running, or the decision is itself a lift). A refused lift changes nothing.
	LiftDecision(l Lift) (alerts.Decision, error)
}

// Lift is one operator's request to lift an agent's response on the answering node.
type Lift struct {
	// Agent names the agent; or, when empty, DecisionID names one of its stored decisions.
	Agent      string
	DecisionID string
	// By is the caller: its peer ID, or "local" for the Unix socket.
	By string
	// Reason is why (required; alerts.CheckReason).
	Reason string
}
