package sequence

import (
	"fmt"
	"slices"

	"github.com/vigil-mesh/vigil/detector"
)

// vocab maps the actions seen in training to dense indexes 0..K-1, in ascending action order
// (so the mapping does not depend on the order sessions arrive in). Action 0 ("never seen")
// is never in a vocabulary.
type vocab struct {
	actions []detector.Action          // dense index → action, ascending
	index   map[detector.Action]uint32 // action → dense index
	table   []uint32                   // action → dense index or unknown, when actions are small
}

// maxTable bounds the direct lookup table (4 bytes per possible action id).
const maxTable = 1 << 16

// unknown is the dense index returned for an action outside the vocabulary.
const unknown = ^uint32(0)

func newVocab(actions []detector.Action) vocab {
	v := vocab{actions: actions, index: make(map[detector.Action]uint32, len(actions))}
	for i, a := range actions {
		v.index[a] = uint32(i)
	}
	if n := len(actions); n > 0 && actions[n-1] < maxTable {
		v.table = make([]uint32, actions[n-1]+1)
		for i := range v.table {
			v.table[i] = unknown
		}
		for i, a := range actions {
			v.table[a] = uint32(i)
		}
	}
	return v
}

// buildVocab collects the distinct non-zero actions of sessions, refusing more than max.
func buildVocab(sessions [][]detector.Action, max int) (vocab, error) {
	seen := make(map[detector.Action]struct{})
	for _, s := range sessions {
		for _, a := range s {
			if a != 0 {
				seen[a] = struct{}{}
			}
		}
		if len(seen) > max {
			return vocab{}, fmt.Errorf("%w: more than MaxVocab=%d distinct actions", ErrTooLarge, max)
		}
	}
	acts := make([]detector.Action, 0, len(seen))
	for a := range seen {
		acts = append(acts, a)
	}
	slices.Sort(acts)
	return newVocab(acts), nil
}

func (v *vocab) size() int { return len(v.actions) }

// lookup returns the dense index of a, or unknown.
func (v *vocab) lookup(a detector.Action) uint32 {
	if v.table != nil {
		if int(a) < len(v.table) {
			return v.table[a]
		}
		return unknown
	}
	if i, ok := v.index[a]; ok {
		return i
	}
	return unknown
}

func (v *vocab) encode(e *enc) { e.u32s(v.actions) }

// decodeVocab reads a vocabulary: strictly ascending, non-zero actions.
func decodeVocab(d *dec) vocab {
	n := d.length("vocabulary", maxCheckpointVocab, 4)
	if d.err != nil {
		return vocab{}
	}
	acts := make([]detector.Action, n)
	for i := range acts {
		acts[i] = d.u32("vocabulary")
		if acts[i] == 0 || (i > 0 && acts[i] <= acts[i-1]) {
			d.fail("vocabulary", "entry %d (%d) is zero or not ascending", i, acts[i])
			return vocab{}
		}
	}
	return newVocab(acts)
}

// dedup groups identical sessions: it returns each distinct session once, in order of first
// appearance, with the number of times it occurred. Training on the distinct sessions with
// these weights gives the same loss as training on every copy.
func dedup(sessions [][]detector.Action) ([][]detector.Action, []float32) {
	seen := make(map[string]int, len(sessions))
	var uniq [][]detector.Action
	var w []float32
	key := make([]byte, 0, 256)
	for _, s := range sessions {
		key = key[:0]
		for _, a := range s {
			key = append(key, byte(a), byte(a>>8), byte(a>>16), byte(a>>24))
		}
		if i, ok := seen[string(key)]; ok {
			w[i]++
			continue
		}
		seen[string(key)] = len(uniq)
		uniq = append(uniq, s)
		w = append(w, 1)
	}
	return uniq, w
}
