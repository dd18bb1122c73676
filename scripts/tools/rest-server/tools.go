//go:build tools

// Package tools only records the main package scripts/tools.sh builds from this module.
package tools

import _ "github.com/restic/rest-server/cmd/rest-server"
