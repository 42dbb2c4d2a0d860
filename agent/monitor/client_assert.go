package monitor

import "github.com/vigil-mesh/vigil/agent"

var _ Backend = (*agent.Client)(nil)
