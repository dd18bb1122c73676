//go:build tools

// Package tools only records the main package scripts/tools.sh builds from this module.
package tools

import _ "github.com/letsencrypt/pebble/v2/cmd/pebble"
