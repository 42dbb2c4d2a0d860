package identity

import (
	"bytes"
	"container/heap"
	"crypto/sha256"
	"fmt"
	"io"
	"maps"
	"slices"
	"time"
)

// Snapshot format (canonical, version 1): magic "VIGILREG", version byte, then every field of the
// state in a fixed order with sorted collections, so equal states give equal bytes and Hash()
// is a digest of the state itself.
const (
	snapshotMagic   = "VIGILREG"
	snapshotVersion = 1
	// MaxSnapshotSize caps the bytes ReadSnapshot will read (memory grows only with bytes
	// actually received).
	MaxSnapshotSize = 4 << 30
)

// flushEvery is the encoder buffer size at which WriteSnapshot hands bytes to the writer.
const flushEvery = 64 << 10

type snapWriter struct {
	e   encoder
	w   io.Writer
	err error
}

func (s *snapWriter) maybeFlush(force bool) {
	if s.err == nil && (force || len(s.e.b) >= flushEvery) {
		_, s.err = s.w.Write(s.e.b)
		s.e.b = s.e.b[:0]
	}
}

func encodeNode(e *encoder, n *NodeEntry) { n.encode(e) }

func (r *Registry) writeTo(w io.Writer) error {
	s := &snapWriter{w: w, e: encoder{b: make([]byte, 0, flushEvery+4096)}}
	e := &s.e
	e.raw([]byte(snapshotMagic))
	e.u8(snapshotVersion)
	e.i64(int64(r.limits.MaxCommandAge))
	e.i64(int64(r.limits.MaxClockSkew))
	e.boolean(r.initialised)
	e.raw(r.cluster[:])
	e.str(r.trustDomain)
	e.uvarint(uint64(r.threshold))
	e.i64(r.lastNow)
	e.uvarint(r.policyVersion)
	e.bytes(r.policyDoc)
	e.boolean(r.autoResponse)
	e.uvarint(uint64(r.revokeQuorum))

	names := slices.Sorted(maps.Keys(r.operators))
	e.uvarint(uint64(len(names)))
	for _, n := range names {
		e.str(n)
		e.key(r.operators[n])
	}
	names = slices.Sorted(maps.Keys(r.nodes))
	e.uvarint(uint64(len(names)))
	for _, n := range names {
		encodeNode(e, r.nodes[n])
	}
	names = slices.Sorted(maps.Keys(r.agents))
	e.uvarint(uint64(len(names)))
	for _, n := range names {
		a := r.agents[n]
		e.str(a.name)
		e.key(a.key)
		e.uvarint(uint64(len(a.labels) / 2))
		for _, l := range a.labels {
			e.str(l)
		}
		e.uvarint(uint64(len(a.caps)))
		for _, c := range a.caps {
			e.str(c)
		}
		e.u8(uint8(a.status))
		e.i64(a.expires)
		e.i64(a.registered)
		e.str(a.reason)
		s.maybeFlush(false)
	}
	retired := slices.SortedFunc(maps.Keys(r.retired), func(a, b PublicKey) int { return bytes.Compare(a.b[:], b.b[:]) })
	e.uvarint(uint64(len(retired)))
	for _, k := range retired {
		e.key(k)
		s.maybeFlush(false)
	}
	nonces := slices.SortedFunc(maps.Keys(r.nonces), func(a, b [16]byte) int { return bytes.Compare(a[:], b[:]) })
	e.uvarint(uint64(len(nonces)))
	for _, n := range nonces {
		e.raw(n[:])
		e.i64(r.nonces[n])
		s.maybeFlush(false)
	}
	e.uvarint(uint64(len(r.audit)))
	for i := range r.audit {
		a := &r.audit[i]
		e.i64(a.t)
		e.u8(uint8(a.kind))
		e.uvarint(uint64(len(a.signers)))
		for _, k := range a.signers {
			e.key(k)
		}
		e.uvarint(uint64(len(a.subjects)))
		for _, sj := range a.subjects {
			e.str(sj.name)
			e.key(sj.key)
		}
		e.str(a.detail)
		e.digest(a.digest)
		s.maybeFlush(false)
	}
	s.maybeFlush(true)
	return s.err
}

// WriteSnapshot writes the canonical snapshot encoding to w.
func (r *Registry) WriteSnapshot(w io.Writer) error {
	if err := r.writeTo(w); err != nil {
		return fmt.Errorf("identity: write snapshot: %w", err)
	}
	return nil
}

// Hash returns sha256 of the canonical snapshot encoding. Replicas that applied the same
// commands with the same `now` values have equal hashes.
func (r *Registry) Hash() [32]byte {
	h := sha256.New()
	_ = r.writeTo(h) // a hash.Hash never returns a write error
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// ReadSnapshot reads a snapshot written by WriteSnapshot. It is strict: caps on every count and
// length, known version, sorted collections, canonical forms, the registry's invariants, and no
// trailing bytes. Hash() of the result equals the Hash() of the registry that wrote it.
func ReadSnapshot(rd io.Reader) (*Registry, error) {
	data, err := io.ReadAll(io.LimitReader(rd, MaxSnapshotSize+1))
	if err != nil {
		return nil, fmt.Errorf("identity: read snapshot: %w", err)
	}
	if len(data) > MaxSnapshotSize {
		return nil, tooLargef("snapshot: larger than %d bytes", MaxSnapshotSize)
	}
	return decodeSnapshot(data)
}

func decodeSnapshot(data []byte) (*Registry, error) {
	d := &decoder{b: data, ctx: "snapshot"}
	if string(d.take(len(snapshotMagic))) != snapshotMagic {
		return nil, errf(ErrMalformed, "snapshot: bad magic")
	}
	if v := d.u8(); d.err == nil && v != snapshotVersion {
		return nil, errf(ErrMalformed, "snapshot: unknown version %d", v)
	}
	lim := Limits{MaxCommandAge: time.Duration(d.i64()), MaxClockSkew: time.Duration(d.i64())}
	if d.err != nil {
		return nil, d.err
	}
	if err := lim.Validate(); err != nil {
		return nil, fmt.Errorf("identity: snapshot: %w", err)
	}
	r, _ := NewRegistryWithLimits(lim)
	r.initialised = d.boolean()
	copy(r.cluster[:], d.take(16))
	r.trustDomain = d.str("trust_domain", MaxTrustDomainLen)
	r.threshold = d.boundedInt("threshold", MaxOperators)
	r.lastNow = d.i64()
	r.policyVersion = d.uvarint()
	r.policyDoc = d.bytes("policy", MaxPolicySize)
	if len(r.policyDoc) == 0 {
		r.policyDoc = nil
	}
	r.autoResponse = d.boolean()
	r.revokeQuorum = d.boundedInt("revoke quorum", MaxNodes)
	if d.err != nil {
		return nil, d.err
	}
	bad := func(format string, args ...any) (*Registry, error) {
		return nil, errf(ErrMalformed, "snapshot: "+format, args...)
	}
	if r.initialised {
		if r.cluster.IsZero() || validateTrustDomain(r.trustDomain) != nil || r.revokeQuorum < 1 {
			return bad("bad cluster id or trust domain")
		}
	} else if !r.cluster.IsZero() || r.trustDomain != "" || r.threshold != 0 || r.lastNow != 0 ||
		r.policyVersion != 0 || r.policyDoc != nil || r.autoResponse || r.revokeQuorum != 0 {
		return bad("state before genesis must be empty")
	}
	if r.policyVersion == 0 && r.policyDoc != nil {
		return bad("policy document without a version")
	}
	claim := func(k PublicKey, o keyOwner) bool {
		if k.IsZero() {
			return false
		}
		if _, dup := r.keys[k]; dup {
			return false
		}
		r.keys[k] = o
		return true
	}
	prev := ""
	n := d.count("operators", MaxOperators)
	for i := 0; i < n && d.err == nil; i++ {
		name := d.str("operator name", MaxNameLen)
		k := d.key()
		if d.err != nil {
			break
		}
		if (i > 0 && name <= prev) || ValidateName(name) != nil || !claim(k, keyOwner{RoleOperator, name}) {
			return bad("operator %d: unsorted, invalid name or duplicate key", i)
		}
		r.operators[name], prev = k, name
	}
	if d.err == nil && r.initialised && (r.threshold < 1 || r.threshold > len(r.operators)) {
		return bad("threshold %d not in 1..%d", r.threshold, len(r.operators))
	}
	if d.err == nil && !r.initialised && len(r.operators) != 0 {
		return bad("operators before genesis")
	}
	n = d.count("nodes", MaxNodes)
	for i := 0; i < n && d.err == nil; i++ {
		var ne NodeEntry
		ne.decode(d)
		if d.err != nil {
			break
		}
		if (i > 0 && ne.Name <= prev) || validateNodeEntry(&ne) != nil || r.nameTaken(ne.Name) || !claim(ne.Key, keyOwner{RoleNode, ne.Name}) {
			return bad("node %d: unsorted, invalid, or duplicate name or key", i)
		}
		r.nodes[ne.Name], prev = &ne, ne.Name
	}
	n = d.count("agents", MaxAgents)
	for i := 0; i < n && d.err == nil; i++ {
		a := &agentRec{}
		a.name = d.str("agent name", MaxNameLen)
		a.key = d.key()
		labels := decodeLabels(d)
		a.caps = decodeSet(d, "capabilities", MaxCapabilities, MaxCapabilityLen)
		a.status = Status(d.u8())
		a.expires, a.registered = d.i64(), d.i64()
		a.reason = d.str("reason", MaxReasonLen)
		if d.err != nil {
			break
		}
		if (i > 0 && a.name <= prev) || ValidateName(a.name) != nil || r.nameTaken(a.name) ||
			validateLabels(labels) != nil || validateCapabilities(a.caps) != nil ||
			validateText("reason", a.reason, MaxReasonLen) != nil ||
			a.status < StatusActive || a.status > StatusRevoked || !claim(a.key, keyOwner{RoleAgent, a.name}) {
			return bad("agent %d: unsorted, invalid or duplicate", i)
		}
		for _, k := range slices.Sorted(mapsKeys(labels)) {
			a.labels = append(a.labels, k, labels[k])
		}
		r.agents[a.name], prev = a, a.name
	}
	var prevKey PublicKey
	n = d.count("retired keys", MaxRetiredKeys)
	for i := 0; i < n && d.err == nil; i++ {
		k := d.key()
		if d.err != nil {
			break
		}
		if (i > 0 && bytes.Compare(k.b[:], prevKey.b[:]) <= 0) || k.IsZero() {
			return bad("retired keys unsorted or zero")
		}
		if o, ok := r.keys[k]; ok && (o.role != RoleAgent || r.agents[o.name].status != StatusRevoked) {
			return bad("retired key %s still in use", k.ID())
		}
		r.retired[k], prevKey = struct{}{}, k
	}
	for _, a := range r.agents {
		if _, ok := r.retired[a.key]; d.err == nil && (a.status == StatusRevoked) != ok {
			return bad("agent %q: revoked status and retired key disagree", a.name)
		}
	}
	var prevNonce [16]byte
	n = d.count("nonces", MaxSnapshotNonces)
	for i := 0; i < n && d.err == nil; i++ {
		var nonce [16]byte
		copy(nonce[:], d.take(16))
		exp := d.i64()
		if d.err != nil {
			break
		}
		if (i > 0 && bytes.Compare(nonce[:], prevNonce[:]) <= 0) || exp < r.lastNow {
			return bad("nonces unsorted or expired")
		}
		r.nonces[nonce], prevNonce = exp, nonce
		r.nonceQ = append(r.nonceQ, nonceExp{exp, nonce})
	}
	heap.Init(&r.nonceQ)
	n = d.count("audit", MaxAuditEntries)
	prevT := int64(0)
	for i := 0; i < n && d.err == nil; i++ {
		var a auditRec
		a.t = d.i64()
		a.kind = Kind(d.u8())
		if c := d.count("audit signers", MaxSignatures); c > 0 {
			a.signers = make([]PublicKey, c)
			for j := range a.signers {
				a.signers[j] = d.key()
			}
		}
		if c := d.count("audit subjects", MaxAuditSubjects); c > 0 {
			a.subjects = make([]subject, c)
			for j := range a.subjects {
				a.subjects[j] = subject{d.str("audit subject", MaxNameLen), d.key()}
			}
		}
		a.detail = d.str("audit detail", MaxSnapshotStrBytes)
		a.digest = d.digest()
		if d.err != nil {
			break
		}
		if !a.kind.valid() || (i > 0 && a.t < prevT) || a.t > r.lastNow || (i == 0) != (a.kind == KindGenesis) {
			return bad("audit entry %d: bad kind or time order", i+1)
		}
		r.audit, prevT = append(r.audit, a), a.t
		r.indexAudit(uint32(i))
	}
	if err := d.finish(); err != nil {
		return nil, err
	}
	if r.initialised != (len(r.audit) > 0) {
		return bad("genesis and audit history disagree")
	}
	return r, nil
}

// nameTaken reports whether any principal already uses name (snapshot check).
func (r *Registry) nameTaken(name string) bool {
	_, a := r.agents[name]
	_, n := r.nodes[name]
	_, o := r.operators[name]
	return a || n || o
}
