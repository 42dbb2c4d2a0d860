package seqbench

import (
	"archive/zip"
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/vigil-mesh/vigil/detector"
)

// Limits on the data files: a line or a zip member beyond them is an error, not an allocation.
const (
	maxLine      = 1 << 20 // bytes in one session line
	maxMember    = 8 << 20 // bytes in one zip member
	maxActionID  = 1 << 20
	maxTraceSize = 1 << 20 // actions in one trace
)

// ErrNoData is returned by DataDir when the shared data folder is absent.
var ErrNoData = errors.New("seqbench: ../shared/data not found above the module root")

// DataDir finds the shared benchmark data: ../shared/data relative to the module root (the
// first folder above dir holding go.mod).
func DataDir(dir string) (string, error) {
	d, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			data := filepath.Join(d, "..", "shared", "data")
			if st, err := os.Stat(data); err == nil && st.IsDir() {
				return data, nil
			}
			return "", ErrNoData
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", ErrNoData
		}
		d = parent
	}
}

// ParseSessions reads one session per line, actions as space-separated decimal ids ≥ 1. Blank
// lines are skipped. name is used in errors, which give the line.
func ParseSessions(r io.Reader, name string) ([][]detector.Action, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	var out [][]detector.Action
	line := 0
	for sc.Scan() {
		line++
		s, err := parseLine(sc.Bytes())
		if err != nil {
			return nil, fmt.Errorf("seqbench: %s:%d: %w", name, line, err)
		}
		if len(s) > 0 {
			out = append(out, s)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("seqbench: %s:%d: %w", name, line+1, err)
	}
	return out, nil
}

func parseLine(b []byte) ([]detector.Action, error) {
	fields := bytes.Fields(b)
	if len(fields) > maxTraceSize {
		return nil, fmt.Errorf("%d actions, over the limit %d", len(fields), maxTraceSize)
	}
	s := make([]detector.Action, 0, len(fields))
	for i, f := range fields {
		v, err := strconv.ParseUint(string(f), 10, 32)
		if err != nil || v == 0 || v > maxActionID {
			return nil, fmt.Errorf("field %d %q: want an action id in 1..%d", i+1, f, maxActionID)
		}
		s = append(s, detector.Action(v))
	}
	return s, nil
}

// ReadSessions reads a session file (ParseSessions).
func ReadSessions(path string) ([][]detector.Action, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ParseSessions(f, path)
}

// ADFA is the ADFA-LD corpus. System-call numbers are shifted by one (action = syscall + 1)
// because action 0 means "never seen" and syscall 0 (read) is real.
type ADFA struct {
	Train      [][]detector.Action
	Validation [][]detector.Action
	Attack     map[string][][]detector.Action // by family: Adduser, Hydra_FTP, …
}

var familyRE = regexp.MustCompile(`^(.+)_[0-9]+$`)

// ReadADFA reads ADFA-LD.zip in place (archive/zip; nothing is unpacked).
func ReadADFA(path string) (*ADFA, error) {
	z, err := zip.OpenReader(path)
	if err != nil {
		return nil, err
	}
	defer z.Close()
	out := &ADFA{Attack: map[string][][]detector.Action{}}
	files := append([]*zip.File(nil), z.File...)
	sort.Slice(files, func(i, j int) bool { return files[i].Name < files[j].Name })
	for _, f := range files {
		if f.FileInfo().IsDir() || !strings.HasSuffix(f.Name, ".txt") {
			continue
		}
		parts := strings.Split(f.Name, "/")
		if len(parts) < 3 {
			continue
		}
		dir := parts[len(parts)-2]
		family := ""
		switch {
		case dir == "Training_Data_Master", dir == "Validation_Data_Master":
		case len(parts) >= 4 && parts[len(parts)-3] == "Attack_Data_Master":
			m := familyRE.FindStringSubmatch(dir)
			if m == nil {
				return nil, fmt.Errorf("seqbench: %s: %s: attack folder not named FAMILY_N", path, f.Name)
			}
			family = m[1]
		default:
			continue
		}
		if f.UncompressedSize64 > maxMember {
			return nil, fmt.Errorf("seqbench: %s: %s: %d bytes over the limit %d", path, f.Name, f.UncompressedSize64, maxMember)
		}
		rc, err := f.Open()
		if err != nil {
			return nil, fmt.Errorf("seqbench: %s: %s: %w", path, f.Name, err)
		}
		b, err := io.ReadAll(io.LimitReader(rc, maxMember+1))
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("seqbench: %s: %s: %w", path, f.Name, err)
		}
		var trace []detector.Action
		for i, fld := range bytes.Fields(b) {
			v, err := strconv.ParseUint(string(fld), 10, 32)
			if err != nil || v >= maxActionID {
				return nil, fmt.Errorf("seqbench: %s: %s: field %d %q: not a system-call number", path, f.Name, i+1, fld)
			}
			trace = append(trace, detector.Action(v+1))
		}
		switch {
		case len(trace) == 0:
		case family != "":
			out.Attack[family] = append(out.Attack[family], trace)
		case dir == "Training_Data_Master":
			out.Train = append(out.Train, trace)
		default:
			out.Validation = append(out.Validation, trace)
		}
	}
	return out, nil
}
