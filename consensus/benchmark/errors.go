package benchmark

import "errors"

var (
	// ErrEtcdNotFound means no etcd binary is on PATH; scripts/install-etcd.sh installs one.
	ErrEtcdNotFound = errors.New("benchmark: etcd binary not found on PATH (run scripts/install-etcd.sh)")
	// ErrEtcdStart means the etcd members did not start or did not become healthy in time.
	ErrEtcdStart = errors.New("benchmark: etcd cluster did not start")
	// ErrInvalid means an argument or config field is out of range; the message names it.
	ErrInvalid = errors.New("benchmark: invalid argument")
	// ErrNoSamples means every operation of a run failed, so no latency can be reported.
	ErrNoSamples = errors.New("benchmark: no successful operation")
)
