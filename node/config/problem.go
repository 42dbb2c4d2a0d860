package config

import "fmt"

// Severity grades a Problem.
type Severity uint8

const (
	// SeverityError makes Load fail and `vigil config lint` exit 1.
	SeverityError Severity = iota + 1
	// SeverityWarning is printed but does not stop the node.
	SeverityWarning
)

func (s Severity) String() string {
	switch s {
	case SeverityError:
		return "error"
	case SeverityWarning:
		return "warning"
	}
	return fmt.Sprintf("severity(%d)", uint8(s))
}

// Problem is one finding in a configuration file.
type Problem struct {
	File     string   // the file name as given to Lint or Load
	Line     int      // 1-based line of the key; 0 when the file has no such key (a default)
	Key      string   // key path, e.g. "auth.method" or "join[1]"; "" for file-level problems
	Message  string   // what is wrong and what is allowed
	Severity Severity // SeverityError or SeverityWarning
	Err      error    // the sentinel: ErrInvalid, ErrUnknownKey, ErrRefused, …
}

// String formats the problem as FILE:LINE: KEY: MESSAGE (warnings say so before the message).
func (p Problem) String() string {
	s := p.File
	if p.Line > 0 {
		s += fmt.Sprintf(":%d", p.Line)
	}
	s += ": "
	if p.Key != "" {
		s += p.Key + ": "
	}
	if p.Severity == SeverityWarning {
		s += "warning: "
	}
	return s + p.Message
}

// Error makes a Problem an error wrapping its sentinel.
func (p Problem) Error() string { return "config: " + p.String() }

// Unwrap returns the sentinel.
func (p Problem) Unwrap() error { return p.Err }

// HasErrors reports whether any problem is an error.
func HasErrors(ps []Problem) bool {
	for _, p := range ps {
		if p.Severity == SeverityError {
			return true
		}
	}
	return false
}
