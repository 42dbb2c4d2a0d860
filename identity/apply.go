package identity

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/vigil-mesh/vigil/identity/policy"
)

// mOfN reports whether a command needs Threshold distinct operator signatures.
func mOfN(p Payload) bool {
	switch p := p.(type) {
	case *AddOperator, *RemoveOperator, *SetThreshold, *ReinstateAgent, *SetRevokeQuorum:
		return true
	case *SetAutomatedResponse:
		return !p.Enabled
	}
	return false
}

// NeedsThreshold reports whether the registry requires the operator threshold M of distinct
// operator signatures on a command carrying p (M-of-N); other operator commands need one.
func NeedsThreshold(p Payload) bool { return mOfN(p) }

// effect is what a successful kind rule reports for the audit history.
type effect struct {
	subjects []subject
	detail   string
}

// Apply applies a verified command at time now, or rejects it and changes nothing.
//
// Checks, in order: genesis first and only once (ErrNoGenesis, ErrAlreadyInitialised), cluster
// (ErrWrongCluster), the issued-at window against max(previous now, now) (ErrStale,
// ErrFromFuture; genesis is exempt, see doc.go), the nonce (ErrReplay), the signers' authority
// (ErrUnauthorized, ErrInsufficientSignatures), then the kind's own rules.
//
// now must be the same on every replica (for example the timestamp the leader put in the log
// entry), never each replica's own clock at apply time.
func (r *Registry) Apply(v *VerifiedCommand, now time.Time) error {
	if v == nil || v.cmd == nil || v.payload == nil {
		return invalidf("command", "nil or not verified")
	}
	if now.IsZero() || !timeRepresentable(now) {
		return invalidf("now", "zero or outside the representable range")
	}
	c := v.cmd
	if !r.initialised && c.Kind != KindGenesis {
		return errf(ErrNoGenesis, "%s before genesis", c.Kind)
	}
	if r.initialised && c.Kind == KindGenesis {
		return errf(ErrAlreadyInitialised, "cluster %s already has a genesis", r.cluster)
	}
	nowN := now.UnixNano()
	if r.initialised {
		nowN = max(nowN, r.lastNow)
	}
	nowT := time.Unix(0, nowN)

	if g, ok := v.payload.(*Genesis); ok {
		if c.ClusterID != g.ClusterID {
			return errf(ErrWrongCluster, "genesis command for cluster %s carries payload for %s", c.ClusterID, g.ClusterID)
		}
	} else {
		if c.ClusterID != r.cluster {
			return errf(ErrWrongCluster, "command for cluster %s, this is %s", c.ClusterID, r.cluster)
		}
		if c.IssuedAt.Before(nowT.Add(-r.limits.MaxCommandAge)) {
			return errf(ErrStale, "issued at %s, older than %s before %s", c.IssuedAt.UTC().Format(time.RFC3339Nano), r.limits.MaxCommandAge, nowT.UTC().Format(time.RFC3339Nano))
		}
		if c.IssuedAt.After(nowT.Add(r.limits.MaxClockSkew)) {
			return errf(ErrFromFuture, "issued at %s, more than %s after %s", c.IssuedAt.UTC().Format(time.RFC3339Nano), r.limits.MaxClockSkew, nowT.UTC().Format(time.RFC3339Nano))
		}
	}
	if exp, seen := r.nonces[c.Nonce]; seen && exp >= nowN {
		return errf(ErrReplay, "nonce %x already used", c.Nonce)
	}
	if err := r.authorize(v); err != nil {
		return err
	}

	var (
		eff effect
		err error
	)
	// Each rule checks everything before it changes anything.
	switch p := v.payload.(type) {
	case *Genesis:
		eff, err = r.applyGenesis(p, nowN)
	case *RegisterAgent:
		eff, err = r.applyRegister(p, nowN)
	case *RevokeAgent:
		eff, err = r.applyRevoke(p)
	case *QuarantineAgent:
		eff, err = r.applyQuarantine(p)
	case *ReleaseAgent:
		eff, err = r.applyRelease(p)
	case *RenewAgent:
		eff, err = r.applyRenew(p, nowN)
	case *RotateAgentKey:
		eff, err = r.applyRotate(p)
	case *ReinstateAgent:
		eff, err = r.applyReinstate(p, nowN)
	case *AddOperator:
		eff, err = r.applyAddOperator(p)
	case *RemoveOperator:
		eff, err = r.applyRemoveOperator(p)
	case *SetThreshold:
		eff, err = r.applySetThreshold(p)
	case *AdmitNode:
		eff, err = r.applyAdmitNode(p)
	case *RemoveNode:
		eff, err = r.applyRemoveNode(p)
	case *SetPolicy:
		eff, err = r.applySetPolicy(p)
	case *SetAutomatedResponse:
		eff, err = r.applyAutomatedResponse(p)
	case *AutoRevokeAgent:
		eff, err = r.applyAutoRevoke(p, nowT)
	case *SetRevokeQuorum:
		eff, err = r.applyRevokeQuorum(p)
	default:
		err = errf(ErrMalformed, "unknown payload type %T", p)
	}
	if err != nil {
		return err
	}

	// Committed: nothing below can fail.
	r.lastNow = nowN
	r.pruneNonces(nowN)
	if exp := satAdd(timeToWire(c.IssuedAt), int64(r.limits.MaxCommandAge)); exp >= nowN {
		r.addNonce(c.Nonce, exp)
	}
	r.appendAudit(nowN, c.Kind, v.signers, eff, v.digest)
	return nil
}

func satAdd(a, b int64) int64 {
	if b > 0 && a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

func (r *Registry) authorize(v *VerifiedCommand) error {
	if g, ok := v.payload.(*Genesis); ok {
		for _, s := range v.signers {
			if !slices.ContainsFunc(g.Operators, func(o OperatorEntry) bool { return o.Key == s.k }) {
				return errf(ErrUnauthorized, "genesis signer %s is not one of its operators", s)
			}
		}
		if len(v.signers) < g.Threshold {
			return errf(ErrInsufficientSignatures, "genesis needs %d of its operators, got %d", g.Threshold, len(v.signers))
		}
		return nil
	}
	if _, ok := v.payload.(*AutoRevokeAgent); ok {
		if !r.autoResponse {
			return errf(ErrUnauthorized, "automated revocation while automated response is disabled")
		}
		for _, s := range v.signers {
			if o, ok := r.keys[s.k]; !ok || o.role != RoleNode {
				return errf(ErrUnauthorized, "signer %s of an automated revocation is not an admitted node", s)
			}
		}
		return nil // the quorum is counted over the evidence signals (applyAutoRevoke)
	}
	for _, s := range v.signers {
		if o, ok := r.keys[s.k]; !ok || o.role != RoleOperator {
			return errf(ErrUnauthorized, "signer %s is not an operator", s)
		}
	}
	if mOfN(v.payload) && len(v.signers) < r.threshold {
		return errf(ErrInsufficientSignatures, "%s needs %d distinct operator signatures, got %d",
			v.payload.Kind(), r.threshold, len(v.signers))
	}
	return nil
}

func (r *Registry) applyGenesis(g *Genesis, nowN int64) (effect, error) {
	if g.ClusterID.IsZero() {
		return effect{}, invalidf("cluster_id", "zero")
	}
	if err := validateTrustDomain(g.TrustDomain); err != nil {
		return effect{}, err
	}
	if len(g.Operators) == 0 {
		return effect{}, invalidf("operators", "at least one operator is required")
	}
	if g.Threshold < 1 || g.Threshold > len(g.Operators) {
		return effect{}, invalidf("threshold", "%d not in 1..%d (number of operators)", g.Threshold, len(g.Operators))
	}
	if len(g.Nodes) == 0 {
		return effect{}, invalidf("nodes", "at least one node is required")
	}
	names := map[string]bool{}
	keys := map[PublicKey]bool{}
	var subj []subject
	for i, o := range g.Operators {
		f := fmt.Sprintf("operators[%d]", i)
		if err := validateNameField(f+".name", o.Name); err != nil {
			return effect{}, err
		}
		if err := validateKeyField(f+".key", o.Key); err != nil {
			return effect{}, err
		}
		if names[o.Name] || keys[o.Key] {
			return effect{}, invalidf(f, "duplicate name or key")
		}
		names[o.Name], keys[o.Key] = true, true
		subj = append(subj, subject{o.Name, o.Key})
	}
	for i := range g.Nodes {
		n := &g.Nodes[i]
		if err := validateNodeEntry(n); err != nil {
			return effect{}, fmt.Errorf("identity: nodes[%d]: %w", i, err)
		}
		if names[n.Name] || keys[n.Key] {
			return effect{}, invalidf(fmt.Sprintf("nodes[%d]", i), "duplicate name or key")
		}
		names[n.Name], keys[n.Key] = true, true
		subj = append(subj, subject{n.Name, n.Key})
	}

	r.initialised = true
	r.cluster = g.ClusterID
	r.trustDomain = g.TrustDomain
	r.threshold = g.Threshold
	r.revokeQuorum = DefaultRevokeQuorum
	for _, o := range g.Operators {
		r.operators[o.Name] = o.Key
		r.keys[o.Key] = keyOwner{RoleOperator, o.Name}
	}
	for i := range g.Nodes {
		r.addNode(&g.Nodes[i])
	}
	return effect{subj, fmt.Sprintf("genesis of cluster %s, trust domain %s, %d operators, threshold %d, %d nodes",
		g.ClusterID, g.TrustDomain, len(g.Operators), g.Threshold, len(g.Nodes))}, nil
}

func (r *Registry) addNode(n *NodeEntry) {
	cp := *n
	cp.Addrs = slices.Clone(n.Addrs)
	r.nodes[n.Name] = &cp
	r.keys[n.Key] = keyOwner{RoleNode, n.Name}
}

func (r *Registry) checkExpiry(t time.Time, nowN int64) error {
	if t.IsZero() || timeToWire(t) <= nowN {
		return invalidf("expires_at", "%s must be after now (%s)", t.UTC().Format(time.RFC3339), time.Unix(0, nowN).UTC().Format(time.RFC3339))
	}
	return nil
}

func (r *Registry) applyRegister(p *RegisterAgent, nowN int64) (effect, error) {
	if err := validateNameField("name", p.Name); err != nil {
		return effect{}, err
	}
	if err := validateKeyField("key", p.Key); err != nil {
		return effect{}, err
	}
	if err := r.checkExpiry(p.ExpiresAt, nowN); err != nil {
		return effect{}, err
	}
	if err := validateLabels(p.Labels); err != nil {
		return effect{}, err
	}
	caps := sortedSet(p.Capabilities)
	if err := validateCapabilities(caps); err != nil {
		return effect{}, err
	}
	if err := r.nameInUse("name", p.Name); err != nil {
		return effect{}, err
	}
	if err := r.keyInUse("key", p.Key); err != nil {
		return effect{}, err
	}
	if len(r.agents) >= MaxAgents { // ReadSnapshot accepts at most MaxAgents
		return effect{}, invalidf("name", "already %d agents, max %d", len(r.agents), MaxAgents)
	}
	a := &agentRec{name: p.Name, key: p.Key, caps: caps, status: StatusActive,
		expires: timeToWire(p.ExpiresAt), registered: nowN}
	for _, k := range slices.Sorted(mapsKeys(p.Labels)) {
		a.labels = append(a.labels, k, p.Labels[k])
	}
	r.agents[p.Name] = a
	r.keys[p.Key] = keyOwner{RoleAgent, p.Name}
	return effect{[]subject{{p.Name, p.Key}}, fmt.Sprintf("registered agent %s, expires %s, %d labels, %d capabilities",
		p.Name, p.ExpiresAt.UTC().Format(time.RFC3339), len(p.Labels), len(caps))}, nil
}

// agentFor returns the agent called name, or ErrNotFound / ErrInvalid (name syntax).
func (r *Registry) agentFor(name string) (*agentRec, error) {
	if err := validateNameField("name", name); err != nil {
		return nil, err
	}
	a, ok := r.agents[name]
	if !ok {
		return nil, errf(ErrNotFound, "name: no agent %q", name)
	}
	return a, nil
}

func (r *Registry) applyRevoke(p *RevokeAgent) (effect, error) {
	a, err := r.agentFor(p.Name)
	if err != nil {
		return effect{}, err
	}
	if err := validateText("reason", p.Reason, MaxReasonLen); err != nil {
		return effect{}, err
	}
	if a.status == StatusRevoked {
		return effect{}, invalidf("name", "agent %q already revoked", p.Name)
	}
	a.status, a.reason = StatusRevoked, p.Reason
	r.retired[a.key] = struct{}{}
	return effect{[]subject{{a.name, a.key}}, fmt.Sprintf("revoked agent %s: %s", a.name, p.Reason)}, nil
}

func (r *Registry) applyQuarantine(p *QuarantineAgent) (effect, error) {
	a, err := r.agentFor(p.Name)
	if err != nil {
		return effect{}, err
	}
	if err := validateText("reason", p.Reason, MaxReasonLen); err != nil {
		return effect{}, err
	}
	if a.status != StatusActive {
		return effect{}, invalidf("name", "agent %q is %s, only an active agent can be quarantined", p.Name, a.status)
	}
	a.status, a.reason = StatusQuarantined, p.Reason
	return effect{[]subject{{a.name, a.key}}, fmt.Sprintf("quarantined agent %s: %s", a.name, p.Reason)}, nil
}

func (r *Registry) applyRelease(p *ReleaseAgent) (effect, error) {
	a, err := r.agentFor(p.Name)
	if err != nil {
		return effect{}, err
	}
	if a.status != StatusQuarantined {
		return effect{}, invalidf("name", "agent %q is %s, not quarantined", p.Name, a.status)
	}
	a.status, a.reason = StatusActive, ""
	return effect{[]subject{{a.name, a.key}}, "released agent " + a.name}, nil
}

func (r *Registry) applyRenew(p *RenewAgent, nowN int64) (effect, error) {
	a, err := r.agentFor(p.Name)
	if err != nil {
		return effect{}, err
	}
	if err := r.checkExpiry(p.ExpiresAt, nowN); err != nil {
		return effect{}, err
	}
	if a.status == StatusRevoked {
		return effect{}, invalidf("name", "agent %q is revoked; renew does not reinstate", p.Name)
	}
	a.expires = timeToWire(p.ExpiresAt)
	return effect{[]subject{{a.name, a.key}}, fmt.Sprintf("renewed agent %s until %s", a.name, p.ExpiresAt.UTC().Format(time.RFC3339))}, nil
}

func (r *Registry) applyRotate(p *RotateAgentKey) (effect, error) {
	a, err := r.agentFor(p.Name)
	if err != nil {
		return effect{}, err
	}
	if err := validateKeyField("new_key", p.NewKey); err != nil {
		return effect{}, err
	}
	if a.status == StatusRevoked {
		return effect{}, invalidf("name", "agent %q is revoked; use reinstate-agent", p.Name)
	}
	if err := r.keyInUse("new_key", p.NewKey); err != nil {
		return effect{}, err
	}
	old := a.key
	delete(r.keys, old)
	r.retired[old] = struct{}{} // the old key can never come back
	a.key = p.NewKey
	r.keys[p.NewKey] = keyOwner{RoleAgent, a.name}
	return effect{[]subject{{a.name, p.NewKey}, {"", old}}, fmt.Sprintf("rotated key of agent %s from %s to %s", a.name, old.ID(), p.NewKey.ID())}, nil
}

// applyReinstate brings a revoked agent back. Decision: it always needs a fresh key. The old key
// was retired at revocation (revocation usually means the key may be in someone else's hands),
// so offering it again fails with ErrRevokedKey like any other retired key.
func (r *Registry) applyReinstate(p *ReinstateAgent, nowN int64) (effect, error) {
	a, err := r.agentFor(p.Name)
	if err != nil {
		return effect{}, err
	}
	if err := validateKeyField("key", p.Key); err != nil {
		return effect{}, err
	}
	if err := r.checkExpiry(p.ExpiresAt, nowN); err != nil {
		return effect{}, err
	}
	if a.status != StatusRevoked {
		return effect{}, invalidf("name", "agent %q is %s, only a revoked agent can be reinstated", p.Name, a.status)
	}
	if err := r.keyInUse("key", p.Key); err != nil {
		return effect{}, err
	}
	old := a.key
	delete(r.keys, old) // stays in retired
	a.key, a.status, a.reason, a.expires = p.Key, StatusActive, "", timeToWire(p.ExpiresAt)
	r.keys[p.Key] = keyOwner{RoleAgent, a.name}
	return effect{[]subject{{a.name, p.Key}, {"", old}}, fmt.Sprintf("reinstated agent %s with key %s until %s",
		a.name, p.Key.ID(), p.ExpiresAt.UTC().Format(time.RFC3339))}, nil
}

func (r *Registry) applyAddOperator(p *AddOperator) (effect, error) {
	o := p.Operator
	if err := validateNameField("operator.name", o.Name); err != nil {
		return effect{}, err
	}
	if err := validateKeyField("operator.key", o.Key); err != nil {
		return effect{}, err
	}
	if len(r.operators) >= MaxOperators {
		return effect{}, invalidf("operator", "already %d operators, max %d", len(r.operators), MaxOperators)
	}
	if err := r.nameInUse("operator.name", o.Name); err != nil {
		return effect{}, err
	}
	if err := r.keyInUse("operator.key", o.Key); err != nil {
		return effect{}, err
	}
	r.operators[o.Name] = o.Key
	r.keys[o.Key] = keyOwner{RoleOperator, o.Name}
	return effect{[]subject{{o.Name, o.Key}}, "added operator " + o.Name}, nil
}

func (r *Registry) applyRemoveOperator(p *RemoveOperator) (effect, error) {
	if err := validateNameField("name", p.Name); err != nil {
		return effect{}, err
	}
	k, ok := r.operators[p.Name]
	if !ok {
		return effect{}, errf(ErrNotFound, "name: no operator %q", p.Name)
	}
	if len(r.operators)-1 < r.threshold {
		return effect{}, invalidf("name", "removing operator %q would leave %d operators, below the threshold %d",
			p.Name, len(r.operators)-1, r.threshold)
	}
	delete(r.operators, p.Name)
	delete(r.keys, k)
	r.retired[k] = struct{}{}
	return effect{[]subject{{p.Name, k}}, "removed operator " + p.Name}, nil
}

func (r *Registry) applySetThreshold(p *SetThreshold) (effect, error) {
	if p.Threshold < 1 || p.Threshold > len(r.operators) {
		return effect{}, invalidf("threshold", "%d not in 1..%d (number of operators)", p.Threshold, len(r.operators))
	}
	old := r.threshold
	r.threshold = p.Threshold
	return effect{nil, fmt.Sprintf("threshold %d -> %d", old, p.Threshold)}, nil
}

func (r *Registry) applyAdmitNode(p *AdmitNode) (effect, error) {
	n := &p.Node
	if err := validateNodeEntry(n); err != nil {
		return effect{}, err
	}
	if len(r.nodes) >= MaxNodes {
		return effect{}, invalidf("node", "already %d nodes, max %d", len(r.nodes), MaxNodes)
	}
	if err := r.nameInUse("node.name", n.Name); err != nil {
		return effect{}, err
	}
	if err := r.keyInUse("node.key", n.Key); err != nil {
		return effect{}, err
	}
	r.addNode(n)
	return effect{[]subject{{n.Name, n.Key}}, fmt.Sprintf("admitted node %s (site %q, voter %t)", n.Name, n.Site, n.Voter)}, nil
}

func (r *Registry) applyRemoveNode(p *RemoveNode) (effect, error) {
	if err := validateNameField("name", p.Name); err != nil {
		return effect{}, err
	}
	n, ok := r.nodes[p.Name]
	if !ok {
		return effect{}, errf(ErrNotFound, "name: no node %q", p.Name)
	}
	delete(r.nodes, p.Name)
	delete(r.keys, n.Key)
	r.retired[n.Key] = struct{}{}
	return effect{[]subject{{n.Name, n.Key}}, "removed node " + n.Name}, nil
}

func (r *Registry) applySetPolicy(p *SetPolicy) (effect, error) {
	if r.policyVersion == math.MaxUint64 || p.Version != r.policyVersion+1 {
		return effect{}, errf(ErrVersionConflict, "version: got %d, want %d", p.Version, r.policyVersion+1)
	}
	if len(p.Document) > MaxPolicySize {
		return effect{}, invalidf("document", "%d bytes, max %d", len(p.Document), MaxPolicySize)
	}
	// Every replica parses the same bytes with the same pure parser, so all refuse alike.
	if _, err := policy.Parse(p.Document); err != nil {
		return effect{}, invalidf("document", "%v", err)
	}
	r.policyVersion, r.policyDoc = p.Version, slices.Clone(p.Document)
	return effect{nil, fmt.Sprintf("policy version %d (%d bytes)", p.Version, len(p.Document))}, nil
}

func (r *Registry) applyAutomatedResponse(p *SetAutomatedResponse) (effect, error) {
	r.autoResponse = p.Enabled
	return effect{nil, fmt.Sprintf("automated response enabled=%t", p.Enabled)}, nil
}

func (r *Registry) applyRevokeQuorum(p *SetRevokeQuorum) (effect, error) {
	if p.Quorum < 1 || p.Quorum > MaxNodes {
		return effect{}, invalidf("quorum", "%d not in 1..%d", p.Quorum, MaxNodes)
	}
	old := r.revokeQuorum
	r.revokeQuorum = p.Quorum
	return effect{nil, fmt.Sprintf("revoke quorum %d -> %d", old, p.Quorum)}, nil
}

// applyAutoRevoke checks the evidence of an automated revocation (checkAutoRevoke), then
// revokes.
func (r *Registry) applyAutoRevoke(p *AutoRevokeAgent, now time.Time) (effect, error) {
	names, err := r.checkAutoRevoke(p, now)
	if err != nil {
		return effect{}, err
	}
	eff, err := r.applyRevoke(&RevokeAgent{Name: p.Name, Reason: p.Reason})
	if err != nil {
		return effect{}, err
	}
	eff.detail = fmt.Sprintf("automated %s (signals from %s)", eff.detail, strings.Join(names, ", "))
	return eff, nil
}

// checkAutoRevoke checks the evidence of an automated revocation without changing anything.
// Every signal must be for this cluster, name this agent by its name and current key, come from
// an admitted node, and be observed within [now − MaxCommandAge, now + MaxClockSkew]; any
// signal that fails rejects the whole command (the proposer sends only what it verified, so a
// failure means a stale or forged proposal). Signatures were checked by Verify. Signals from the
// same reporter count once; fewer than RevokeQuorum distinct reporters is
// ErrInsufficientSignatures. It returns the reporters' node names, sorted.
func (r *Registry) checkAutoRevoke(p *AutoRevokeAgent, now time.Time) ([]string, error) {
	a, err := r.agentFor(p.Name)
	if err != nil {
		return nil, err
	}
	reporters := make(map[PublicKey]struct{}, len(p.Signals))
	var names []string
	for i := range p.Signals {
		s := &p.Signals[i]
		f := fmt.Sprintf("signals[%d]", i)
		if s.ClusterID != r.cluster {
			return nil, errf(ErrWrongCluster, "%s: signal for cluster %s, this is %s", f, s.ClusterID, r.cluster)
		}
		if s.Subject.Name != p.Name || s.Subject.Key != a.key {
			return nil, invalidf(f+".subject", "names agent %q key %s, the command revokes %q whose key is %s",
				s.Subject.Name, s.Subject.Key.ID(), p.Name, a.key.ID())
		}
		if o, ok := r.keys[s.Reporter]; !ok || o.role != RoleNode {
			return nil, errf(ErrUnauthorized, "%s: reporter %s is not an admitted node", f, s.Reporter.ID())
		}
		if err := s.FreshAt(now, r.limits.MaxCommandAge, r.limits.MaxClockSkew); err != nil {
			return nil, fmt.Errorf("identity: %s: %w", f, err)
		}
		if _, dup := reporters[s.Reporter]; !dup {
			reporters[s.Reporter] = struct{}{}
			names = append(names, r.keys[s.Reporter].name)
		}
	}
	if len(reporters) < r.revokeQuorum {
		return nil, errf(ErrInsufficientSignatures, "automated revocation needs signals from %d distinct admitted nodes, got %d",
			r.revokeQuorum, len(reporters))
	}
	slices.Sort(names)
	return names, nil
}
