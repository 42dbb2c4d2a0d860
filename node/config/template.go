package config

import _ "embed"

// DefaultFile is a fully commented configuration file holding exactly the defaults:
// Parse(DefaultFile) yields DefaultConfig() with no problems, and it sets every key
// (both kept true by tests). `vigil config default` prints it.
//
//go:embed default.yaml
var DefaultFile string
