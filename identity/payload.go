package identity

import (
	"fmt"
	"slices"
	"time"
)

// Kind of a command.
type Kind uint8

const (
	KindGenesis Kind = 1 + iota
	KindRegisterAgent
	KindRevokeAgent
	KindQuarantineAgent
	KindReleaseAgent
	KindRenewAgent
	KindRotateAgentKey
	KindReinstateAgent
	KindAddOperator
	KindRemoveOperator
	KindSetThreshold
	KindAdmitNode
	KindRemoveNode
	KindSetPolicy
	KindSetAutomatedResponse
	// Additions to the contract (see doc.go): automated revocation by a quorum of nodes.
	KindAutoRevokeAgent
	KindSetRevokeQuorum
	kindEnd
)

var kindNames = [...]string{"", "genesis", "register-agent", "revoke-agent", "quarantine-agent",
	"release-agent", "renew-agent", "rotate-agent-key", "reinstate-agent", "add-operator",
	"remove-operator", "set-threshold", "admit-node", "remove-node", "set-policy",
	"set-automated-response", "auto-revoke-agent", "set-revoke-quorum"}

func (k Kind) String() string {
	if k.valid() {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

func (k Kind) valid() bool { return k >= KindGenesis && k < kindEnd }

// Payload is the body of a command; one Go type per Kind.
type Payload interface {
	Kind() Kind
	encode(e *encoder)
	decode(d *decoder)
}

type (
	// Genesis creates the cluster: its ID, trust domain, first operators, threshold M and nodes.
	Genesis struct {
		ClusterID   ClusterID
		TrustDomain string
		Operators   []OperatorEntry
		Threshold   int
		Nodes       []NodeEntry
	}
	OperatorEntry struct {
		Name string
		Key  PublicKey
	}
	NodeEntry struct {
		Name  string
		Key   PublicKey
		Site  string
		Voter bool
		Addrs []string // libp2p multiaddrs without /p2p, in preference order
	}
	// RegisterAgent registers a new agent. Capabilities are a set: the encoding sorts and
	// de-duplicates them, so a decoded payload holds them sorted.
	RegisterAgent struct {
		Name         string
		Key          PublicKey
		Labels       map[string]string
		Capabilities []string
		ExpiresAt    time.Time
	}
	RevokeAgent struct {
		Name   string
		Reason string
	}
	QuarantineAgent struct {
		Name   string
		Reason string
	}
	ReleaseAgent struct{ Name string }
	RenewAgent   struct {
		Name      string
		ExpiresAt time.Time
	}
	RotateAgentKey struct {
		Name   string
		NewKey PublicKey
	}
	// ReinstateAgent brings a revoked agent back (M-of-N) under a fresh key.
	ReinstateAgent struct {
		Name      string
		Key       PublicKey
		ExpiresAt time.Time
	}
	AddOperator    struct{ Operator OperatorEntry } // M-of-N
	RemoveOperator struct{ Name string }            // M-of-N
	SetThreshold   struct{ Threshold int }          // M-of-N
	AdmitNode      struct{ Node NodeEntry }         //
	RemoveNode     struct{ Name string }            //
	SetPolicy      struct {                         //
		Version  uint64 // must be the current version + 1
		Document []byte // YAML that policy.Parse accepts (empty: the defaults), at most MaxPolicySize bytes
	}
	SetAutomatedResponse struct{ Enabled bool } // disabling is M-of-N, enabling needs one operator
	// AutoRevokeAgent is an automated revocation: signed only by admitted nodes, accepted only
	// while automated response is enabled, and carrying as evidence signed anomaly signals from
	// at least RevokeQuorum distinct admitted nodes, each naming this agent's current name and
	// key and observed inside the command window (see Registry.Apply).
	AutoRevokeAgent struct {
		Name    string
		Reason  string
		Signals []Signal // at most MaxAutoRevokeSignals, in the proposer's order
	}
	// SetRevokeQuorum sets how many distinct nodes must sign an AutoRevokeAgent (M-of-N).
	SetRevokeQuorum struct{ Quorum int }
)

func (*Genesis) Kind() Kind              { return KindGenesis }
func (*RegisterAgent) Kind() Kind        { return KindRegisterAgent }
func (*RevokeAgent) Kind() Kind          { return KindRevokeAgent }
func (*QuarantineAgent) Kind() Kind      { return KindQuarantineAgent }
func (*ReleaseAgent) Kind() Kind         { return KindReleaseAgent }
func (*RenewAgent) Kind() Kind           { return KindRenewAgent }
func (*RotateAgentKey) Kind() Kind       { return KindRotateAgentKey }
func (*ReinstateAgent) Kind() Kind       { return KindReinstateAgent }
func (*AddOperator) Kind() Kind          { return KindAddOperator }
func (*RemoveOperator) Kind() Kind       { return KindRemoveOperator }
func (*SetThreshold) Kind() Kind         { return KindSetThreshold }
func (*AdmitNode) Kind() Kind            { return KindAdmitNode }
func (*RemoveNode) Kind() Kind           { return KindRemoveNode }
func (*SetPolicy) Kind() Kind            { return KindSetPolicy }
func (*SetAutomatedResponse) Kind() Kind { return KindSetAutomatedResponse }
func (*AutoRevokeAgent) Kind() Kind      { return KindAutoRevokeAgent }
func (*SetRevokeQuorum) Kind() Kind      { return KindSetRevokeQuorum }

// newPayload returns an empty payload of kind k, or nil.
func newPayload(k Kind) Payload {
	switch k {
	case KindGenesis:
		return &Genesis{}
	case KindRegisterAgent:
		return &RegisterAgent{}
	case KindRevokeAgent:
		return &RevokeAgent{}
	case KindQuarantineAgent:
		return &QuarantineAgent{}
	case KindReleaseAgent:
		return &ReleaseAgent{}
	case KindRenewAgent:
		return &RenewAgent{}
	case KindRotateAgentKey:
		return &RotateAgentKey{}
	case KindReinstateAgent:
		return &ReinstateAgent{}
	case KindAddOperator:
		return &AddOperator{}
	case KindRemoveOperator:
		return &RemoveOperator{}
	case KindSetThreshold:
		return &SetThreshold{}
	case KindAdmitNode:
		return &AdmitNode{}
	case KindRemoveNode:
		return &RemoveNode{}
	case KindSetPolicy:
		return &SetPolicy{}
	case KindSetAutomatedResponse:
		return &SetAutomatedResponse{}
	case KindAutoRevokeAgent:
		return &AutoRevokeAgent{}
	case KindSetRevokeQuorum:
		return &SetRevokeQuorum{}
	}
	return nil
}

// EncodePayload returns the canonical encoding of p.
func EncodePayload(p Payload) []byte {
	var e encoder
	p.encode(&e)
	return e.b
}

// DecodePayload decodes the canonical encoding of a payload of kind k (strict: caps, no trailing
// bytes, canonical forms only).
func DecodePayload(k Kind, b []byte) (Payload, error) {
	p := newPayload(k)
	if p == nil {
		return nil, errf(ErrMalformed, "payload: unknown kind %d", k)
	}
	if len(b) > MaxCommandSize {
		return nil, tooLargef("payload: %d bytes", len(b))
	}
	d := decoder{b: b, ctx: k.String()}
	p.decode(&d)
	if err := d.finish(); err != nil {
		return nil, err
	}
	return p, nil
}

func (o *OperatorEntry) encode(e *encoder) { e.str(o.Name); e.key(o.Key) }
func (o *OperatorEntry) decode(d *decoder) {
	o.Name = d.str("name", MaxNameLen)
	o.Key = d.key()
}

func (n *NodeEntry) encode(e *encoder) {
	e.str(n.Name)
	e.key(n.Key)
	e.str(n.Site)
	e.boolean(n.Voter)
	e.uvarint(uint64(len(n.Addrs)))
	for _, a := range n.Addrs {
		e.str(a)
	}
}

func (n *NodeEntry) decode(d *decoder) {
	n.Name = d.str("name", MaxNameLen)
	n.Key = d.key()
	n.Site = d.str("site", MaxSiteLen)
	n.Voter = d.boolean()
	if c := d.count("addrs", MaxAddrs); c > 0 {
		n.Addrs = make([]string, c)
		for i := range n.Addrs {
			n.Addrs[i] = d.str("addr", MaxAddrLen)
		}
	}
}

func (g *Genesis) encode(e *encoder) {
	e.raw(g.ClusterID[:])
	e.str(g.TrustDomain)
	e.uvarint(uint64(len(g.Operators)))
	for i := range g.Operators {
		g.Operators[i].encode(e)
	}
	e.uvarint(uint64(max(g.Threshold, 0)))
	e.uvarint(uint64(len(g.Nodes)))
	for i := range g.Nodes {
		g.Nodes[i].encode(e)
	}
}

func (g *Genesis) decode(d *decoder) {
	copy(g.ClusterID[:], d.take(16))
	g.TrustDomain = d.str("trust_domain", MaxTrustDomainLen)
	if c := d.count("operators", MaxOperators); c > 0 {
		g.Operators = make([]OperatorEntry, c)
		for i := range g.Operators {
			g.Operators[i].decode(d)
		}
	}
	g.Threshold = d.boundedInt("threshold", MaxOperators)
	if c := d.count("nodes", MaxGenesisNodes); c > 0 {
		g.Nodes = make([]NodeEntry, c)
		for i := range g.Nodes {
			g.Nodes[i].decode(d)
		}
	}
}

// sortedSet returns the sorted, de-duplicated capabilities (the canonical order).
func sortedSet(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	out := slices.Clone(s)
	slices.Sort(out)
	return slices.Compact(out)
}

func (r *RegisterAgent) encode(e *encoder) {
	e.str(r.Name)
	e.key(r.Key)
	encodeLabels(e, r.Labels)
	caps := sortedSet(r.Capabilities)
	e.uvarint(uint64(len(caps)))
	for _, c := range caps {
		e.str(c)
	}
	e.time(r.ExpiresAt)
}

func (r *RegisterAgent) decode(d *decoder) {
	r.Name = d.str("name", MaxNameLen)
	r.Key = d.key()
	r.Labels = decodeLabels(d)
	r.Capabilities = decodeSet(d, "capabilities", MaxCapabilities, MaxCapabilityLen)
	r.ExpiresAt = d.time()
}

func encodeLabels(e *encoder, m map[string]string) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	e.uvarint(uint64(len(keys)))
	for _, k := range keys {
		e.str(k)
		e.str(m[k])
	}
}

func decodeLabels(d *decoder) map[string]string {
	n := d.count("labels", MaxLabels)
	if n == 0 {
		return nil
	}
	m := make(map[string]string, n)
	prev := ""
	for i := 0; i < n && d.err == nil; i++ {
		k := d.str("label key", MaxLabelKeyLen)
		v := d.str("label value", MaxLabelValueLen)
		if i > 0 && k <= prev {
			d.malformed("labels: keys not strictly increasing")
		}
		m[k], prev = v, k
	}
	return m
}

// decodeSet reads a list of strings that must be strictly increasing.
func decodeSet(d *decoder, what string, maxN, maxLen int) []string {
	n := d.count(what, maxN)
	if n == 0 {
		return nil
	}
	out := make([]string, 0, n)
	for i := 0; i < n && d.err == nil; i++ {
		s := d.str(what, maxLen)
		if i > 0 && s <= out[i-1] {
			d.malformed(what + ": not strictly increasing")
		}
		out = append(out, s)
	}
	return out
}

func (r *RevokeAgent) encode(e *encoder) { e.str(r.Name); e.str(r.Reason) }
func (r *RevokeAgent) decode(d *decoder) {
	r.Name = d.str("name", MaxNameLen)
	r.Reason = d.str("reason", MaxReasonLen)
}
func (r *QuarantineAgent) encode(e *encoder) { e.str(r.Name); e.str(r.Reason) }
func (r *QuarantineAgent) decode(d *decoder) {
	r.Name = d.str("name", MaxNameLen)
	r.Reason = d.str("reason", MaxReasonLen)
}
func (r *ReleaseAgent) encode(e *encoder) { e.str(r.Name) }
func (r *ReleaseAgent) decode(d *decoder) { r.Name = d.str("name", MaxNameLen) }
func (r *RenewAgent) encode(e *encoder)   { e.str(r.Name); e.time(r.ExpiresAt) }
func (r *RenewAgent) decode(d *decoder) {
	r.Name = d.str("name", MaxNameLen)
	r.ExpiresAt = d.time()
}
func (r *RotateAgentKey) encode(e *encoder) { e.str(r.Name); e.key(r.NewKey) }
func (r *RotateAgentKey) decode(d *decoder) {
	r.Name = d.str("name", MaxNameLen)
	r.NewKey = d.key()
}
func (r *ReinstateAgent) encode(e *encoder) { e.str(r.Name); e.key(r.Key); e.time(r.ExpiresAt) }
func (r *ReinstateAgent) decode(d *decoder) {
	r.Name = d.str("name", MaxNameLen)
	r.Key = d.key()
	r.ExpiresAt = d.time()
}
func (r *AddOperator) encode(e *encoder)    { r.Operator.encode(e) }
func (r *AddOperator) decode(d *decoder)    { r.Operator.decode(d) }
func (r *RemoveOperator) encode(e *encoder) { e.str(r.Name) }
func (r *RemoveOperator) decode(d *decoder) { r.Name = d.str("name", MaxNameLen) }
func (r *SetThreshold) encode(e *encoder)   { e.uvarint(uint64(max(r.Threshold, 0))) }
func (r *SetThreshold) decode(d *decoder)   { r.Threshold = d.boundedInt("threshold", MaxOperators) }
func (r *AdmitNode) encode(e *encoder)      { r.Node.encode(e) }
func (r *AdmitNode) decode(d *decoder)      { r.Node.decode(d) }
func (r *RemoveNode) encode(e *encoder)     { e.str(r.Name) }
func (r *RemoveNode) decode(d *decoder)     { r.Name = d.str("name", MaxNameLen) }
func (r *SetPolicy) encode(e *encoder)      { e.uvarint(r.Version); e.bytes(r.Document) }
func (r *SetPolicy) decode(d *decoder) {
	r.Version = d.uvarint()
	r.Document = d.bytes("document", MaxPolicySize)
}
func (r *SetAutomatedResponse) encode(e *encoder) { e.boolean(r.Enabled) }
func (r *SetAutomatedResponse) decode(d *decoder) { r.Enabled = d.boolean() }

func (r *AutoRevokeAgent) encode(e *encoder) {
	e.str(r.Name)
	e.str(r.Reason)
	e.uvarint(uint64(len(r.Signals)))
	for i := range r.Signals {
		r.Signals[i].encode(e)
	}
}
func (r *AutoRevokeAgent) decode(d *decoder) {
	r.Name = d.str("name", MaxNameLen)
	r.Reason = d.str("reason", MaxReasonLen)
	if c := d.count("signals", MaxAutoRevokeSignals); c > 0 {
		r.Signals = make([]Signal, c)
		for i := range r.Signals {
			r.Signals[i].decode(d)
		}
	}
}
func (r *SetRevokeQuorum) encode(e *encoder) { e.uvarint(uint64(max(r.Quorum, 0))) }
func (r *SetRevokeQuorum) decode(d *decoder) { r.Quorum = d.boundedInt("quorum", MaxNodes) }
