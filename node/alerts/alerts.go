package alerts

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Status is where an alert is in its handling.
type Status string

const (
	StatusOpen     Status = "open"
	StatusAcked    Status = "acked"
	StatusResolved Status = "resolved"
)

// ParseStatus reads open|acked|resolved.
func ParseStatus(s string) (Status, error) {
	switch Status(s) {
	case StatusOpen, StatusAcked, StatusResolved:
		return Status(s), nil
	}
	return "", fmt.Errorf("alerts: status %q is not one of open, acked, resolved", s)
}

// Alert is one stored alert.
type Alert struct {
	ID       string    `json:"id"`
	Agent    string    `json:"agent"`
	Model    string    `json:"model"` // engine.Alert.Model: "rule:…", "capability", "hst", "sequence:ngram", …
	Score    float64   `json:"score"`
	Evidence string    `json:"evidence"`
	Time     time.Time `json:"time"`   // when the detector saw it
	Action   string    `json:"action"` // alert, throttle, quarantine, revoke: what the rule or model asks for
	Status   Status    `json:"status"`
	// Shared is true when the alert was sent to the mesh as a signed anomaly signal.
	Shared        bool      `json:"shared,omitempty"`
	FalsePositive bool      `json:"false_positive,omitempty"`
	AckedBy       string    `json:"acked_by,omitempty"`
	AckedAt       time.Time `json:"acked_at,omitzero"`
	ResolvedBy    string    `json:"resolved_by,omitempty"`
	ResolvedAt    time.Time `json:"resolved_at,omitzero"`
}

// Query selects alerts: Agent exact ("" = all), Status ("" = all), at or after Since, the
// newest Limit (0 = all), newest first.
type Query struct {
	Agent  string
	Status Status
	Since  time.Time
	Limit  int
}

// Config configures a Store.
type Config struct {
	// MaxAlerts bounds the alerts kept; the oldest go first. Default 100,000.
	MaxAlerts int
	// MaxDecisions bounds the response decisions kept (lifts included); the oldest go first.
	// Default 10,000, at most 10,000,000.
	MaxDecisions int
	// MaxCheckpointBytes caps one stored checkpoint. Default 8 MiB (below the value-log file size).
	MaxCheckpointBytes int
}

// DefaultConfig returns MaxAlerts 100,000, MaxDecisions 10,000 and MaxCheckpointBytes 8 MiB.
func DefaultConfig() Config {
	return Config{MaxAlerts: 100_000, MaxDecisions: 10_000, MaxCheckpointBytes: 8 << 20}
}

// Validate names the field that is wrong.
func (c Config) Validate() error {
	switch {
	case c.MaxAlerts < 1 || c.MaxAlerts > 10_000_000:
		return fmt.Errorf("alerts: MaxAlerts %d out of range [1, 10000000]", c.MaxAlerts)
	case c.MaxDecisions < 1 || c.MaxDecisions > 10_000_000:
		return fmt.Errorf("alerts: MaxDecisions %d out of range [1, 10000000]", c.MaxDecisions)
	case c.MaxCheckpointBytes < 1:
		return fmt.Errorf("alerts: MaxCheckpointBytes %d must be positive", c.MaxCheckpointBytes)
	}
	return nil
}

// Errors.
var (
	ErrNotFound   = errors.New("alerts: no such alert")
	ErrTransition = errors.New("alerts: status cannot move that way")
	// ErrNoDecision: no stored decision has that ID (never had, or dropped beyond MaxDecisions).
	ErrNoDecision = errors.New("alerts: no such decision")
	// ErrInvalid: a decision or a decision query has a bad field; the message names it.
	ErrInvalid = errors.New("alerts: invalid")
)

// Key layout: alerts under "a/" and response decisions under "d/", each + 8-byte big-endian
// sequence (key order = age); checkpoints under "c/" + name.
var (
	prefixAlert    = []byte("a/")
	prefixDecision = []byte("d/")
	prefixCkpt     = []byte("c/")
	prefixNonce    = []byte("n/")
)

// seqLog is one bounded, append-only sequence of records under a key prefix. Sequences are
// contiguous: only the oldest records are ever deleted. Guarded by Store.mu.
type seqLog struct {
	prefix []byte
	max    int
	next   uint64 // sequence of the next record
	oldest uint64 // sequence of the oldest record held (valid when count > 0)
	count  int
}

func (l *seqLog) key(seq uint64) []byte {
	return binary.BigEndian.AppendUint64(append([]byte(nil), l.prefix...), seq)
}

func (l *seqLog) seqOf(key []byte) (uint64, error) {
	if len(key) != len(l.prefix)+8 {
		return 0, fmt.Errorf("alerts: malformed key %x", key)
	}
	return binary.BigEndian.Uint64(key[len(l.prefix):]), nil
}

// load counts the stored records and finds the next sequence.
func (l *seqLog) load(txn *badger.Txn) error {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: l.prefix})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		seq, err := l.seqOf(it.Item().Key())
		if err != nil {
			return err
		}
		if l.count == 0 {
			l.oldest = seq
		}
		l.count++
		l.next = seq + 1
	}
	return nil
}

// append stores v under the next sequence and drops the oldest records beyond max, in one
// transaction; the counters move only when it commits.
func (l *seqLog) append(db *badger.DB, v []byte) error {
	drop := l.count + 1 - l.max
	err := db.Update(func(txn *badger.Txn) error {
		if err := txn.Set(l.key(l.next), v); err != nil {
			return err
		}
		for i := 0; i < drop; i++ {
			if err := txn.Delete(l.key(l.oldest + uint64(i))); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if l.count == 0 {
		l.oldest = l.next
	}
	l.next++
	l.count++
	if drop > 0 {
		l.oldest += uint64(drop)
		l.count -= drop
	}
	return nil
}

// newestFirst calls fn with every record's key and value, newest first, until fn returns
// false or an error.
func (l *seqLog) newestFirst(db *badger.DB, fn func(key, v []byte) (bool, error)) error {
	return db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: l.prefix, Reverse: true, PrefetchValues: true})
		defer it.Close()
		seek := append(append([]byte(nil), l.prefix...), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
		for it.Seek(seek); it.Valid(); it.Next() {
			var more bool
			err := it.Item().Value(func(v []byte) error {
				var err error
				more, err = fn(it.Item().Key(), v)
				return err
			})
			if err != nil || !more {
				return err
			}
		}
		return nil
	})
}

// Store holds alerts, response decisions and checkpoints. Safe for concurrent use.
type Store struct {
	cfg Config
	db  *badger.DB

	mu        sync.Mutex // serialises Add, AddDecision and status changes
	alerts    seqLog
	decisions seqLog
}

// Open opens (creating) the store in dir.
func Open(dir string, cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("alerts: %w", err)
	}
	opts := badger.DefaultOptions(dir).WithSyncWrites(true).WithLogger(nil).
		WithMemTableSize(8 << 20).WithValueThreshold(64 << 10).WithNumMemtables(2).WithValueLogFileSize(16 << 20).
		WithBlockCacheSize(4 << 20).WithNumCompactors(2).WithNumLevelZeroTables(2).
		WithNumLevelZeroTablesStall(8).WithMetricsEnabled(false)
	db, err := badger.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("alerts: open %s: %w", dir, err)
	}
	s := &Store{cfg: cfg, db: db,
		alerts:    seqLog{prefix: prefixAlert, max: cfg.MaxAlerts, next: 1},
		decisions: seqLog{prefix: prefixDecision, max: cfg.MaxDecisions, next: 1}}
	err = db.View(func(txn *badger.Txn) error {
		return errors.Join(s.alerts.load(txn), s.decisions.load(txn))
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Len is the number of alerts held.
func (s *Store) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.alerts.count
}

// ID is the public form of a sequence: 16 hex digits.
func idOf(seq uint64) string { return fmt.Sprintf("%016x", seq) }

// seqOfID parses a 16-hex-digit ID; an ID of another shape is reported as notFound.
func seqOfID(id string, notFound error) (uint64, error) {
	b, err := hex.DecodeString(id)
	if err != nil || len(b) != 8 {
		return 0, fmt.Errorf("%w: id %q is not 16 hex digits", notFound, id)
	}
	return binary.BigEndian.Uint64(b), nil
}

func parseID(id string) (uint64, error) { return seqOfID(id, ErrNotFound) }

// Add stores a as a new open alert, assigning its ID, and drops the oldest alerts beyond
// MaxAlerts.
func (s *Store) Add(a Alert) (Alert, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a.ID, a.Status = idOf(s.alerts.next), StatusOpen
	v, err := json.Marshal(a)
	if err != nil {
		return Alert{}, fmt.Errorf("alerts: %w", err)
	}
	if err := s.alerts.append(s.db, v); err != nil {
		return Alert{}, fmt.Errorf("alerts: add: %w", err)
	}
	return a, nil
}

func decode(key, v []byte) (Alert, error) {
	var a Alert
	if err := json.Unmarshal(v, &a); err != nil {
		return Alert{}, fmt.Errorf("alerts: record %x does not decode: %w", key, err)
	}
	return a, nil
}

// Get returns the alert with id.
func (s *Store) Get(id string) (Alert, error) {
	seq, err := parseID(id)
	if err != nil {
		return Alert{}, err
	}
	var a Alert
	err = s.db.View(func(txn *badger.Txn) error {
		it, err := txn.Get(s.alerts.key(seq))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return fmt.Errorf("%w: %s", ErrNotFound, id)
		}
		if err != nil {
			return err
		}
		return it.Value(func(v []byte) error { a, err = decode(it.Key(), v); return err })
	})
	return a, err
}

// List returns the alerts q selects, newest first.
func (s *Store) List(q Query) ([]Alert, error) {
	out := []Alert{}
	err := s.alerts.newestFirst(s.db, func(key, v []byte) (bool, error) {
		a, err := decode(key, v)
		if err != nil {
			return false, err
		}
		if !q.Since.IsZero() && a.Time.Before(q.Since) {
			return true, nil
		}
		if (q.Agent != "" && a.Agent != q.Agent) || (q.Status != "" && a.Status != q.Status) {
			return true, nil
		}
		out = append(out, a)
		return q.Limit <= 0 || len(out) < q.Limit, nil
	})
	return out, err
}

func (s *Store) update(id string, change func(*Alert) error) (Alert, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, err := s.Get(id)
	if err != nil {
		return Alert{}, err
	}
	if err := change(&a); err != nil {
		return Alert{}, err
	}
	seq, _ := parseID(id)
	v, err := json.Marshal(a)
	if err != nil {
		return Alert{}, fmt.Errorf("alerts: %w", err)
	}
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.Set(s.alerts.key(seq), v) }); err != nil {
		return Alert{}, fmt.Errorf("alerts: update %s: %w", id, err)
	}
	return a, nil
}

// Ack marks an open alert acknowledged by who at now.
func (s *Store) Ack(id, who string, now time.Time) (Alert, error) {
	return s.update(id, func(a *Alert) error {
		if a.Status != StatusOpen {
			return fmt.Errorf("%w: alert %s is %s, only an open alert can be acknowledged", ErrTransition, id, a.Status)
		}
		a.Status, a.AckedBy, a.AckedAt = StatusAcked, who, now.UTC()
		return nil
	})
}

// Resolve marks an open or acknowledged alert resolved by who at now, and records whether it
// was a false positive.
func (s *Store) Resolve(id, who string, falsePositive bool, now time.Time) (Alert, error) {
	return s.update(id, func(a *Alert) error {
		if a.Status == StatusResolved {
			return fmt.Errorf("%w: alert %s is already resolved (by %s)", ErrTransition, id, a.ResolvedBy)
		}
		a.Status, a.ResolvedBy, a.ResolvedAt, a.FalsePositive = StatusResolved, who, now.UTC(), falsePositive
		return nil
	})
}

// MarkShared records that the alert was sent to the mesh as a signal.
func (s *Store) MarkShared(id string) error {
	_, err := s.update(id, func(a *Alert) error { a.Shared = true; return nil })
	return err
}

// ErrNonceSeen is RememberNonce's answer for a nonce already remembered and not yet expired.
var ErrNonceSeen = errors.New("alerts: nonce already seen")

// maxNonceKind bounds the kind under which RememberNonce files a nonce.
const maxNonceKind = 32

// RememberNonce records nonce under kind until exp (a Badger TTL: it is dropped afterwards), or
// answers ErrNonceSeen when it is already there and unexpired. It is written to disk before it
// returns (SyncWrites), so a node restarted inside an op's window still refuses its replay.
func (s *Store) RememberNonce(kind string, nonce [16]byte, exp, now time.Time) error {
	if kind == "" || len(kind) > maxNonceKind {
		return fmt.Errorf("alerts: nonce kind %q: must be 1 to %d bytes", kind, maxNonceKind)
	}
	ttl := exp.Sub(now)
	if ttl <= 0 {
		return fmt.Errorf("alerts: nonce %x of kind %s expired at %s, before %s", nonce, kind, exp.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	key := append(append(append(append([]byte(nil), prefixNonce...), kind...), '/'), nonce[:]...)
	return s.db.Update(func(txn *badger.Txn) error {
		switch _, err := txn.Get(key); {
		case err == nil:
			return fmt.Errorf("%w: %s nonce %x", ErrNonceSeen, kind, nonce)
		case !errors.Is(err, badger.ErrKeyNotFound):
			return fmt.Errorf("alerts: nonce lookup: %w", err)
		}
		return txn.SetEntry(badger.NewEntry(key, nil).WithTTL(ttl))
	})
}

// PutCheckpoint stores (replacing) the checkpoint named name.
func (s *Store) PutCheckpoint(name string, data []byte) error {
	if len(data) > s.cfg.MaxCheckpointBytes {
		return fmt.Errorf("alerts: checkpoint %q is %d bytes, more than MaxCheckpointBytes %d", name, len(data), s.cfg.MaxCheckpointBytes)
	}
	return s.db.Update(func(txn *badger.Txn) error {
		return txn.Set(append(append([]byte(nil), prefixCkpt...), name...), data)
	})
}

// DeleteCheckpoint removes the checkpoint named name, if any.
func (s *Store) DeleteCheckpoint(name string) error {
	return s.db.Update(func(txn *badger.Txn) error {
		return txn.Delete(append(append([]byte(nil), prefixCkpt...), name...))
	})
}

// Checkpoints calls fn with every stored checkpoint, in name order. A checkpoint larger than
// MaxCheckpointBytes fails the walk with an error naming it; an error from fn stops it.
func (s *Store) Checkpoints(fn func(name string, data []byte) error) error {
	return s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixCkpt})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			name := string(item.Key()[len(prefixCkpt):])
			if item.ValueSize() > int64(s.cfg.MaxCheckpointBytes) {
				return fmt.Errorf("alerts: checkpoint %q is %d bytes, more than MaxCheckpointBytes %d", name, item.ValueSize(), s.cfg.MaxCheckpointBytes)
			}
			v, err := item.ValueCopy(nil)
			if err != nil {
				return err
			}
			if err := fn(name, v); err != nil {
				return err
			}
		}
		return nil
	})
}
