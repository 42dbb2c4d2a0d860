package benchmark

import "syscall"

// sysProcAttr makes the kernel SIGKILL an etcd member when the benchmark process dies (panic,
// timeout, kill -9), so a failed run leaves no orphan etcd behind even when Close never runs.
func sysProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} }
