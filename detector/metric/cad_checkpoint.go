package metric

import (
	"bytes"
	"encoding/gob"
	"fmt"
)

// maxCADCheckpoint caps the size of a CAD checkpoint accepted by UnmarshalBinary.
const maxCADCheckpoint = 1 << 30

type cadSemiSnap struct {
	Facts, Matched []int64
	Hash           int64
	Count          int
	Keys           []int64
	Vals           []int32
	Used           []bool
	N              int
}

type cadCtxSnap struct {
	N0, N1, N2 int64
	Right      []int64
	Zero       bool
	LH, RH     int64
}

type cadSnap struct {
	Algorithm          string
	Version            int
	Ready              bool
	Warm               []float64
	WarmT              []int64
	Min, Step, MaxBin  float64
	LeftFacts          []int64
	LastPred           [2]uint64
	History            []float64
	HPos               int
	Semis              [2][]cadSemiSnap
	Crossed            [2][]int32
	Contexts           []cadCtxSnap
	NewContextID       int32
	RestPeriod, NumBit int
}

// MarshalBinary writes a checkpoint of everything the model has learned.
func (m *CAD) MarshalBinary() ([]byte, error) {
	s := cadSnap{Algorithm: m.Algorithm(), Version: checkpointVersion, Ready: m.ready, Warm: m.warm, WarmT: m.warmT,
		Min: m.min, Step: m.step, MaxBin: m.maxBin, LeftFacts: m.leftFacts, LastPred: m.lastPred,
		History: m.history, HPos: m.hpos, Crossed: m.crossed, NewContextID: m.newContextID,
		RestPeriod: m.cfg.RestPeriod, NumBit: m.cfg.NumNormValueBits}
	for lr := range 2 {
		for _, x := range m.semis[lr] {
			s.Semis[lr] = append(s.Semis[lr], cadSemiSnap{Facts: x.facts, Matched: x.matched, Hash: x.hash,
				Count: x.count, Keys: x.ctx.keys, Vals: x.ctx.vals, Used: x.ctx.used, N: x.ctx.count})
		}
	}
	for _, c := range m.contexts {
		s.Contexts = append(s.Contexts, cadCtxSnap{N0: c.n0, N1: c.n1, N2: c.n2, Right: c.right, Zero: c.zero, LH: c.lh, RH: c.rh})
	}
	var b bytes.Buffer
	if err := gob.NewEncoder(&b).Encode(&s); err != nil {
		return nil, fmt.Errorf("metric: cad: checkpoint: %w", err)
	}
	return b.Bytes(), nil
}

// UnmarshalBinary restores a checkpoint written by a model with the same configuration. It
// checks every index before using it and leaves the model unchanged on error.
func (m *CAD) UnmarshalBinary(b []byte) error {
	if len(b) > maxCADCheckpoint {
		return fmt.Errorf("%w: cad: %d bytes, limit %d", ErrCheckpoint, len(b), maxCADCheckpoint)
	}
	var s cadSnap
	r := bytes.NewReader(b)
	if err := gob.NewDecoder(r).Decode(&s); err != nil {
		return fmt.Errorf("%w: cad: %v", ErrCheckpoint, err)
	}
	if r.Len() != 0 {
		return fmt.Errorf("%w: cad: %d trailing bytes", ErrCheckpoint, r.Len())
	}
	bad := func(what string) error { return fmt.Errorf("%w: cad: %s", ErrCheckpoint, what) }
	switch {
	case s.Algorithm != m.Algorithm() || s.Version != checkpointVersion:
		return bad(fmt.Sprintf("checkpoint of %q version %d", s.Algorithm, s.Version))
	case s.RestPeriod != m.cfg.RestPeriod || s.NumBit != m.cfg.NumNormValueBits:
		return bad("written with another RestPeriod or NumNormValueBits")
	case len(s.History) < 1 || len(s.History) > m.cfg.RestPeriod || s.HPos < 0 || s.HPos >= max(len(s.History), 1) ||
		(len(s.History) < m.cfg.RestPeriod && s.HPos != 0):
		return bad("bad score history")
	case !s.Ready && len(s.Warm) != len(s.WarmT):
		return bad("bad range-learning buffer")
	case s.Ready && !(s.Step > 0):
		return bad("bad quantisation step")
	case len(s.Warm) >= max(m.cfg.RangeLearning, 1) && !s.Ready:
		return bad("range-learning buffer longer than RangeLearning")
	}
	nl, nr, nc := len(s.Semis[0]), len(s.Semis[1]), len(s.Contexts)
	if m.cfg.MaxContexts > 0 && nc > m.cfg.MaxContexts {
		return bad("more contexts than MaxContexts")
	}
	if s.NewContextID < 0 || (int(s.NewContextID) >= nc && s.NewContextID != 0) {
		return bad("bad new context id")
	}
	n := &CAD{cfg: m.cfg}
	n.reset()
	n.ready, n.warm, n.warmT = s.Ready, s.Warm, s.WarmT
	n.min, n.step, n.maxBin = s.Min, s.Step, s.MaxBin
	n.leftFacts, n.lastPred, n.history, n.hpos = s.LeftFacts, s.LastPred, s.History, s.HPos
	n.newContextID = s.NewContextID
	for _, c := range s.Contexts {
		n.contexts = append(n.contexts, cadContext{n0: c.N0, n1: c.N1, n2: c.N2, right: c.Right, zero: c.Zero, lh: c.LH, rh: c.RH})
	}
	for lr := range 2 {
		for id, x := range s.Semis[lr] {
			size := len(x.Keys)
			if len(x.Vals) != size || len(x.Used) != size || (size != 0 && (size < pyDictMinSize || size&(size-1) != 0)) ||
				x.Count != len(x.Matched) || len(x.Matched) > len(x.Facts) {
				return bad(fmt.Sprintf("bad semi-context %d/%d", lr, id))
			}
			used := 0
			for i, u := range x.Used {
				if !u {
					continue
				}
				used++
				if lr == 1 || x.Keys[i] < 0 || x.Keys[i] >= int64(nr) || x.Vals[i] < 0 || int(x.Vals[i]) >= nc {
					return bad(fmt.Sprintf("bad context reference in semi-context %d/%d", lr, id))
				}
			}
			if used != x.N || (size > 0 && used*3 >= size*2) {
				return bad(fmt.Sprintf("bad context count in semi-context %d/%d", lr, id))
			}
			se := &semi{facts: x.Facts, hash: x.Hash, matched: x.Matched, count: x.Count}
			se.ctx = intDict{keys: x.Keys, vals: x.Vals, used: x.Used, count: x.N}
			n.semis[lr] = append(n.semis[lr], se)
			if _, dup := n.semiByHash[lr][x.Hash]; !dup {
				n.semiByHash[lr][x.Hash] = int32(id)
			}
			for _, f := range x.Facts {
				n.factIndex[lr][f] = append(n.factIndex[lr][f], int32(id))
			}
		}
		for _, id := range s.Crossed[lr] {
			if id < 0 || int(id) >= len(n.semis[lr]) {
				return bad("bad crossed semi-context")
			}
		}
		n.crossed[lr] = s.Crossed[lr]
	}
	_ = nl
	*m = *n
	return nil
}
