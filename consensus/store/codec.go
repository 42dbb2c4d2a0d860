package store

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

// Log entry encoding, version 1, all integers big-endian:
//
//	version u8 (=1) | index u64 | term u64 | type u8 |
//	hasTime u8 (0|1) | unix seconds i64 | nanoseconds u32 |
//	len(data) u32 | data | len(extensions) u32 | extensions
//
// The encoding is canonical: a zero AppendedAt is hasTime=0 with zero seconds
// and nanoseconds; nil and empty slices both encode as length 0 and decode as nil.
const (
	logFormatVersion = 1
	logHeaderSize    = 1 + 8 + 8 + 1 + 1 + 8 + 4 + 4 + 4
	maxLogType       = raft.LogConfiguration
)

// EncodeLog returns the canonical encoding of l. It fails with ErrTooLarge when
// Data or Extensions exceed their caps, and with ErrMalformedLog for a LogType
// this build does not know.
func EncodeLog(l *raft.Log) ([]byte, error) {
	if len(l.Data) > MaxLogDataSize {
		return nil, fmt.Errorf("store: log %d: data of %d bytes: %w", l.Index, len(l.Data), ErrTooLarge)
	}
	if len(l.Extensions) > MaxLogExtensionsSize {
		return nil, fmt.Errorf("store: log %d: extensions of %d bytes: %w", l.Index, len(l.Extensions), ErrTooLarge)
	}
	if l.Type > maxLogType {
		return nil, fmt.Errorf("store: log %d: type %d: %w", l.Index, l.Type, ErrMalformedLog)
	}
	b := make([]byte, 0, logHeaderSize+len(l.Data)+len(l.Extensions))
	b = append(b, logFormatVersion)
	b = binary.BigEndian.AppendUint64(b, l.Index)
	b = binary.BigEndian.AppendUint64(b, l.Term)
	b = append(b, byte(l.Type))
	if l.AppendedAt.IsZero() {
		b = append(b, 0)
		b = binary.BigEndian.AppendUint64(b, 0)
		b = binary.BigEndian.AppendUint32(b, 0)
	} else {
		b = append(b, 1)
		b = binary.BigEndian.AppendUint64(b, uint64(l.AppendedAt.Unix()))
		b = binary.BigEndian.AppendUint32(b, uint32(l.AppendedAt.Nanosecond()))
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(l.Data)))
	b = append(b, l.Data...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(l.Extensions)))
	b = append(b, l.Extensions...)
	return b, nil
}

// DecodeLog decodes a canonical encoding into l, overwriting every field. It is
// strict: unknown version or type, lengths over the caps or past the end,
// non-canonical time fields and trailing bytes are ErrMalformedLog (ErrTooLarge
// for caps). l never aliases b.
func DecodeLog(b []byte, l *raft.Log) error {
	bad := func(what string) error {
		return fmt.Errorf("store: decode log: %s: %w", what, ErrMalformedLog)
	}
	if len(b) > MaxLogEntrySize {
		return fmt.Errorf("store: decode log: %d bytes: %w", len(b), ErrTooLarge)
	}
	if len(b) < logHeaderSize {
		return bad("short header")
	}
	if b[0] != logFormatVersion {
		return bad(fmt.Sprintf("version %d", b[0]))
	}
	index := binary.BigEndian.Uint64(b[1:])
	term := binary.BigEndian.Uint64(b[9:])
	typ := raft.LogType(b[17])
	if typ > maxLogType {
		return bad(fmt.Sprintf("type %d", typ))
	}
	hasTime := b[18]
	sec := int64(binary.BigEndian.Uint64(b[19:]))
	nsec := binary.BigEndian.Uint32(b[27:])
	var at time.Time
	switch {
	case hasTime == 0 && sec == 0 && nsec == 0:
	case hasTime == 1 && nsec < 1e9:
		at = time.Unix(sec, int64(nsec)).UTC()
		if at.IsZero() {
			return bad("zero time marked present")
		}
	default:
		return bad("time fields")
	}
	rest := b[31:]
	data, rest, err := readBytes(rest, MaxLogDataSize)
	if err != nil {
		return fmt.Errorf("store: decode log: data: %w", err)
	}
	ext, rest, err := readBytes(rest, MaxLogExtensionsSize)
	if err != nil {
		return fmt.Errorf("store: decode log: extensions: %w", err)
	}
	if len(rest) != 0 {
		return bad(fmt.Sprintf("%d trailing bytes", len(rest)))
	}
	*l = raft.Log{Index: index, Term: term, Type: typ, Data: data, Extensions: ext, AppendedAt: at}
	return nil
}

// readBytes reads a u32 length and that many bytes, checking the cap and the
// remaining input before allocating. Zero length returns nil.
func readBytes(b []byte, limit int) (out, rest []byte, err error) {
	if len(b) < 4 {
		return nil, nil, fmt.Errorf("short length: %w", ErrMalformedLog)
	}
	n := binary.BigEndian.Uint32(b)
	b = b[4:]
	if uint64(n) > uint64(limit) {
		return nil, nil, fmt.Errorf("length %d over %d: %w", n, limit, ErrTooLarge)
	}
	if uint64(n) > uint64(len(b)) {
		return nil, nil, fmt.Errorf("length %d past end: %w", n, ErrMalformedLog)
	}
	if n == 0 {
		return nil, b, nil
	}
	out = make([]byte, n)
	copy(out, b[:n])
	return out, b[n:], nil
}
