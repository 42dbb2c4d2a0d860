package benchmark

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/vigil-mesh/vigil/identity"
)

// ValueSize is the payload of every write, in bytes, on both sides of the comparison: the length of
// an encoded, operator-signed RegisterAgent command as Vigil's commit benchmarks propose it (one
// label pair, one capability, one signature). It is measured from a real command, not estimated.
func ValueSize() int {
	valueSizeOnce.Do(func() { valueSize = len(sampleCommand().Encode()) })
	return valueSize
}

var (
	valueSizeOnce sync.Once
	valueSize     int
)

// SampleRegistration is the registration Vigil's commit benchmarks propose for operation i (a
// fixed-width name, so every command has the same size).
func SampleRegistration(i int, key identity.PublicKey, at time.Time) *identity.RegisterAgent {
	return &identity.RegisterAgent{
		Name: fmt.Sprintf("bench-%06d", i), Key: key,
		Labels:       map[string]string{"site": "bench"},
		Capabilities: []string{"message:*"},
		ExpiresAt:    at.Add(time.Hour),
	}
}

// sampleCommand builds the registration whose size the baseline copies, with fixed keys and time
// so the size is the same on every run.
func sampleCommand() *identity.Command {
	rnd := bytes.NewReader(bytes.Repeat([]byte{7}, 1024))
	op, _ := identity.GenerateKey(rnd)
	agent, _ := identity.GenerateKey(rnd)
	at := time.Unix(1_800_000_000, 0)
	var cid identity.ClusterID
	cmd, err := identity.NewCommand(cid, SampleRegistration(0, agent.Public(), at), at, rnd)
	if err != nil {
		panic("benchmark: sample command: " + err.Error())
	}
	cmd.Sign(op)
	return cmd
}

// Value returns ValueSize() deterministic pseudo-random bytes for seed (incompressible, like a
// signature-bearing command).
func Value(seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 0x766967696c)) // "vigil"
	b := make([]byte, ValueSize())
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}
