package identity

import (
	"crypto/sha256"
	"fmt"
	"runtime"
	"testing"
	"time"
)

// benchRegistry returns a registry after genesis with one operator, and that operator's key.
func benchRegistry(b *testing.B) (*fixture, PrivateKey) {
	f := newFixture(b, 99, 1, 1)
	return f, f.ops[0]
}

// registration returns a signed registration of agent i.
func registration(b *testing.B, f *fixture, op PrivateKey, i int, at time.Time) *Command {
	k := mustKey(b, f.rnd).Public() // a real key: random bytes are mostly not curve points
	c, err := NewCommand(f.cluster, &RegisterAgent{Name: fmt.Sprintf("agent-%07d", i), Key: k,
		Labels:       map[string]string{"site": "site-a", "role": "planner"},
		Capabilities: []string{"call:search", "send:agent-x", "tool:read"},
		ExpiresAt:    at.Add(24 * time.Hour)}, at, f.rnd)
	if err != nil {
		b.Fatal(err)
	}
	c.Sign(op)
	return c
}

// BenchmarkRegistryMemory100k measures heap bytes per registered agent (registry record, key
// index, audit entry and its indexes, remembered nonce) with 100,000 agents, each with 2 labels
// and 3 capabilities, registered 5 ms apart (so every nonce is still inside the 10-minute
// window: the worst case). Signatures are not verified here (see BenchmarkVerify).
func BenchmarkRegistryMemory100k(b *testing.B) {
	const n = 100_000
	for range b.N {
		b.StopTimer()
		f, op := benchRegistry(b)
		var ms0, ms1 runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms0)
		b.StartTimer()
		now := f.now
		for i := range n {
			now = now.Add(5 * time.Millisecond)
			c := registration(b, f, op, i, now)
			p, _ := c.DecodePayload()
			v := &VerifiedCommand{cmd: c, payload: p, signers: []ID{op.ID()}, digest: sha256.Sum256(c.Encode())}
			if err := f.reg.Apply(v, now); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		runtime.GC()
		runtime.ReadMemStats(&ms1)
		b.ReportMetric(float64(ms1.HeapAlloc-ms0.HeapAlloc)/n, "bytes/agent")
		b.ReportMetric(float64(len(f.reg.nonces)), "nonces")
		runtime.KeepAlive(f.reg)
	}
}

// BenchmarkApplyRegister: Verify + Apply of one signed registration on one goroutine.
func BenchmarkApplyRegister(b *testing.B) {
	f, op := benchRegistry(b)
	cmds := make([][]byte, b.N)
	for i := range cmds {
		cmds[i] = registration(b, f, op, i, f.now).Encode()
	}
	b.ResetTimer()
	for i := range b.N {
		c, err := DecodeCommand(cmds[i])
		if err != nil {
			b.Fatal(err)
		}
		v, err := c.Verify()
		if err != nil {
			b.Fatal(err)
		}
		if err := f.reg.Apply(v, f.now); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}

func BenchmarkVerify(b *testing.B) {
	f, op := benchRegistry(b)
	c := registration(b, f, op, 1, f.now)
	b.ResetTimer()
	for range b.N {
		if _, err := c.Verify(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyParallel(b *testing.B) {
	f, op := benchRegistry(b)
	c := registration(b, f, op, 1, f.now)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.Verify(); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkHash1k(b *testing.B) {
	f, op := benchRegistry(b)
	for i := range 1000 {
		c := registration(b, f, op, i, f.now)
		if err := f.applyCmd(c); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for range b.N {
		_ = f.reg.Hash()
	}
}

// BenchmarkKeyringOp measures what each node does with an operator-signed keyring op before it
// applies it (decode, verify the signature, check it against the registry), beside its baseline,
// one bare Ed25519 verification of the same bytes.
//
//	go test ./identity -run '^$' -bench KeyringOp -count 3
func BenchmarkKeyringOp(b *testing.B) {
	f, op := benchRegistry(b)
	o := f.keyringOp(KeyringUse, []byte("0123456789abcdef"), op)
	enc, msg := o.Encode(), o.SigningBytes()
	b.Run("ed25519-verify", func(b *testing.B) {
		for range b.N {
			if !o.Signer.Verify(msg, o.Signature) {
				b.Fatal("does not verify")
			}
		}
	})
	b.Run("decode-verify-check", func(b *testing.B) {
		for range b.N {
			d, err := DecodeKeyringOp(enc)
			if err != nil {
				b.Fatal(err)
			}
			if err := d.Verify(); err != nil {
				b.Fatal(err)
			}
			if err := f.reg.CheckKeyringOp(d, f.now); err != nil {
				b.Fatal(err)
			}
		}
	})
}
