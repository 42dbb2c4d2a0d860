package detector

import (
	"errors"
	"fmt"

	"github.com/vigil-mesh/vigil/detector/internal/wire"
)

// Unseen is the Action id of every string a Vocabulary does not hold.
const Unseen Action = 0

// VocabularyConfig bounds a Vocabulary.
type VocabularyConfig struct {
	// MaxSize is the most distinct actions held (ids 1..MaxSize). Beyond it new strings map to
	// Unseen. Default 256; at most 1<<20.
	MaxSize int
	// MaxLen is the longest action string kept, in bytes; longer strings are cut to MaxLen
	// before lookup, so two strings that share their first MaxLen bytes share an id.
	// Default 128; at most 4096.
	MaxLen int
}

// DefaultVocabularyConfig returns MaxSize 256, MaxLen 128: at most about 256×(128+48) bytes
// ≈ 44 KiB when full, typically a few KiB for an agent with tens of tools.
func DefaultVocabularyConfig() VocabularyConfig {
	return VocabularyConfig{MaxSize: 256, MaxLen: 128}
}

// Validate checks the bounds.
func (c VocabularyConfig) Validate() error {
	if c.MaxSize < 1 || c.MaxSize > 1<<20 {
		return fmt.Errorf("vocabulary: MaxSize %d out of range [1, %d]", c.MaxSize, 1<<20)
	}
	if c.MaxLen < 1 || c.MaxLen > 4096 {
		return fmt.Errorf("vocabulary: MaxLen %d out of range [1, 4096]", c.MaxLen)
	}
	return nil
}

// Vocabulary maps action strings (capability names, tool names, system calls) to Action ids
// 1, 2, … in order of first sight, up to a bound. It is not safe for concurrent use.
//
//	v, _ := detector.NewVocabulary(detector.DefaultVocabularyConfig())
//	a := v.Add("tool:search")   // 1 the first time, the same id afterwards
//	b := v.Lookup("tool:other") // Unseen: Lookup never adds
type Vocabulary struct {
	cfg   VocabularyConfig
	ids   map[string]Action
	names []string // names[i] has id i+1
}

// NewVocabulary returns an empty vocabulary.
func NewVocabulary(cfg VocabularyConfig) (*Vocabulary, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Vocabulary{cfg: cfg, ids: make(map[string]Action)}, nil
}

func (v *Vocabulary) clip(s string) string {
	if len(s) > v.cfg.MaxLen {
		return s[:v.cfg.MaxLen]
	}
	return s
}

// Add returns s's id, giving it the next id if s is new and there is room, else Unseen.
func (v *Vocabulary) Add(s string) Action {
	s = v.clip(s)
	if id, ok := v.ids[s]; ok {
		return id
	}
	if len(v.names) >= v.cfg.MaxSize {
		return Unseen
	}
	s = string([]byte(s)) // own the bytes: s may alias a larger buffer
	v.names = append(v.names, s)
	id := Action(len(v.names))
	v.ids[s] = id
	return id
}

// Lookup returns s's id, or Unseen if s has none. It never adds.
func (v *Vocabulary) Lookup(s string) Action { return v.ids[v.clip(s)] }

// Name returns the string of id, or "" for Unseen or an id not given out.
func (v *Vocabulary) Name(id Action) string {
	if id == Unseen || int(id) > len(v.names) {
		return ""
	}
	return v.names[id-1]
}

// Len is the number of ids given out.
func (v *Vocabulary) Len() int { return len(v.names) }

const vocabMagic = "VVOC"

// MarshalBinary writes the names in id order.
func (v *Vocabulary) MarshalBinary() ([]byte, error) {
	var w wire.Writer
	w.Header(vocabMagic, 1)
	w.U32(uint32(len(v.names)))
	for _, s := range v.names {
		w.String(s)
	}
	return w.Bytes(), nil
}

// ErrCheckpoint wraps every checkpoint decoding error in this module's models.
var ErrCheckpoint = errors.New("detector: bad checkpoint")

// UnmarshalBinary restores a checkpoint into v, refusing more names than v's MaxSize, names
// longer than its MaxLen and duplicates. On error v is unchanged.
func (v *Vocabulary) UnmarshalBinary(data []byte) error {
	r := wire.NewReader(data)
	r.Header(vocabMagic, 1)
	n := r.U32()
	if r.Err() == nil && int64(n) > int64(v.cfg.MaxSize) {
		return fmt.Errorf("%w: vocabulary holds %d names, more than MaxSize %d", ErrCheckpoint, n, v.cfg.MaxSize)
	}
	names := make([]string, 0, min(int(n), len(data)/4+1))
	ids := make(map[string]Action, len(names))
	for i := 0; i < int(n) && r.Err() == nil; i++ {
		s := r.String("vocabulary name", v.cfg.MaxLen)
		if _, dup := ids[s]; dup && r.Err() == nil {
			return fmt.Errorf("%w: vocabulary name %q appears twice", ErrCheckpoint, s)
		}
		names = append(names, s)
		ids[s] = Action(len(names))
	}
	if err := r.Done(); err != nil {
		return fmt.Errorf("%w: vocabulary: %v", ErrCheckpoint, err)
	}
	v.names, v.ids = names, ids
	return nil
}
