package config

import "errors"

// Sentinel errors. Every Problem carries one in Err; Load and Validate wrap them, so callers
// use errors.Is.
var (
	// ErrInvalid: a value is wrong (bad duration, bad port, unknown enum value, cross-field rule).
	ErrInvalid = errors.New("invalid value")
	// ErrUnknownKey: a key the node configuration does not have (usually a typo).
	ErrUnknownKey = errors.New("unknown key")
	// ErrRefused: a known-bad shape (shared-password authentication, monitoring disabled).
	ErrRefused = errors.New("refused setting")
	// ErrMisplaced: a section that belongs in the cluster policy, not in the node file.
	ErrMisplaced = errors.New("misplaced section")
	// ErrSyntax: the file is not one YAML mapping.
	ErrSyntax = errors.New("yaml syntax")
	// ErrTooLarge: the file is over MaxFileSize.
	ErrTooLarge = errors.New("file too large")
)
