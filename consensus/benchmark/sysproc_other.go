//go:build !linux

package benchmark

import "syscall"

// sysProcAttr: no parent-death signal outside Linux; Close and test cleanups stop the members.
func sysProcAttr() *syscall.SysProcAttr { return nil }
