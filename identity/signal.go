package identity

import (
	"crypto/ed25519"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"time"
)

// signalVersion is the first byte of every encoded Signal.
const signalVersion = 1

// signalDomain separates signal signatures from command signatures and every other use of a
// node key.
const signalDomain = "vigil/signal/v1\x00"

// Caps on signals (see limits.go for the others).
const (
	MaxDetectorLen = 64 // bytes of a detector name
	// MaxSignalSize bounds one encoded signal, signature included.
	MaxSignalSize = 1 + 16 + (1 + MaxNameLen) + 32 + (1 + MaxDetectorLen) + 8 + 32 + 8 + 32 + 16 + ed25519.SignatureSize
	// MaxAutoRevokeSignals bounds the evidence carried by one AutoRevokeAgent.
	MaxAutoRevokeSignals = 16
)

// SignalSubject names the agent a signal is about: its registered name and the key it held
// when the reporter observed it. An automated revocation counts a signal only while the key is
// still the agent's current key, so evidence against an old key cannot revoke a rotated agent.
type SignalSubject struct {
	Name string
	Key  PublicKey
}

// Signal is an anomaly signal: a node (the reporter) saying that a detector scored an agent's
// behaviour. It is signed by the reporter over SigningBytes ("vigil/signal/v1\x00" and the
// canonical encoding without the signature), and bound to one cluster.
//
// A Signal is only evidence: the FSM counts it toward an automated revocation when the reporter
// is an admitted node, the subject is the agent's current name and key, and ObservedAt is inside
// the registry's command window (see FreshAt).
type Signal struct {
	ClusterID      ClusterID
	Subject        SignalSubject
	Detector       string    // e.g. "lstm", "ngram", "rule:cpu_usage"; 1..MaxDetectorLen printable ASCII
	Score          float64   // in [0, 1]; 1 is certainly anomalous. NaN and -0 are refused.
	EvidenceDigest [32]byte  // sha256 of the observations behind the score (kept by the reporter)
	ObservedAt     time.Time // reporter's clock when the score was computed
	Reporter       PublicKey // the node that signs
	Nonce          [16]byte  // random; (Reporter, Subject, Nonce) identifies one signal
	Signature      []byte    // Ed25519 by Reporter over SigningBytes, 64 bytes
}

// Sign fills Reporter with k's public key, draws a fresh Nonce from rand, checks every field
// (Validate) and signs.
func (s *Signal) Sign(k PrivateKey, rand io.Reader) error {
	if k.IsZero() {
		return invalidf("reporter", "no key")
	}
	s.Reporter = k.Public()
	if _, err := io.ReadFull(rand, s.Nonce[:]); err != nil {
		return fmt.Errorf("identity: signal nonce: %w", err)
	}
	s.ObservedAt = s.ObservedAt.UTC()
	s.Signature = nil
	if err := s.validateFields(); err != nil {
		return err
	}
	s.Signature = k.Sign(s.SigningBytes())
	return nil
}

// validateFields checks everything except the signature. Errors name the field.
func (s *Signal) validateFields() error {
	if s.ClusterID.IsZero() {
		return invalidf("signal.cluster_id", "zero")
	}
	if err := validateNameField("signal.subject.name", s.Subject.Name); err != nil {
		return err
	}
	if s.Subject.Key.IsZero() {
		return invalidf("signal.subject.key", "zero key")
	}
	if l := len(s.Detector); l == 0 || l > MaxDetectorLen {
		return invalidf("signal.detector", "%d bytes, want 1..%d", l, MaxDetectorLen)
	}
	for i := 0; i < len(s.Detector); i++ {
		if c := s.Detector[i]; c <= ' ' || c > '~' {
			return invalidf("signal.detector", "%q: only printable ASCII without spaces", s.Detector)
		}
	}
	if math.IsNaN(s.Score) || s.Score < 0 || s.Score > 1 || math.Signbit(s.Score) {
		return invalidf("signal.score", "%v not in [0, 1]", s.Score)
	}
	if s.ObservedAt.IsZero() || !timeRepresentable(s.ObservedAt) {
		return invalidf("signal.observed_at", "zero or outside the representable range")
	}
	if s.Reporter.IsZero() {
		return invalidf("signal.reporter", "zero key")
	}
	return nil
}

func (s *Signal) encodeBody(e *encoder) {
	e.u8(signalVersion)
	e.raw(s.ClusterID[:])
	e.str(s.Subject.Name)
	e.key(s.Subject.Key)
	e.str(s.Detector)
	e.b = binary.BigEndian.AppendUint64(e.b, math.Float64bits(s.Score))
	e.digest(s.EvidenceDigest)
	e.time(s.ObservedAt)
	e.key(s.Reporter)
	e.raw(s.Nonce[:])
}

// SigningBytes returns what the reporter signs.
func (s *Signal) SigningBytes() []byte {
	e := encoder{b: make([]byte, 0, len(signalDomain)+MaxSignalSize)}
	e.raw([]byte(signalDomain))
	s.encodeBody(&e)
	return e.b
}

// Encode returns the canonical encoding: body, then the 64-byte signature (raw).
func (s *Signal) Encode() []byte {
	var e encoder
	s.encode(&e)
	return e.b
}

func (s *Signal) encode(e *encoder) {
	s.encodeBody(e)
	var sig [ed25519.SignatureSize]byte
	copy(sig[:], s.Signature)
	e.raw(sig[:])
}

func (s *Signal) decode(d *decoder) {
	if v := d.u8(); d.err == nil && v != signalVersion {
		d.malformed(fmt.Sprintf("signal: unknown version %d", v))
		return
	}
	copy(s.ClusterID[:], d.take(16))
	s.Subject.Name = d.str("signal.subject.name", MaxNameLen)
	s.Subject.Key = d.key()
	s.Detector = d.str("signal.detector", MaxDetectorLen)
	bits := uint64(d.i64())
	s.Score = math.Float64frombits(bits)
	s.EvidenceDigest = d.digest()
	s.ObservedAt = d.time()
	s.Reporter = d.key()
	copy(s.Nonce[:], d.take(16))
	if p := d.take(ed25519.SignatureSize); p != nil {
		s.Signature = append([]byte(nil), p...)
	}
}

// DecodeSignal decodes one signal strictly (at most MaxSignalSize bytes, known version, capped
// strings, no trailing bytes). It does not check fields or the signature: see Verify.
func DecodeSignal(b []byte) (*Signal, error) {
	if len(b) > MaxSignalSize {
		return nil, tooLargef("signal: %d bytes, max %d", len(b), MaxSignalSize)
	}
	d := decoder{b: b, ctx: "signal"}
	s := &Signal{}
	s.decode(&d)
	if err := d.finish(); err != nil {
		return nil, err
	}
	return s, nil
}

// Verify checks every field (ErrInvalid naming it), that the signal survives its canonical
// encoding (ErrMalformed), and the reporter's signature (ErrBadSignature). It says nothing about
// whether the reporter is admitted or the signal fresh: that needs a registry and a clock (see
// FreshAt and Registry.Apply). Verify is pure and safe for concurrent use.
func (s *Signal) Verify() error {
	if err := s.validateFields(); err != nil {
		return err
	}
	if len(s.Signature) != ed25519.SignatureSize {
		return errf(ErrBadSignature, "signal by %s: signature is %d bytes, not %d", s.Reporter.ID(), len(s.Signature), ed25519.SignatureSize)
	}
	if !s.ObservedAt.Equal(timeFromWire(timeToWire(s.ObservedAt))) {
		return errf(ErrMalformed, "signal: observed_at does not survive the encoding")
	}
	if !s.Reporter.Verify(s.SigningBytes(), s.Signature) {
		return errf(ErrBadSignature, "signal by %s does not verify", s.Reporter.ID())
	}
	return nil
}

// FreshAt reports whether the signal was observed inside the window [now − maxAge,
// now + maxSkew]: ErrStale when older, ErrFromFuture when later.
func (s *Signal) FreshAt(now time.Time, maxAge, maxSkew time.Duration) error {
	if s.ObservedAt.Before(now.Add(-maxAge)) {
		return errf(ErrStale, "signal by %s observed at %s, older than %s before %s", s.Reporter.ID(),
			s.ObservedAt.UTC().Format(time.RFC3339Nano), maxAge, now.UTC().Format(time.RFC3339Nano))
	}
	if s.ObservedAt.After(now.Add(maxSkew)) {
		return errf(ErrFromFuture, "signal by %s observed at %s, more than %s after %s", s.Reporter.ID(),
			s.ObservedAt.UTC().Format(time.RFC3339Nano), maxSkew, now.UTC().Format(time.RFC3339Nano))
	}
	return nil
}

// Clone returns a deep copy.
func (s *Signal) Clone() Signal {
	out := *s
	out.Signature = append([]byte(nil), s.Signature...)
	return out
}

// CheckRevocation decides, without changing anything, whether a verified revocation command
// received out of band (by gossip, from a node that cannot reach the Raft leader) is one this
// registry would accept now: this cluster, issued-at inside the window, signed by an operator
// (RevokeAgent) or by admitted nodes with revoke_quorum fresh signals while automated response
// is enabled (AutoRevokeAgent), about an agent this registry knows. It returns that agent (its
// current key is the one to cut off). Nonces are not checked: a revocation is monotonic, so
// applying an already-applied one early changes nothing. Any other kind is ErrInvalid.
func (r *Registry) CheckRevocation(v *VerifiedCommand, now time.Time) (Agent, error) {
	if v == nil || v.cmd == nil {
		return Agent{}, invalidf("command", "nil or not verified")
	}
	var name string
	switch p := v.payload.(type) {
	case *RevokeAgent:
		name = p.Name
	case *AutoRevokeAgent:
		name = p.Name
	default:
		return Agent{}, invalidf("kind", "%s is not a revocation", v.cmd.Kind)
	}
	if !r.initialised {
		return Agent{}, errf(ErrNoGenesis, "revocation before genesis")
	}
	c := v.cmd
	if c.ClusterID != r.cluster {
		return Agent{}, errf(ErrWrongCluster, "command for cluster %s, this is %s", c.ClusterID, r.cluster)
	}
	if c.IssuedAt.Before(now.Add(-r.limits.MaxCommandAge)) {
		return Agent{}, errf(ErrStale, "issued at %s, older than %s", c.IssuedAt.UTC().Format(time.RFC3339Nano), r.limits.MaxCommandAge)
	}
	if c.IssuedAt.After(now.Add(r.limits.MaxClockSkew)) {
		return Agent{}, errf(ErrFromFuture, "issued at %s, more than %s ahead", c.IssuedAt.UTC().Format(time.RFC3339Nano), r.limits.MaxClockSkew)
	}
	if err := r.authorize(v); err != nil {
		return Agent{}, err
	}
	if p, ok := v.payload.(*AutoRevokeAgent); ok {
		if _, err := r.checkAutoRevoke(p, now); err != nil {
			return Agent{}, err
		}
	}
	a, err := r.agentFor(name)
	if err != nil {
		return Agent{}, err
	}
	return r.agentView(a), nil
}
