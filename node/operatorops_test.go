package node

import (
	"errors"
	"testing"
	"time"

	"github.com/vigil-mesh/vigil/identity"
	"github.com/vigil-mesh/vigil/node/alerts"
)

// TestOpNonceSurvivesRestart: an operator op's nonce, once accepted, is refused as a replay by a
// fresh cache over the same state store (a restarted node), until the op's window ends.
func TestOpNonceSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	st, err := alerts.Open(dir, alerts.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	nonce := [16]byte{7}
	c := &opNonceCache{what: "lift", store: st}
	if err := c.remember(nonce, now.Add(10*time.Minute), now); err != nil {
		t.Fatal(err)
	}
	if err := c.remember(nonce, now.Add(10*time.Minute), now); !errors.Is(err, identity.ErrReplay) {
		t.Fatalf("replay in the same process: %v", err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st, err = alerts.Open(dir, alerts.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	restarted := &opNonceCache{what: "lift", store: st}
	if err := restarted.remember(nonce, now.Add(10*time.Minute), now); !errors.Is(err, identity.ErrReplay) {
		t.Fatalf("replay after a restart: %v, want ErrReplay", err)
	}
	if err := (&opNonceCache{what: "keyring", store: st}).remember(nonce, now.Add(10*time.Minute), now); err != nil {
		t.Fatalf("the same nonce for another kind of op: %v", err)
	}
}
