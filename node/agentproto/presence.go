package agentproto

import (
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/vigil-mesh/vigil/identity"
)

// Presence is an attached agent's latest passed re-verification challenge: its signature over
// ReverifyBytes(Nonce, node, agent, Timestamp). It shows anyone who knows the agent's key that the
// agent held a session with that node at Timestamp (the node's clock when it sent the challenge).
// A node puts it in its Located answers, so that the sender's node relays a message only to a
// node its destination has recently proved it is attached to.
type Presence struct {
	Nonce     [NonceSize]byte
	Timestamp time.Time
	Signature [SignatureSize]byte
}

// PresenceCheck is the outcome of CheckPresence.
type PresenceCheck uint8

const (
	PresenceOK           PresenceCheck = iota
	PresenceMissing                    // no proof (an answer in the format before proofs)
	PresenceBadSignature               // not the agent's signature for the answering node: another node's proof, or forged
	PresenceStale                      // older than the freshness window
	PresenceFuture                     // more than PresenceSkew ahead of the checker's clock
	numPresenceChecks
)

func (c PresenceCheck) String() string {
	switch c {
	case PresenceOK:
		return "ok"
	case PresenceMissing:
		return "no_proof"
	case PresenceBadSignature:
		return "bad_signature"
	case PresenceStale:
		return "stale"
	case PresenceFuture:
		return "future"
	}
	return fmt.Sprintf("PresenceCheck(%d)", uint8(c))
}

// PresenceSkew is how far ahead of the checking node's clock a proof's timestamp may be: the
// clock of the node that challenged the agent may run ahead (the gossip window allows the same).
const PresenceSkew = time.Minute

// CheckPresence checks that pr proves agent, whose registered key is key, held a session with
// node no longer than maxAge before now: the timestamp within [now − maxAge, now + PresenceSkew],
// then the signature over ReverifyBytes(pr.Nonce, node, agent, pr.Timestamp). The cheap checks
// come first, so a stale or future proof costs no signature verification. Pure.
func CheckPresence(pr *Presence, key identity.PublicKey, node, agent peer.ID, now time.Time, maxAge time.Duration) PresenceCheck {
	switch {
	case pr == nil:
		return PresenceMissing
	case pr.Timestamp.After(now.Add(PresenceSkew)):
		return PresenceFuture
	case pr.Timestamp.Before(now.Add(-maxAge)):
		return PresenceStale
	case !key.Verify(ReverifyBytes(pr.Nonce, node, agent, pr.Timestamp), pr.Signature[:]):
		return PresenceBadSignature
	}
	return PresenceOK
}
