package agentproto

import (
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/vigil-mesh/vigil/identity"
)

// signPresence is agent key k's answer to a challenge from node at ts.
func signPresence(k identity.PrivateKey, node peer.ID, ts time.Time) *Presence {
	pr := &Presence{Timestamp: ts}
	pr.Nonce[0], pr.Nonce[31] = 7, 9
	copy(pr.Signature[:], k.Sign(ReverifyBytes(pr.Nonce, node, k.ID().Peer(), ts)))
	return pr
}

// TestCheckPresence: a proof counts only when it is the agent's own signature of a challenge
// from the node that answers, dated within [now − maxAge, now + PresenceSkew].
func TestCheckPresence(t *testing.T) {
	const maxAge = 65 * time.Second
	now := tt0
	agent, other := mustKey(t), mustKey(t)
	node, node2 := mustKey(t).ID().Peer(), mustKey(t).ID().Peer()
	tampered := signPresence(agent, node, now)
	tampered.Nonce[1] ^= 1
	moved := signPresence(agent, node, now.Add(-time.Second))
	moved.Timestamp = now // the signature names another moment
	for _, tc := range []struct {
		name string
		pr   *Presence
		key  identity.PublicKey
		want PresenceCheck
	}{
		{"fresh", signPresence(agent, node, now), agent.Public(), PresenceOK},
		{"at the oldest", signPresence(agent, node, now.Add(-maxAge)), agent.Public(), PresenceOK},
		{"at the skew", signPresence(agent, node, now.Add(PresenceSkew)), agent.Public(), PresenceOK},
		{"no proof (old format)", nil, agent.Public(), PresenceMissing},
		{"another node's proof", signPresence(agent, node2, now), agent.Public(), PresenceBadSignature},
		{"forged by another key", signPresence(other, node, now), agent.Public(), PresenceBadSignature},
		{"checked under another agent's key", signPresence(agent, node, now), other.Public(), PresenceBadSignature},
		{"zero key", signPresence(agent, node, now), identity.PublicKey{}, PresenceBadSignature},
		{"nonce changed", tampered, agent.Public(), PresenceBadSignature},
		{"timestamp changed", moved, agent.Public(), PresenceBadSignature},
		{"zero proof", &Presence{Timestamp: now}, agent.Public(), PresenceBadSignature},
		{"stale", signPresence(agent, node, now.Add(-maxAge-time.Nanosecond)), agent.Public(), PresenceStale},
		{"long ago", signPresence(agent, node, time.Unix(0, 0)), agent.Public(), PresenceStale},
		{"future", signPresence(agent, node, now.Add(PresenceSkew+time.Nanosecond)), agent.Public(), PresenceFuture},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := CheckPresence(tc.pr, tc.key, node, agent.ID().Peer(), now, maxAge); got != tc.want {
				t.Fatalf("CheckPresence = %s, want %s", got, tc.want)
			}
		})
	}
	// The proof names the agent too: the same signature does not prove another agent.
	if got := CheckPresence(signPresence(agent, node, now), agent.Public(), node, other.ID().Peer(), now, maxAge); got != PresenceBadSignature {
		t.Fatalf("for another agent ID: %s", got)
	}
}
