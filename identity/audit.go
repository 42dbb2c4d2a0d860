package identity

import (
	"iter"
	"maps"
	"sort"
	"time"
)

// AuditQuery selects audit entries.
type AuditQuery struct {
	Principal string    // name or ID string of a subject or signer; "" = all
	From, To  time.Time // [From, To); zero = open
	AfterSeq  uint64    // only entries with Seq > AfterSeq (for paging); 0 = from the start
	Limit     int       // at most this many, oldest first; <= 0 = no limit
	BeforeSeq uint64    // only entries with Seq < BeforeSeq (paging back from the newest); 0 = to the end
	Newest    bool      // with Limit: the newest Limit entries of the selection (still oldest first)
}

// AuditEntry records one applied command.
type AuditEntry struct {
	Seq           uint64 // 1, 2, 3, … in apply order
	Time          time.Time
	Kind          Kind
	Signers       []ID
	Subjects      []string // names and ID strings the command touched
	Detail        string   // one line
	CommandDigest [32]byte // sha256 of the command's canonical encoding
}

type subject struct {
	name string // "" when only a key was touched (a rotated-out key)
	key  PublicKey
}

// auditRec is the stored form: keys instead of ID strings, to keep memory down.
type auditRec struct {
	t        int64 // Unix ns (the registry's now); non-decreasing
	kind     Kind
	signers  []PublicKey
	subjects []subject
	detail   string
	digest   [32]byte
}

func (r *Registry) appendAudit(nowN int64, k Kind, signers []ID, eff effect, digest [32]byte) {
	idx := uint32(len(r.audit))
	rec := auditRec{t: nowN, kind: k, subjects: eff.subjects, detail: eff.detail, digest: digest}
	rec.signers = make([]PublicKey, len(signers))
	for i, s := range signers {
		rec.signers[i] = s.k
	}
	r.audit = append(r.audit, rec)
	r.indexAudit(idx)
}

func (r *Registry) indexAudit(idx uint32) {
	rec := &r.audit[idx]
	addKey := func(k PublicKey) {
		if l := r.byKey[k]; len(l) == 0 || l[len(l)-1] != idx {
			r.byKey[k] = append(l, idx)
		}
	}
	for _, s := range rec.subjects {
		if s.name != "" {
			if l := r.byName[s.name]; len(l) == 0 || l[len(l)-1] != idx {
				r.byName[s.name] = append(l, idx)
			}
		}
		if !s.key.IsZero() {
			addKey(s.key)
		}
	}
	for _, k := range rec.signers {
		addKey(k)
	}
}

func (r *Registry) auditView(idx uint32) AuditEntry {
	rec := &r.audit[idx]
	e := AuditEntry{Seq: uint64(idx) + 1, Time: time.Unix(0, rec.t).UTC(), Kind: rec.kind,
		Detail: rec.detail, CommandDigest: rec.digest}
	e.Signers = make([]ID, len(rec.signers))
	for i, k := range rec.signers {
		e.Signers[i] = k.ID()
	}
	for _, s := range rec.subjects {
		if s.name != "" {
			e.Subjects = append(e.Subjects, s.name)
		}
		if !s.key.IsZero() {
			e.Subjects = append(e.Subjects, s.key.ID().String())
		}
	}
	return e
}

// Audit returns the entries matching q, oldest first. With a principal it reads only that
// principal's index; the time range is found by binary search (entry times never decrease), so
// the cost is that of the entries returned, from either end (Newest).
func (r *Registry) Audit(q AuditQuery) []AuditEntry {
	at, lo, hi := r.auditRange(q)
	if q.Limit > 0 && hi-lo > q.Limit {
		if q.Newest {
			lo = hi - q.Limit
		} else {
			hi = lo + q.Limit
		}
	}
	var out []AuditEntry
	for i := lo; i < hi; i++ {
		out = append(out, r.auditView(at(i)))
	}
	return out
}

// AuditCount returns how many entries Audit(q) would return without q.Limit.
func (r *Registry) AuditCount(q AuditQuery) int {
	_, lo, hi := r.auditRange(q)
	return hi - lo
}

// auditRange returns the selection of q as positions [lo, hi) in a list whose i-th element is
// the audit index at(i) (all entries, or the principal's), ignoring Limit.
func (r *Registry) auditRange(q AuditQuery) (at func(int) uint32, lo, hi int) {
	var idxs []uint32 // nil with all == true means every entry
	all := q.Principal == ""
	if !all {
		if id, err := ParseID(q.Principal); err == nil {
			idxs = r.byKey[id.k]
		} else {
			idxs = r.byName[q.Principal]
		}
	}
	n := len(r.audit)
	if !all {
		n = len(idxs)
	}
	at = func(i int) uint32 {
		if all {
			return uint32(i)
		}
		return idxs[i]
	}
	if !q.From.IsZero() {
		from := timeToWire(q.From)
		lo = sort.Search(n, func(i int) bool { return r.audit[at(i)].t >= from })
	}
	if q.AfterSeq > 0 {
		lo = max(lo, sort.Search(n, func(i int) bool { return uint64(at(i))+1 > q.AfterSeq }))
	}
	hi = n
	if !q.To.IsZero() {
		to := timeToWire(q.To)
		hi = sort.Search(n, func(i int) bool { return r.audit[at(i)].t >= to })
	}
	if q.BeforeSeq > 0 {
		hi = min(hi, sort.Search(n, func(i int) bool { return uint64(at(i))+1 >= q.BeforeSeq }))
	}
	return at, lo, max(hi, lo)
}

// AuditLen returns the number of audit entries (the last Seq).
func (r *Registry) AuditLen() int { return len(r.audit) }

func mapsKeys(m map[string]string) iter.Seq[string] { return maps.Keys(m) }
