package enforce

import (
	"sync"
	"time"

	"github.com/vigil-mesh/vigil/identity"
)

// Source is the part of a replicated registry the Enforcer follows. *consensus.Node implements
// it. Read runs fn under the registry's read lock; Subscribe's fn is called on the apply
// goroutine after each applied batch and must not block.
type Source interface {
	Read(fn func(*identity.Registry))
	AppliedIndex() uint64
	Subscribe(fn func(index uint64)) (cancel func())
}

// MemSource is the in-memory twin of a consensus.Node as a Source: one local registry, commands
// applied directly (no Raft), subscribers called synchronously after each Apply. For tests and
// simulation.
type MemSource struct {
	mu    sync.RWMutex
	reg   *identity.Registry
	index uint64
	subs  map[int]func(uint64)
	next  int
}

var _ Source = (*MemSource)(nil)

// NewMemSource wraps reg (which the MemSource then owns).
func NewMemSource(reg *identity.Registry) *MemSource {
	return &MemSource{reg: reg, subs: map[int]func(uint64){}}
}

// Apply verifies cmd, applies it at now and notifies subscribers. A rejected command changes
// nothing and notifies no one.
func (s *MemSource) Apply(cmd *identity.Command, now time.Time) error {
	v, err := cmd.Verify()
	if err != nil {
		return err
	}
	s.mu.Lock()
	if err := s.reg.Apply(v, now); err != nil {
		s.mu.Unlock()
		return err
	}
	s.index++
	idx := s.index
	subs := make([]func(uint64), 0, len(s.subs))
	for _, fn := range s.subs {
		subs = append(subs, fn)
	}
	s.mu.Unlock()
	for _, fn := range subs {
		fn(idx)
	}
	return nil
}

// Read runs fn under the read lock.
func (s *MemSource) Read(fn func(*identity.Registry)) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	fn(s.reg)
}

// AppliedIndex is the number of applied commands.
func (s *MemSource) AppliedIndex() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.index
}

// Subscribe registers fn; cancel removes it.
func (s *MemSource) Subscribe(fn func(uint64)) (cancel func()) {
	s.mu.Lock()
	id := s.next
	s.next++
	s.subs[id] = fn
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		delete(s.subs, id)
		s.mu.Unlock()
	}
}
