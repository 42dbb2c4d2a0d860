package policy

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// ErrInvalid is wrapped by every error Parse and Validate return; callers use errors.Is.
var ErrInvalid = errors.New("policy: invalid document")

// FieldError is one problem in a document. Line and Column are 1-based positions in the YAML
// (0 when the document was built in Go rather than parsed). Path is the key path, e.g.
// "monitoring.policies[0].threshold".
type FieldError struct {
	Line, Column int
	Path         string
	Msg          string
}

func (e FieldError) Error() string {
	loc := ""
	if e.Line > 0 {
		loc = fmt.Sprintf("line %d: ", e.Line)
	}
	if e.Path == "" {
		return loc + e.Msg
	}
	return loc + e.Path + ": " + e.Msg
}

// Errors is every problem found in a document, ordered by line then path.
type Errors []FieldError

func (es Errors) Error() string {
	parts := make([]string, len(es))
	for i, e := range es {
		parts[i] = e.Error()
	}
	return "policy: " + strings.Join(parts, "; ")
}

// Is makes errors.Is(err, ErrInvalid) true.
func (es Errors) Is(target error) bool { return target == ErrInvalid }

func (es Errors) sorted() Errors {
	sort.SliceStable(es, func(i, j int) bool {
		if es[i].Line != es[j].Line {
			return es[i].Line < es[j].Line
		}
		return es[i].Path < es[j].Path
	})
	return es
}

// problems collects errors while walking a document.
type problems struct {
	errs  Errors
	lines map[string][2]int // path -> line, column (parsed documents only)
}

func (p *problems) add(path, format string, args ...any) {
	pos := p.lines[path]
	p.errs = append(p.errs, FieldError{Line: pos[0], Column: pos[1], Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (p *problems) err() error {
	if len(p.errs) == 0 {
		return nil
	}
	return p.errs.sorted()
}
