package identity

import (
	"container/heap"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// Status of a principal.
type Status uint8

const (
	StatusActive      Status = 1
	StatusQuarantined Status = 2
	StatusRevoked     Status = 3
	StatusExpired     Status = 4 // never stored: derived by Agent.StatusAt
)

func (s Status) String() string {
	switch s {
	case StatusActive:
		return "active"
	case StatusQuarantined:
		return "quarantined"
	case StatusRevoked:
		return "revoked"
	case StatusExpired:
		return "expired"
	}
	return "unknown"
}

// Agent is a copy of a registered agent's record.
type Agent struct {
	Name                    string
	ID                      ID
	Key                     PublicKey
	SPIFFE                  SPIFFEID
	Labels                  map[string]string
	Capabilities            []string // sorted
	Status                  Status   // stored status: active, quarantined or revoked
	ExpiresAt, RegisteredAt time.Time
	Reason                  string // of the last revocation or quarantine
}

// StatusAt returns StatusExpired when the agent is active and ExpiresAt <= now, else Status.
func (a Agent) StatusAt(now time.Time) Status {
	if a.Status == StatusActive && !a.ExpiresAt.After(now) {
		return StatusExpired
	}
	return a.Status
}

// Node is an admitted node.
type Node struct {
	Name  string
	ID    ID
	Key   PublicKey
	Site  string
	Voter bool
	Addrs []string
}

// Operator is a current operator.
type Operator struct {
	Name string
	ID   ID
	Key  PublicKey
}

type agentRec struct {
	name       string
	key        PublicKey
	labels     []string // k0, v0, k1, v1, … sorted by key (smaller than a map)
	caps       []string // sorted set
	status     Status
	expires    int64 // Unix ns
	registered int64 // Unix ns
	reason     string
}

type keyOwner struct {
	role Role
	name string
}

type nonceExp struct {
	exp   int64 // Unix ns after which a command with this nonce is stale anyway
	nonce [16]byte
}

// nonceHeap is a min-heap by (exp, nonce), for pruning in O(log n).
type nonceHeap []nonceExp

func (h nonceHeap) Len() int { return len(h) }
func (h nonceHeap) Less(i, j int) bool {
	if h[i].exp != h[j].exp {
		return h[i].exp < h[j].exp
	}
	return string(h[i].nonce[:]) < string(h[j].nonce[:])
}
func (h nonceHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *nonceHeap) Push(x any)   { *h = append(*h, x.(nonceExp)) }
func (h *nonceHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// Registry is the pure, deterministic state machine of principals, policy and audit history.
// It does no IO and never reads the clock: Apply takes `now`. Not safe for concurrent use.
type Registry struct {
	limits        Limits
	initialised   bool
	cluster       ClusterID
	trustDomain   string
	threshold     int
	lastNow       int64 // Unix ns: max of every applied command's now (never goes back)
	policyVersion uint64
	policyDoc     []byte
	autoResponse  bool
	revokeQuorum  int // distinct nodes needed for AutoRevokeAgent; DefaultRevokeQuorum at genesis

	operators map[string]PublicKey
	nodes     map[string]*NodeEntry
	agents    map[string]*agentRec
	keys      map[PublicKey]keyOwner // current key of every principal (revoked agents included)
	retired   map[PublicKey]struct{} // keys ever revoked, rotated out, or of removed principals
	nonces    map[[16]byte]int64     // nonce → exp
	nonceQ    nonceHeap              // same entries, by exp
	audit     []auditRec             // in seq order; times non-decreasing
	byName    map[string][]uint32    // audit indexes by subject name
	byKey     map[PublicKey][]uint32 // audit indexes by subject or signer key
}

// NewRegistry returns an empty registry with DefaultLimits.
func NewRegistry() *Registry {
	r, _ := NewRegistryWithLimits(DefaultLimits())
	return r
}

// NewRegistryWithLimits returns an empty registry with the given window. Every replica of one
// cluster must use the same Limits (they are part of the snapshot and the Hash).
func NewRegistryWithLimits(l Limits) (*Registry, error) {
	if err := l.Validate(); err != nil {
		return nil, err
	}
	return &Registry{
		limits:    l,
		operators: map[string]PublicKey{},
		nodes:     map[string]*NodeEntry{},
		agents:    map[string]*agentRec{},
		keys:      map[PublicKey]keyOwner{},
		retired:   map[PublicKey]struct{}{},
		nonces:    map[[16]byte]int64{},
		byName:    map[string][]uint32{},
		byKey:     map[PublicKey][]uint32{},
	}, nil
}

// Limits returns the registry's time window.
func (r *Registry) Limits() Limits { return r.limits }

// ClusterID returns the cluster ID, zero before genesis.
func (r *Registry) ClusterID() ClusterID { return r.cluster }

// TrustDomain returns the SPIFFE trust domain, "" before genesis.
func (r *Registry) TrustDomain() string { return r.trustDomain }

// Initialised reports whether genesis has been applied.
func (r *Registry) Initialised() bool { return r.initialised }

// Threshold returns M, the number of distinct operators needed for M-of-N commands.
func (r *Registry) Threshold() int { return r.threshold }

// Policy returns the policy version (0 = none) and a copy of the document.
func (r *Registry) Policy() (version uint64, doc []byte) {
	return r.policyVersion, slices.Clone(r.policyDoc)
}

// DefaultRevokeQuorum is the revoke quorum set at genesis.
const DefaultRevokeQuorum = 2

// RevokeQuorum returns how many distinct admitted nodes must sign an AutoRevokeAgent.
func (r *Registry) RevokeQuorum() int { return r.revokeQuorum }

// AutomatedResponse reports whether automated response is enabled (off after genesis).
func (r *Registry) AutomatedResponse() bool { return r.autoResponse }

// LastApplied returns the latest `now` of an applied command (zero before genesis).
func (r *Registry) LastApplied() time.Time {
	if !r.initialised {
		return time.Time{}
	}
	return time.Unix(0, r.lastNow).UTC()
}

func (r *Registry) agentView(a *agentRec) Agent {
	out := Agent{
		Name: a.name, ID: a.key.ID(), Key: a.key,
		Capabilities: slices.Clone(a.caps), Status: a.status,
		ExpiresAt: time.Unix(0, a.expires).UTC(), RegisteredAt: time.Unix(0, a.registered).UTC(),
		Reason: a.reason,
	}
	out.SPIFFE, _ = NewAgentSPIFFEID(r.trustDomain, a.name)
	if len(a.labels) > 0 {
		out.Labels = make(map[string]string, len(a.labels)/2)
		for i := 0; i < len(a.labels); i += 2 {
			out.Labels[a.labels[i]] = a.labels[i+1]
		}
	}
	return out
}

// Agent returns the agent called name (any status).
func (r *Registry) Agent(name string) (Agent, bool) {
	a, ok := r.agents[name]
	if !ok {
		return Agent{}, false
	}
	return r.agentView(a), true
}

// AgentByID returns the agent whose current key is id (a revoked agent keeps its last key).
func (r *Registry) AgentByID(id ID) (Agent, bool) {
	o, ok := r.keys[id.k]
	if !ok || o.role != RoleAgent {
		return Agent{}, false
	}
	return r.agentView(r.agents[o.name]), true
}

// Agents returns every agent, sorted by name.
func (r *Registry) Agents() []Agent {
	out := make([]Agent, 0, len(r.agents))
	for _, name := range slices.Sorted(maps.Keys(r.agents)) {
		out = append(out, r.agentView(r.agents[name]))
	}
	return out
}

func nodeView(n *NodeEntry) Node {
	return Node{Name: n.Name, ID: n.Key.ID(), Key: n.Key, Site: n.Site, Voter: n.Voter, Addrs: slices.Clone(n.Addrs)}
}

// Node returns the admitted node with key id.
func (r *Registry) Node(id ID) (Node, bool) {
	o, ok := r.keys[id.k]
	if !ok || o.role != RoleNode {
		return Node{}, false
	}
	return nodeView(r.nodes[o.name]), true
}

// Nodes returns the admitted nodes, sorted by name.
func (r *Registry) Nodes() []Node {
	out := make([]Node, 0, len(r.nodes))
	for _, name := range slices.Sorted(maps.Keys(r.nodes)) {
		out = append(out, nodeView(r.nodes[name]))
	}
	return out
}

// Operators returns the current operators, sorted by name.
func (r *Registry) Operators() []Operator {
	out := make([]Operator, 0, len(r.operators))
	for _, name := range slices.Sorted(maps.Keys(r.operators)) {
		k := r.operators[name]
		out = append(out, Operator{Name: name, ID: k.ID(), Key: k})
	}
	return out
}

// Principal answers the connection gater: the role and status of id at now. ok is false for an
// unknown key; a key that was revoked, rotated out or belonged to a removed principal gives
// (0, StatusRevoked, false). Admit only when ok && st == StatusActive.
func (r *Registry) Principal(id ID, now time.Time) (role Role, st Status, ok bool) {
	o, found := r.keys[id.k]
	if !found {
		if _, gone := r.retired[id.k]; gone {
			return 0, StatusRevoked, false
		}
		return 0, 0, false
	}
	if o.role != RoleAgent {
		return o.role, StatusActive, true
	}
	a := r.agents[o.name]
	// Compare as times: now may lie outside the int64-nanosecond range (UnixNano would wrap).
	if a.status == StatusActive && !time.Unix(0, a.expires).After(now) {
		return RoleAgent, StatusExpired, true
	}
	return RoleAgent, a.status, true
}

// ownerName returns a description of who holds key, for error messages.
func (r *Registry) keyInUse(field string, k PublicKey) error {
	if _, gone := r.retired[k]; gone {
		return errf(ErrRevokedKey, "%s: key %s was revoked or retired and can never be used again", field, k.ID())
	}
	if o, used := r.keys[k]; used {
		return errf(ErrExists, "%s: key %s is already used by %s %q", field, k.ID(), o.role, o.name)
	}
	return nil
}

// nameInUse checks the single name namespace shared by agents, nodes and operators.
func (r *Registry) nameInUse(field, name string) error {
	if a, ok := r.agents[name]; ok {
		if a.status == StatusRevoked {
			return errf(ErrRevokedName, "%s: agent %q was revoked; only reinstate-agent (M-of-N) can bring it back", field, name)
		}
		return errf(ErrExists, "%s: agent %q already exists", field, name)
	}
	if _, ok := r.nodes[name]; ok {
		return errf(ErrExists, "%s: %q is already a node", field, name)
	}
	if _, ok := r.operators[name]; ok {
		return errf(ErrExists, "%s: %q is already an operator", field, name)
	}
	return nil
}

// pruneNonces forgets nonces whose commands would now be stale anyway. Deterministic: it depends
// only on the applied commands and their `now`.
func (r *Registry) pruneNonces(now int64) {
	for len(r.nonceQ) > 0 && r.nonceQ[0].exp < now {
		x := heap.Pop(&r.nonceQ).(nonceExp)
		delete(r.nonces, x.nonce)
	}
}

func (r *Registry) addNonce(n [16]byte, exp int64) {
	r.nonces[n] = exp
	heap.Push(&r.nonceQ, nonceExp{exp: exp, nonce: n})
}

// String summarises the registry for logs.
func (r *Registry) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "registry{cluster=%s agents=%d nodes=%d operators=%d threshold=%d policy=v%d audit=%d}",
		r.cluster, len(r.agents), len(r.nodes), len(r.operators), r.threshold, r.policyVersion, len(r.audit))
	return b.String()
}
